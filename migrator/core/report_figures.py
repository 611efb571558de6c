"""The report's figures: self-contained SVG drawn from the report dict (no plotting library,
no network, nothing but text), so the HTML report embeds them inline and the Markdown report
links the same images written next to it.

* :func:`error_along_layers` — every compared layer's ``max_rel`` (log scale) against its
  pass line ``rtol + atol / scale`` (a layer passes when ``max_abs <= atol + rtol * scale``,
  i.e. ``max_rel <= rtol + atol / scale``), failing layers in red, the first divergent layer
  marked;
* :func:`channel_errors` — one layer's per-channel ``max_abs`` against the layer's allowed
  ``atol + rtol * scale``;
* :func:`sample_errors` — for an input set, the worst error per sample.

Every figure carries a ``<title>`` and ``aria-label`` (what a reader with images off or a
screen reader gets); the tables of the report hold the same numbers.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass

W, H = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 62, 16, 26, 44
FLOOR = 1e-12                    # log-scale floor for exact zeros
PASS, FAIL, LINE, GRID, TEXT = "#1b7f2a", "#b00020", "#e08a00", "#dddddd", "#333333"


#: every figure a report can have (file stems beside a Markdown report: ``<report>.<stem>.svg``)
FIGURE_STEMS = ("error_along_layers", "channels_first_divergent", "channels_worst", "samples")


@dataclass
class Figure:
    """One figure: its file stem (``<report>.<stem>.svg`` beside a Markdown report), the
    alternative text and the SVG document."""

    stem: str
    alt: str
    svg: str


def _finite(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _log_range(values: list[float]) -> tuple[float, float]:
    """Decades spanning the positive values (exact zeros sit on the bottom edge, they do not
    stretch the axis down to the floor)."""
    vals = [max(v, FLOOR) for v in values if v is not None and v > 0]
    if not vals:
        return -6.0, 0.0
    lo, hi = math.floor(math.log10(min(vals))), math.ceil(math.log10(max(vals)))
    if hi <= lo:
        hi = lo + 1
    return float(lo), float(hi)


class _Canvas:
    def __init__(self, title: str, alt: str, y_label: str, x_label: str, lo: float, hi: float, n: int):
        self.lo, self.hi, self.n = lo, hi, max(n, 1)
        self.parts = [
            (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
            f'role="img" aria-label="{html.escape(alt, quote=True)}" font-family="sans-serif" font-size="11">'),
            f"<title>{html.escape(alt)}</title>",
            f'<rect x="0" y="0" width="{W}" height="{H}" fill="white"/>',
            f'<text x="{LEFT}" y="16" font-size="13" fill="{TEXT}">{html.escape(title)}</text>',
            (f'<text x="{(LEFT + W - RIGHT) / 2:.0f}" y="{H - 8}" text-anchor="middle" fill="{TEXT}">'
            f"{html.escape(x_label)}</text>"),
            (f'<text x="14" y="{(TOP + H - BOTTOM) / 2:.0f}" text-anchor="middle" fill="{TEXT}" '
            f'transform="rotate(-90 14 {(TOP + H - BOTTOM) / 2:.0f})">{html.escape(y_label)}</text>'),
        ]
        for e in range(int(lo), int(hi) + 1):
            y = self.y(10.0 ** e)
            self.parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" stroke="{GRID}"/>')
            self.parts.append(f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end" fill="{TEXT}">'
                              f"1e{e}</text>")
        self.parts.append(f'<rect x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" height="{H - TOP - BOTTOM}" '
                          f'fill="none" stroke="#999"/>')

    def x_ticks(self) -> None:
        """A handful of index labels under the x axis (0, ..., n - 1)."""
        step = max(1, math.ceil(self.n / 8))
        ticks = sorted(set(range(0, self.n, step)) | {self.n - 1})
        for i in ticks:
            self.parts.append(f'<text x="{self.x(i):.1f}" y="{H - BOTTOM + 14}" text-anchor="middle" '
                              f'fill="{TEXT}">{i}</text>')

    def x(self, i: float) -> float:
        span = W - LEFT - RIGHT
        return LEFT + span * (i + 0.5) / self.n

    def y(self, v: float) -> float:
        t = (math.log10(max(v, FLOOR)) - self.lo) / (self.hi - self.lo)
        t = min(max(t, 0.0), 1.0)
        return TOP + (H - TOP - BOTTOM) * (1.0 - t)

    def add(self, s: str) -> None:
        self.parts.append(s)

    def close(self) -> str:
        self.x_ticks()
        return "\n".join(self.parts + ["</svg>"]) + "\n"


def _pass_line(entry: dict) -> float | None:
    tol, scale = entry.get("tolerance") or {}, _finite(entry.get("scale"))
    rtol, atol = _finite(tol.get("rtol")), _finite(tol.get("atol"))
    if rtol is None or atol is None:
        return None
    return rtol + atol / scale if scale and scale > 0 else None


def _compared(rep: dict) -> list[dict]:
    return [e for e in rep.get("layers", []) if e.get("status") in ("pass", "fail")]


def error_along_layers(rep: dict) -> Figure | None:
    """max_rel per compared layer (network order) against its pass line."""
    layers = _compared(rep)
    if not layers:
        return None
    rels = [_finite(e.get("max_rel")) for e in layers]
    lines = [_pass_line(e) for e in layers]
    lo, hi = _log_range([v for v in rels + lines if v is not None])
    ver = rep.get("verification") or {}
    first = ver.get("first_divergent")
    n_fail = sum(1 for e in layers if e.get("status") == "fail")
    worst = max(range(len(layers)), key=lambda i: rels[i] if rels[i] is not None else -1.0)
    alt = (f"Error along the network: max relative error of {len(layers)} compared layers against "
           f"the pass line; {n_fail} fail")
    if first:
        alt += f", first divergent layer {first}"
    if rels[worst] is not None:
        alt += f"; worst layer {layers[worst]['source']} ({rels[worst]:.3g})"
    c = _Canvas("Error along the network (max_rel per layer; orange: pass line rtol + atol/scale)",
                alt, "max_rel", "layers in network order", lo, hi, len(layers))
    pts = [(c.x(i), c.y(v)) for i, v in enumerate(lines) if v is not None]
    if pts:
        c.add('<polyline fill="none" stroke="{}" stroke-width="1.5" stroke-dasharray="4 3" points="{}"/>'
              .format(LINE, " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)))
    series = [(c.x(i), c.y(v)) for i, v in enumerate(rels) if v is not None]
    if len(series) > 1:
        c.add('<polyline fill="none" stroke="#6a8fbf" stroke-width="1" points="{}"/>'
              .format(" ".join(f"{x:.1f},{y:.1f}" for x, y in series)))
    r = 3.0 if len(layers) <= 200 else 1.6
    for i, (e, v) in enumerate(zip(layers, rels, strict=True)):
        if v is None:
            continue
        colour = FAIL if e.get("status") == "fail" else PASS
        fill = colour if v > 0 else "white"          # an exact zero: a hollow mark on the bottom edge
        c.add(f'<circle cx="{c.x(i):.1f}" cy="{c.y(v):.1f}" r="{r}" fill="{fill}" stroke="{colour}">'
              f"<title>{html.escape(e['source'])}: max_rel {v:.3g} ({e.get('status')})</title></circle>")
        if e["source"] == first:
            c.add(f'<line x1="{c.x(i):.1f}" y1="{TOP}" x2="{c.x(i):.1f}" y2="{H - BOTTOM}" stroke="{FAIL}" '
                  f'stroke-dasharray="2 2"/>')
            anchor = "end" if c.x(i) > W / 2 else "start"
            dx = -4 if anchor == "end" else 4
            c.add(f'<text x="{c.x(i) + dx:.1f}" y="{TOP + 12}" text-anchor="{anchor}" fill="{FAIL}">'
                  f"first divergent: {html.escape(first)}</text>")
    return Figure("error_along_layers", alt, c.close())


def channel_errors(entry: dict, why: str) -> Figure | None:
    """Per-channel max_abs of one layer against the layer's allowed atol + rtol * scale."""
    ch = entry.get("channels") or {}
    vals = [_finite(v) for v in ch.get("max_abs") or []]
    if not vals:
        return None
    tol, scale = entry.get("tolerance") or {}, _finite(entry.get("scale")) or 0.0
    allowed = None
    if _finite(tol.get("atol")) is not None and _finite(tol.get("rtol")) is not None:
        allowed = float(tol["atol"]) + float(tol["rtol"]) * scale
    lo, hi = _log_range([v for v in vals if v is not None] + ([allowed] if allowed else []))
    over = [i for i, v in enumerate(vals) if v is not None and allowed is not None and v > allowed]
    name = entry.get("source", "?")
    alt = (f"Per-channel error of {why} layer {name}: {len(vals)} channels, max_abs up to "
           f"{max(v for v in vals if v is not None):.3g}"
           + (f" against an allowed {allowed:.3g}; {len(over)} channels over it" if allowed is not None else ""))
    c = _Canvas(f"{why.capitalize()} layer {name}: per-channel max_abs (orange: allowed atol + rtol*scale)",
                alt, "max_abs", "channel", lo, hi, len(vals))
    bw = max((W - LEFT - RIGHT) / len(vals) * 0.8, 0.5)
    base = H - BOTTOM
    for i, v in enumerate(vals):
        if v is None:
            continue
        y = c.y(v)
        colour = FAIL if i in set(over) else "#6a8fbf"
        c.add(f'<rect x="{c.x(i) - bw / 2:.2f}" y="{y:.1f}" width="{bw:.2f}" height="{max(base - y, 0.5):.1f}" '
              f'fill="{colour}"><title>channel {i}: {v:.3g}</title></rect>')
    if allowed is not None:
        y = c.y(allowed)
        c.add(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" stroke="{LINE}" stroke-width="1.5" '
              f'stroke-dasharray="4 3"/>')
    return Figure(f"channels_{why.replace(' ', '_')}", alt, c.close())


def sample_errors(rep: dict) -> Figure | None:
    """For an input set: the worst max_abs of every sample (``verification.per_sample``)."""
    per = (rep.get("verification") or {}).get("per_sample") or []
    vals = [_finite(s.get("max_abs")) for s in per]
    if len(vals) < 2 or all(v is None for v in vals):
        return None
    lo, hi = _log_range([v for v in vals if v is not None])
    worst = max(range(len(vals)), key=lambda i: vals[i] if vals[i] is not None else -1.0)
    alt = (f"Worst error per sample over {len(vals)} samples; worst sample "
           f"{per[worst].get('name', worst)} ({vals[worst]:.3g})")
    c = _Canvas("Worst layer error per input sample (max_abs)", alt, "max_abs", "sample", lo, hi, len(vals))
    bw = max((W - LEFT - RIGHT) / len(vals) * 0.8, 0.5)
    for i, v in enumerate(vals):
        if v is None:
            continue
        y = c.y(v)
        c.add(f'<rect x="{c.x(i) - bw / 2:.2f}" y="{y:.1f}" width="{bw:.2f}" height="{max(H - BOTTOM - y, 0.5):.1f}" '
              f'fill="#6a8fbf"><title>{html.escape(str(per[i].get("name", i)))}: {v:.3g}</title></rect>')
    return Figure("samples", alt, c.close())


def report_figures(rep: dict) -> list[Figure]:
    """The figures a report shows: the error along the network, the per-channel error of the
    first divergent layer and of the worst layer (once when they are the same), the per-sample
    errors of an input set."""
    figs = []
    along = error_along_layers(rep)
    if along is not None:
        figs.append(along)
    layers = _compared(rep)
    first = (rep.get("verification") or {}).get("first_divergent")
    by_name = {e["source"]: e for e in layers}
    shown = set()
    if first in by_name:
        f = channel_errors(by_name[first], "first divergent")
        if f is not None:
            figs.append(f)
            shown.add(first)
    rated = [e for e in layers if _finite(e.get("max_rel")) is not None]
    if rated:
        worst = max(rated, key=lambda e: float(e["max_rel"]))
        if worst["source"] not in shown:
            f = channel_errors(worst, "worst")
            if f is not None:
                figs.append(f)
    s = sample_errors(rep)
    if s is not None:
        figs.append(s)
    return figs
