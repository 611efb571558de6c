"""The conversion report: a stable JSON schema plus Markdown and HTML renderings.

Schema (``schema_version`` 1)::

    {
      "schema_version": 1,
      "tool": {"migrator": ..., "python": ..., "numpy": ..., "tensorflow": ..., "keras": ..., ...},
      "created": ISO-8601 UTC,
      "source": {"framework": "caffe"|"lasagne", "name": ..., "files": [{"path", "sha256", "bytes"}],
                 "warnings": [...]},
      "overrides": {mapping file dict} | null,
      "verification": {passed, first_divergent, needed_rtol, runtime, device, input, tolerances,
                       topk, timings, counts} | null,
      "accepted_mismatch": bool,
      "outputs": [paths written],
      "layers": [ {"source", "source_type", "keras" (layer whose output equals the source
                   layer's), "keras_layers" [names], "layout", "rule", "status",
                   "fused_into", "notes", "options", "mapping": [{key, formula, value, sources,
                   option, default, overridden, caveats, warnings}],
                   "max_abs", "mean_abs", "max_rel", "needed_rtol", "tolerance", "channels"...} ]
    }

Arrays are summarised (shape, dtype, min/mean/max, sha256 of the float32 bytes) and given
in full when small (<= 64 values).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import html
import math
import os
import platform
import sys
from typing import Any

import numpy as np

from .. import __version__
from .importers.caffe.fields import unverified_layers
from .mapping.bn_training import KERAS_UPDATE
from .report_figures import FIGURE_STEMS, Figure, report_figures

SCHEMA_VERSION = 1
_FULL_LIMIT = 64


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def jsonable(v: Any) -> Any:
    if hasattr(v, "read_rows"):      # a weight held by the built Keras model (builder.py)
        return _released_summary(v)
    if isinstance(v, np.ndarray) or (isinstance(v, (list, tuple)) and v and isinstance(v[0], np.ndarray)):
        a = np.asarray(v)
        if a.dtype.kind in "fiub" and a.size:
            # the sha256 first, then the float64 statistics: never both temporaries at once
            # (a 150 MB weight would otherwise cost several copies of itself here)
            sha = hashlib.sha256(np.ascontiguousarray(a, dtype=np.float32)).hexdigest()
            n_fin = int(np.isfinite(a).sum())
            af = a.astype(np.float64)
            # the finite values in C order: a view when all are finite and af is C-contiguous
            vals = af.ravel() if n_fin == af.size else af[np.isfinite(af)]
            d = {"shape": list(a.shape), "dtype": str(a.dtype),
                 "min": float(vals.min()) if n_fin else None,
                 "mean": float(vals.mean()) if n_fin else None,
                 "max": float(vals.max()) if n_fin else None,
                 "nonfinite": int(a.size - n_fin),
                 "sha256": sha}
            del vals
            if a.size <= _FULL_LIMIT:
                d["values"] = [None if not np.isfinite(x) else float(x) for x in af.ravel()]
            return d
        return {"shape": list(a.shape), "dtype": str(a.dtype)}
    if isinstance(v, (np.floating,)):
        v = float(v)
    if isinstance(v, float):
        return v if np.isfinite(v) else str(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if v is None or isinstance(v, (str, int, bool)):
        return v
    return str(v)


def _released_summary(rw) -> dict[str, Any]:
    """``jsonable`` of a weight that lives in the Keras model (the same dict as for the array
    itself), read a block of rows at a time: no float32 copy of the whole weight."""
    shape = tuple(rw.shape)
    if len(shape) == 0 or math.prod(shape) == 0:
        return jsonable(rw.read_rows(0, None))
    row = max(1, math.prod(shape[1:]))
    step = max(1, (1 << 22) // row)            # about 16 MB of float32 per block
    h = hashlib.sha256()
    af = np.empty(shape, dtype=np.float64)     # exactly a.astype(np.float64), in C order
    n_fin = 0
    for i in range(0, shape[0], step):
        blk = np.asarray(rw.read_rows(i, i + step))
        h.update(np.ascontiguousarray(blk, dtype=np.float32))
        af[i:i + step] = blk
        n_fin += int(np.isfinite(blk).sum())
    del blk
    vals = af.ravel() if n_fin == af.size else af[np.isfinite(af)]
    d = {"shape": list(shape), "dtype": str(np.dtype(rw.dtype)),
         "min": float(vals.min()) if n_fin else None,
         "mean": float(vals.mean()) if n_fin else None,
         "max": float(vals.max()) if n_fin else None,
         "nonfinite": int(af.size - n_fin),
         "sha256": h.hexdigest()}
    del vals
    if af.size <= _FULL_LIMIT:
        d["values"] = [None if not np.isfinite(x) else float(x) for x in af.ravel()]
    return d


def tool_versions() -> dict[str, str]:
    out = {"migrator": __version__, "python": platform.python_version(), "platform": platform.platform(),
           "numpy": np.__version__}
    for mod in ("tensorflow", "keras", "google.protobuf", "h5py", "cv2"):
        m = sys.modules.get(mod)
        if m is None:
            try:
                m = __import__(mod, fromlist=["__version__"])
            except Exception:  # noqa: BLE001, S112 - optional
                continue
        out[mod.replace("google.", "")] = str(getattr(m, "__version__", "?"))
    return out


def build_report(graph, plan, result, *, outputs=(), overrides=None, accepted_mismatch=False,
                 extra=None, artifacts=None, migrator_only=None) -> dict[str, Any]:
    """The report dict.  ``artifacts``: one record per exported file (format, path, the
    fresh-process check: ``passed``, ``max_abs``, ``rel_to_max``, ...; see
    :mod:`migrator.core.export`); ``migrator_only``: the layers that need a Migrator class to
    load from ``.keras``/``.h5`` (``[{'source', 'keras', 'class_name'}]``, normally empty)."""
    files = []
    for p in graph.files:
        if p and os.path.exists(p):
            files.append({"path": os.path.abspath(p), "sha256": sha256_file(p),
                          "bytes": os.path.getsize(p)})
    res_by = {}
    if result is not None:
        res_by = {r.source: r for r in result.layers}
    layers = []
    unverified = unverified_layers(graph)   # accepted unknown source fields, by layer
    for m in plan.mappings:
        node = graph.node(m.source)
        entry: dict[str, Any] = {
            "source": m.source, "source_type": m.source_type, "op": node.op,
            "keras": m.keras_output, "keras_layers": [s.name for s in m.layers],
            "keras_classes": [s.class_name for s in m.layers],
            "layout": m.layout, "rule": m.rule, "fused_into": m.fused_into,
            "supported": m.supported, "error": m.error, "notes": list(m.notes),
            "unverified": [f"unknown field '{u['field']}' = {u['value']} accepted "
                           f"({u['accepted_by']}): semantics unverified"
                           for u in unverified.get(m.source, []) if u.get("accepted")],
            "options": jsonable(m.options),
            "source_shape": list(node.out_shape) if node.out_shape else None,
            "mapping": [{"key": r.key, "formula": r.formula, "value": jsonable(r.value),
                         "sources": jsonable(r.sources), "option": r.option,
                         "default": jsonable(r.default), "overridden": r.overridden,
                         "caveats": list(r.caveats), "warnings": list(r.warnings)} for r in m.rows],
        }
        r = res_by.get(m.source)
        if r is not None:
            d = r.to_dict()
            for k in ("source", "source_type", "keras", "layout"):
                d.pop(k, None)
            entry.update(d)
        else:
            entry["status"] = "not-verified"
        layers.append(entry)
    ov = overrides.to_dict() if overrides is not None and hasattr(overrides, "to_dict") else None
    rep = {
        "schema_version": SCHEMA_VERSION,
        "tool": tool_versions(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "source": {"framework": graph.framework, "name": graph.name, "files": files,
                   "warnings": list(graph.warnings),
                   # --input-shape: declared vs given, and whether Keras keeps the open sizes
                   "input_shapes": jsonable(graph.meta.get("input_shapes"))},
        "overrides": ov,
        "verification": jsonable(result.to_dict()) if result is not None else None,
        "accepted_mismatch": bool(accepted_mismatch),
        "outputs": [os.path.abspath(p) for p in outputs],
        "layers": layers,
    }
    rep["keras_io"] = keras_io_section(plan)
    if artifacts is not None:
        rep["artifacts"] = jsonable(artifacts)
    if migrator_only is not None:
        rep["portable"] = {"plain_keras": not migrator_only, "needs_migrator": jsonable(migrator_only)}
    if extra:
        rep["extra"] = jsonable(extra)
    return rep


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, dict) and "shape" in v:
        if "values" in v and len(v["values"]) <= 4:
            return ", ".join(f"{x:.4g}" if isinstance(x, float) else str(x) for x in v["values"])
        if v.get("min") is not None:
            return f"{v['shape']} min {v['min']:.4g} mean {v['mean']:.4g} max {v['max']:.4g}"
        return str(v["shape"])
    return str(v)


def _input_text(d: dict) -> str:
    """The comparison input in words: kind, file, seed, shape and image preprocessing."""
    if not isinstance(d, dict):
        return str(d)
    parts = [str(d.get("kind", "?"))]
    if d.get("path"):
        parts.append(f"`{d['path']}`")
    if d.get("seed") is not None:
        parts.append(f"seed {d['seed']}")
    if d.get("shape") is not None:
        parts.append(f"shape {d['shape']}")
    pp = d.get("preprocessing")
    if isinstance(pp, dict):
        m = pp.get("mean")
        if isinstance(m, dict):
            m = f"mean image {m.get('shape')}"
        elif isinstance(m, list):
            m = ", ".join(f"{x:g}" if isinstance(x, (int, float)) else str(x) for x in m)
        parts.append(f"channel order {pp.get('channel_order')}, mean {m if m is not None else 'none'}, "
                     f"scale {pp.get('scale')}, resize {pp.get('resize') or 'to the model input'}")
    return "; ".join(parts)


def _tolerances_text(d: dict) -> str:
    if not isinstance(d, dict):
        return str(d)
    dflt = d.get("default") or {}
    txt = f"atol {_fmt(dflt.get('atol'))} + rtol {_fmt(dflt.get('rtol'))} × max |reference| per layer"
    per = d.get("per_layer") or {}
    if per:
        txt += "; " + ", ".join(f"{k}: atol {_fmt(t.get('atol'))}, rtol {_fmt(t.get('rtol'))}"
                                for k, t in per.items())
    return txt


def _inline(text: str) -> str:
    """Markdown inline marks in HTML: `code`, **bold**; PASSED / FAILED coloured."""
    out = []
    for i, part in enumerate(text.split("`")):
        esc = html.escape(part)
        if i % 2:
            out.append(f"<code>{esc}</code>")
            continue
        bits = esc.split("**")
        esc = "".join(f"<b>{b}</b>" if j % 2 else b for j, b in enumerate(bits))
        esc = esc.replace("<b>FAILED</b>", "<b class='failed'>FAILED</b>")
        esc = esc.replace("<b>PASSED</b>", "<b class='passed'>PASSED</b>")
        out.append(esc)
    return "".join(out)


def figure_file(markdown_path: str, figure_stem: str) -> str:
    """The file a figure gets beside the Markdown report: ``<report>.<figure>.svg``."""
    return f"{markdown_path.removesuffix('.md')}.{figure_stem}.svg"


def figure_paths(markdown_path: str) -> list[str]:
    """Every figure file a report beside ``markdown_path`` can have (checked before writing)."""
    return [figure_file(markdown_path, s) for s in FIGURE_STEMS]


def figure_links(rep: dict[str, Any], markdown_path: str) -> list[tuple[Figure, str]]:
    """The report's figures and the (relative) file names they get beside the Markdown report;
    :func:`render_markdown` links them."""
    return [(f, os.path.basename(figure_file(markdown_path, f.stem))) for f in report_figures(rep)]


def keras_io_section(plan) -> dict[str, Any]:
    """The Keras layout of each model input and output in words (sequences keep (N, T, F),
    images are NHWC, Caffe's recurrent blobs stay (T, N, F)), and the one line about formats
    that cannot hold an open-length recurrent loop."""
    from .mapping.io_layouts import io_layout_lines
    from .mapping.rules.recurrent import open_length_problem
    return {"lines": io_layout_lines(plan), "keras_format_note": open_length_problem(plan, "keras")}


def _keras_io_markdown(rep: dict[str, Any]) -> list[str]:
    io = rep.get("keras_io") or {}
    if not io.get("lines"):
        return []
    out = ["", "## Keras inputs and outputs", ""] + [f"- {x}" for x in io["lines"]]
    if io.get("keras_format_note"):
        out.append(f"- Note: {io['keras_format_note']}")
    return out


def render_markdown(rep: dict[str, Any], figures: list[tuple[Figure, str]] | None = None) -> str:
    """The Markdown report; ``figures``: (figure, relative link) pairs to show as images
    (:func:`figure_links`; the caller writes the SVG files beside the report)."""
    v = rep.get("verification") or {}
    out = [f"# Migrator conversion report: {rep['source'].get('name') or 'model'}", ""]
    out.append(f"- Created: {rep['created']} with Migrator {rep['tool'].get('migrator')} "
               f"(TensorFlow {rep['tool'].get('tensorflow', '?')}, Keras {rep['tool'].get('keras', '?')})")
    for f in rep["source"]["files"]:
        out.append(f"- Source: `{f['path']}` ({f['bytes']} bytes, sha256 `{f['sha256'][:16]}…`)")
    if v:
        rt = v.get("runtime") or {}
        out.append(f"- Verification: **{'PASSED' if v.get('passed') else 'FAILED'}** against "
                   f"{rt.get('name')} ({rt.get('framework', '')}); Keras on {v.get('device')}")
        if v.get("first_divergent"):
            out.append(f"- First divergent layer: **{v['first_divergent']}**")
        if v.get("root_cause"):
            out.append(f"- Root cause: **{v['root_cause']}** fails even on the reference's own inputs")
        elif v.get("divergence") == "accumulated":
            out.append("- Every failing layer matches on the reference's own inputs: float32 rounding "
                       "accumulated along the network, not a wrong mapping")
        elif v.get("divergence") == "drift":
            out.append(f"- Every failing layer matches on the reference's own inputs but drifts from the "
                       f"float64 reference more than {v.get('float32_factor', 4):g}x what float32 itself "
                       "costs: a small error enters at or before the first divergent layer")
        elif v.get("divergence") == "unconfirmed":
            out.append("- A failing layer would pass on the float32 budget, but the chosen reference runtime "
                       "does not confirm Migrator's float64 anchor there: no pass is claimed")
        pb = v.get("passed_by_float32_budget") or []
        if pb:
            out.append(f"- {len(pb)} layer(s) over the plain tolerance pass as float32 accumulation "
                       f"(exact on the reference's own inputs; drift from a float64 reference at most "
                       f"{v.get('float32_factor', 4):g}x float32's own): {', '.join(pb[:8])}"
                       + (" …" if len(pb) > 8 else ""))
        if v.get("budget_note"):
            out.append(f"- Note: {v['budget_note']}")
        if v.get("coverage_note"):
            out.append(f"- Interrupted: {v['coverage_note']}")
        if (v.get("n_samples") or 1) > 1:
            out.append(f"- Input set: {v['n_samples']} samples; per layer the worst over the set")
            mism = v.get("top1_mismatches") or []
            if mism:
                out.append("- Top-1 differs on: " + ", ".join(
                    f"#{m['index']} {m.get('name') or ''}".strip() for m in mism[:20])
                    + (f" (+{len(mism) - 20} more)" if len(mism) > 20 else ""))
        out.append(f"- Smallest rtol that would pass: {_fmt(v.get('needed_rtol'))}")
        if v.get("input"):
            out.append(f"- Input: {_input_text(v['input'])}")
        if v.get("tolerances"):
            out.append(f"- Tolerances: {_tolerances_text(v['tolerances'])}")
        if v.get("topk"):
            out.append(f"- Top-1 agreement: {v['topk'].get('top1_agreement')}, "
                       f"top-{v['topk'].get('k')} overlap: {v['topk'].get('topk_overlap')}")
    else:
        out.append("- Verification: **not run**")
    if rep.get("accepted_mismatch"):
        out.append("- Saved with the user's explicit consent despite failed verification.")
    ov = rep.get("overrides") or {}
    if ov.get("layers") or ov.get("kinds"):
        import json as _json
        out.append(f"- Overrides (mapping file): `{_json.dumps({k: ov[k] for k in ('layers', 'kinds') if ov.get(k)})}`")
    else:
        out.append("- Overrides: none (every rule at its default)")
    pre = (rep.get("extra") or {}).get("preprocessing") or {}
    if pre.get("baked"):
        out.append(f"- Preprocessing baked into the exported model: `{pre.get('formula')}`; it takes "
                   f"{pre.get('takes')}" + (f" (mean file `{pre['mean_file']}`)" if pre.get("mean_file") else ""))
    out += _keras_io_markdown(rep)
    arts = rep.get("artifacts") or []
    if arts:
        out += ["", "## Exported artifacts (each reloaded in a fresh process)", "",
                "| format | path | loaded without Migrator | check | max abs | relative to max abs ref | compared with |",
                "|---|---|---|---|---|---|---|"]
        for a in arts:
            chk = "not checked" if a.get("passed") is None else ("pass" if a.get("passed") else "FAIL")
            out.append(f"| {a.get('format')} | `{a.get('path')}` | "
                       f"{'no (needs Migrator)' if a.get('migrator_importable') else 'yes'} | {chk} | "
                       f"{_fmt(a.get('max_abs'))} | {_fmt(a.get('rel_to_max'))} | {a.get('compared_with', '')} |")
    por = rep.get("portable")
    if por and por.get("needs_migrator"):
        out.append("")
        out.append("- Needs Migrator to load from .keras/.h5: " + ", ".join(
            f"{d['keras']} ({d['class_name']})" for d in por["needs_migrator"]))
    if figures:
        out += ["", "## Figures", ""]
        for fig, link in figures:
            out += [f"![{fig.alt}]({link})", ""]
    out += ["", ("| source layer | type | Keras layer | status | max abs | max rel | isolated | drift64 | "
                 "f32 budget | worst sample | notes |"),
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for L in rep["layers"]:
        notes = "; ".join(L.get("notes") or []) or (L.get("error") or "")
        st = L.get("status")
        if st == "pass" and L.get("basis") == "float32":
            st = "pass (float32 budget)"
        ws = L.get("worst_sample")
        ws = "—" if ws is None else f"#{ws} {L.get('worst_sample_name') or ''}".strip()
        out.append(f"| {L['source']} | {L['source_type']} | {L.get('keras') or '—'} | {st} | "
                   f"{_fmt(L.get('max_abs'))} | {_fmt(L.get('max_rel'))} | {_fmt(L.get('isolated_max_abs'))} | "
                   f"{_fmt(L.get('drift64'))} | {_fmt(L.get('budget64'))} | {ws} | {notes} |")
    out += _training_section(rep)
    out += ["", "## Mapping decisions", ""]
    for L in rep["layers"]:
        if not L["mapping"]:
            continue
        out.append(f"### {L['source']} ({L['source_type']}) → {', '.join(L['keras_layers']) or L.get('keras') or '—'}")
        out.append("")
        out.append("| parameter | formula | value | overridden | remarks |")
        out.append("|---|---|---|---|---|")
        for r in L["mapping"]:
            rem = "; ".join((r.get("warnings") or []) + (r.get("caveats") or []))
            out.append(f"| {r['key']} | `{r['formula']}` | {_fmt(r['value'])} | "
                       f"{'yes' if r['overridden'] else ''} | {rem} |")
        out.append("")
    return "\n".join(out) + "\n"


def _training_section(rep: dict[str, Any]) -> list[str]:
    """Fine-tuning: each batch-norm layer's training update in the source and in Keras, and how
    far their moving statistics drift apart (the mapping's ``training_update`` /
    ``update_drift`` rows; see :mod:`migrator.core.mapping.bn_training`)."""
    found = []
    for L in rep["layers"]:
        rows = {r["key"]: r for r in L.get("mapping") or []}
        if "training_update" in rows and "update_drift" in rows:
            found.append((L, rows["training_update"], rows["update_drift"]))
    if not found:
        return []
    out = ["", "## Fine-tuning: batch-norm moving statistics", "",
           ("- Keras (training=True) normalises with the batch's mean and biased variance, then "
            f"updates `{KERAS_UPDATE}`."),
           "- Drift between the source's statistics and Keras's after N training steps: "
           + str(found[0][2]["formula"]) + ".", "",
           "| layer | source update | Keras momentum | drift after N steps | remarks |",
           "|---|---|---|---|---|"]
    last = None
    for L, u, d in found:
        src = str(u["formula"]).split("  |  ")[0].removeprefix("source: ")
        rem = "; ".join((u.get("warnings") or []) + (u.get("caveats") or []))
        rem, last = ("as above" if rem and rem == last else rem), rem
        mom = (u.get("sources") or {}).get("momentum")
        over = " (override)" if (L.get("options") or {}).get("momentum") is not None else ""
        out.append(f"| {L['source']} | `{src}` | {_fmt(mom)}{over} | {d['value']} | {rem} |")
    return out


def render_html(rep: dict[str, Any], figures: list[Figure] | None = None) -> str:
    """A self-contained HTML page: the Markdown report's text and tables, the figures inline as
    SVG (with their alternative text as caption and ``aria-label``; no external asset).
    ``figures``: already drawn ones (default: drawn here from ``rep``)."""
    figs = {f"figure:{f.stem}": f for f in (report_figures(rep) if figures is None else figures)}
    md = render_markdown(rep, [(f, link) for link, f in figs.items()])
    # small self-contained rendering: tables and headings, no external assets
    rows, body, in_table = [], [], False
    for line in md.splitlines():
        if line.startswith("|"):
            raw = [c.strip() for c in line.strip("|").split("|")]
            cells = [_inline(c) for c in raw]
            if set("".join(raw)) <= set("-"):
                continue
            tag = "th" if not in_table else "td"
            if not in_table:
                body.append("<table>")
                in_table = True
            cls = ' class="fail"' if "fail" in raw else ""
            body.append(f"<tr{cls}>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>")
            continue
        if in_table:
            body.append("</table>")
            in_table = False
        if line.startswith("### "):
            body.append(f"<h3>{html.escape(line[4:])}</h3>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("- "):
            body.append(f"<p>{_inline(line[2:])}</p>")
        elif line.startswith("![") and line.endswith(")") and "](" in line:
            fig = figs.get(line[line.rindex("](") + 2:-1])
            if fig is not None:
                body.append(f"<figure>{fig.svg}<figcaption>{html.escape(fig.alt)}</figcaption></figure>")
    if in_table:
        body.append("</table>")
    del rows
    style = ("body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;"
             "margin:1em 0}td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}"
             "tr.fail td{background:#fdd}th{background:#eee}code{background:#f3f3f3;padding:0 2px}"
             ".failed{color:#b00020}.passed{color:#1b7f2a}figure{margin:1em 0}figcaption{font-size:12px;"
             "color:#555;max-width:760px}svg{max-width:100%;height:auto}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Migrator report</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")
