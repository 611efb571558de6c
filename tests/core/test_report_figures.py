"""The report's figures: well-formed SVG whose marks say what the numbers say (a failing layer's
point lies above its pass line, a passing one on or below it), embedded inline in the HTML report
with alternative text, linked from the Markdown report."""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

from migrator.core.report import figure_links, render_html, render_markdown
from migrator.core.report_figures import FAIL, PASS, channel_errors, error_along_layers, report_figures

SVG = "{http://www.w3.org/2000/svg}"


def _report(n=30, first_fail=20):
    layers = []
    for i in range(n):
        scale = 2.0 + i
        atol, rtol = 1e-5, 1e-4
        line = rtol + atol / scale
        rel = line * (0.01 + 0.02 * i) if i < first_fail else line * (3 + i)
        layers.append({"source": f"conv{i}", "source_type": "Convolution", "keras": f"conv{i}",
                       "keras_layers": [f"conv{i}"], "mapping": [], "layers": [],
                       "status": "pass" if rel <= line else "fail", "scale": scale,
                       "max_abs": rel * scale, "max_rel": rel, "tolerance": {"atol": atol, "rtol": rtol},
                       "channels": {"max_abs": [rel * scale * (c + 1) / 8 for c in range(8)],
                                    "mean_abs": [0.0] * 8, "ref_absmax": [scale] * 8}})
    layers.append({"source": "data", "source_type": "Input", "keras": "data", "keras_layers": ["data"],
                   "mapping": [], "status": "not-compared"})
    return {"source": {"name": "net", "files": []}, "created": "now", "tool": {},
            "verification": {"passed": False, "first_divergent": f"conv{first_fail}",
                             "runtime": {"name": "builtin"}},
            "layers": layers}


def test_points_sit_on_the_right_side_of_the_pass_line():
    rep = _report()
    fig = error_along_layers(rep)
    root = ET.fromstring(fig.svg)
    circles = root.findall(f"{SVG}circle")
    compared = [e for e in rep["layers"] if e["status"] in ("pass", "fail")]
    assert len(circles) == len(compared)
    line = root.find(f"{SVG}polyline[@stroke-dasharray]")
    pts = [tuple(map(float, p.split(","))) for p in line.get("points").split()]
    assert len(pts) == len(compared)
    for c, (lx, ly), e in zip(circles, pts, compared, strict=True):
        cx, cy = float(c.get("cx")), float(c.get("cy"))
        assert math.isclose(cx, lx)
        if e["status"] == "fail":
            assert c.get("fill") == FAIL and cy < ly, e["source"]      # above the line (SVG y grows down)
        else:
            assert c.get("fill") == PASS and cy >= ly - 1e-6, e["source"]
    assert "first divergent: conv20" in fig.svg
    assert root.get("aria-label") == fig.alt and "10 fail" in fig.alt


def test_channel_bars_over_the_allowed_line_are_red():
    e = _report()["layers"][25]
    fig = channel_errors(e, "worst")
    root = ET.fromstring(fig.svg)
    bars = root.findall(f"{SVG}rect[@fill]")[1:]          # the first rect is the white background
    bars = [b for b in bars if b.find(f"{SVG}title") is not None]
    allowed = e["tolerance"]["atol"] + e["tolerance"]["rtol"] * e["scale"]
    assert len(bars) == 8
    for b, v in zip(bars, e["channels"]["max_abs"], strict=True):
        assert (b.get("fill") == FAIL) == (v > allowed)


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.stack, self.captions, self._cap = [], [], [], False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._cap = tag == "figcaption"

    def handle_data(self, data):
        if self._cap:
            self.captions.append(data)
            self._cap = False


def test_html_embeds_the_figures_and_markdown_links_them(tmp_path):
    rep = _report()
    page = render_html(rep)
    p = _Collect()
    p.feed(page)
    figs = report_figures(rep)
    assert [f.stem for f in figs] == ["error_along_layers", "channels_first_divergent", "channels_worst"]
    assert p.tags.count("svg") == len(figs) and p.tags.count("figure") == len(figs)
    assert p.captions == [f.alt for f in figs]
    assert "http" not in page.replace("http://www.w3.org/2000/svg", "")   # self-contained
    for f in figs:                                         # every embedded SVG parses on its own
        ET.fromstring(f.svg)
    links = figure_links(rep, str(tmp_path / "net.report.md"))
    md = render_markdown(rep, links)
    for f, link in links:
        assert f"![{f.alt}]({link})" in md and link.startswith("net.report.")


def test_no_figure_without_compared_layers():
    rep = _report()
    for e in rep["layers"]:
        e["status"] = "not-compared"
    assert report_figures(rep) == []
    assert "<svg" not in render_html(rep)
