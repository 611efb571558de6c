"""Command line: ``migrator inspect | convert | compare``.

Exit codes (a contract scripts rely on): 0 success; 2 bad input or usage (one line naming
the file and, where known, the layer — no traceback); 3 verification failed; 1 internal
error.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import sys
import threading
import time
import traceback
import warnings

from . import __version__
from .core import batch, coverage
from .core.compare.metrics import Tolerance, Tolerances
from .core.errors import Cancelled, MigratorError, VerificationFailed
from .core.export import default_report_path, describe_records
from .core.flow import Flow, FlowOptions
from .core.input_shape import input_shape_need, need_error, parse_input_shapes
from .core.inputs import ImagePreprocessing, InputSpec, is_set, parse_mean
from .core.native_logs import NativeLogFilter, quiet_python_loggers
from .core.report import build_report, tool_versions
from .core.repro import check_target as check_repro_target
from .core.saving import check_writable, write_text

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_VERIFY = 0, 1, 2, 3


def _quiet_tf() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="+", metavar="MODEL",
                   help="Caffe: deploy.prototxt weights.caffemodel; Lasagne: builder.py params.pkl|.npz, "
                        "or a whole pickled network (.pkl) alone")
    p.add_argument("--builder-function", default="build_model",
                   help="Lasagne: the function in the builder script that builds the network "
                        "(default: build_model)")
    p.add_argument("--output-layer", default=None,
                   help="Lasagne: key of the output layer when the builder returns a dict")
    p.add_argument("--mapping", metavar="FILE", help="mapping file (JSON overrides) to apply")
    p.add_argument("--accept-unknown", action="append", default=[], metavar="SPEC",
                   help="accept a prototxt field Migrator does not know (read past it; the layer is "
                        "reported as unverified): FIELD, LAYER.FIELD, TYPE.FIELD or LAYER (repeatable)")
    p.add_argument("--input-shape", action="append", default=[], metavar="SHAPE",
                   help="input size in the source layout, e.g. 1,3,224,224, or NAME=1,3,224,224 per "
                        "input (repeatable); open sizes stay open in the Keras model where every "
                        "layer allows it")
    p.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                   help="load a plugin that adds a layer type Migrator does not know (repeatable). "
                        "THIS RUNS THE PLUGIN'S PYTHON CODE with your rights, no sandbox: only "
                        "use files you trust (docs/plugins.md)")


def _compare_args(p: argparse.ArgumentParser, *, inputs: bool) -> None:
    if inputs:
        g = p.add_mutually_exclusive_group()
        g.add_argument("--input", metavar="X.npy",
                       help="input array in the source layout (NCHW); for several inputs an .npz "
                            "with one array per input layer name")
        g.add_argument("--image", metavar="IMG", help="an image file, preprocessed as documented")
        g.add_argument("--images", metavar="DIR|LIST",
                       help="an input set: a folder of images (sorted by name) or a text file listing "
                            "image paths, each preprocessed like --image; compared batch by batch")
        p.add_argument("--limit", type=int, default=None, metavar="N",
                       help="input sets (--images, or --input with a leading sample axis): the first N")
        p.add_argument("--batch-size", type=int, default=None, metavar="B",
                       help="input sets: samples per batch (memory is bounded by the batch; default 8); "
                            "with --input X.npy|.npz the first axis is the set")
        _preprocessing_args(p)
        p.add_argument("--resize", default=None,
                       help="HxW to resize the image to, then centre-cropped to the model input "
                            "(default: the model input, or the size of a larger --mean image)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random input (default 0)")
    p.add_argument("--runtime", default="builtin", choices=("builtin", "opencv", "legacy"),
                   help="reference runtime for the source semantics")
    p.add_argument("--legacy-python", metavar="CMD",
                   help="command starting a Python in the legacy environment (runtime legacy), "
                        "e.g. 'conda run -n old python' or 'chroot /srv/old python3'")
    p.add_argument("--legacy-timeout", type=float, default=None, metavar="SECONDS",
                   help="give up on the legacy environment after this many seconds")
    p.add_argument("--atol", type=float, default=None, help="absolute tolerance (default 1e-5)")
    p.add_argument("--rtol", type=float, default=None,
                   help="tolerance relative to each layer's max |reference| (default 1e-4)")
    p.add_argument("--layer-tolerance", action="append", default=[], metavar="LAYER=ATOL,RTOL",
                   help="per-layer tolerance override (repeatable)")
    p.add_argument("--repro", metavar="DIR", default=None,
                   help="when verification fails, write the failing layer alone (Keras file, reference "
                        "inputs/outputs, source definition, a short script) into DIR")
    p.add_argument("--precision", choices=("failing", "all", "off"), default="failing",
                   help="float64 second look (isolated error, drift from a float64 reference, float32's "
                        "own drift): for layers over the tolerance (default), every layer, or never")


def _preprocessing_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--channel-order", choices=("BGR", "RGB"), default=None,
                   help="image channel order fed to the network (default: BGR for Caffe, RGB for Lasagne)")
    p.add_argument("--mean", default=None, metavar="MEAN",
                   help="mean to subtract: per channel, e.g. '104,117,123', or a mean file "
                        "(Caffe's mean.binaryproto, or .npy), a mean image centre-cropped to the "
                        "input as Caffe's transform_param does (default: the model's stored mean "
                        "when it has one)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply after mean subtraction")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="migrator",
                                 description="Convert Caffe and Lasagne/Theano models to Keras 3 and "
                                             "verify them layer by layer.")
    ap.add_argument("--version", action="store_true", help="print versions and TensorFlow devices")
    ap.add_argument("--verbose", action="store_true",
                    help="let TensorFlow's own log lines and warnings through (hidden by default)")
    sub = ap.add_subparsers(dest="cmd")

    pi = sub.add_parser("inspect", help="show the layer table and the Keras mapping")
    _model_args(pi)
    pi.add_argument("--json", action="store_true", help="machine-readable output")

    pc = sub.add_parser("convert", help="convert, verify on a seeded random input, save if it passes")
    _model_args(pc)
    pc.add_argument("-o", "--output", required=True, metavar="OUT",
                    help="output model: .keras, .h5, .weights.h5, .tflite, or a SavedModel directory "
                         "(with --format saved_model)")
    pc.add_argument("--format", choices=("keras", "h5", "weights", "saved_model", "tflite"),
                    help="format of OUT (default: from its extension)")
    pc.add_argument("--also", action="append", default=[],
                    choices=("keras", "h5", "weights", "saved_model", "tflite"),
                    help="also write this format next to OUT (repeatable)")
    pc.add_argument("--report", metavar="FILE.json",
                    help="report path (default: OUT's name + .report.json); .md and .html twins are written too")
    pc.add_argument("--force", action="store_true", help="overwrite existing files")
    pc.add_argument("--accept-mismatch", action="store_true",
                    help="save even when verification fails (recorded in the report)")
    _compare_args(pc, inputs=False)
    _preprocessing_args(pc)
    pc.add_argument("--bake-preprocessing", action="store_true",
                    help="put the image preprocessing (--channel-order, --mean, --scale) into the "
                         "exported model as its first layers: it then takes RGB pixels in [0, 255] "
                         "(resized and cropped to the input size), channels last")

    pl = sub.add_parser("layers", help="every source layer type of both frameworks and its status "
                                       "(exact: tested against which reference; refused: why)")
    pl.add_argument("--framework", choices=("caffe", "lasagne"), help="only this framework")
    pl.add_argument("--json", action="store_true", help="machine-readable output")
    pl.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                    help="also list the layer types this plugin adds, marked as the plugin's "
                         "(repeatable; RUNS its Python code, docs/plugins.md)")

    pm = sub.add_parser("compare", help="compare the source semantics with the Keras model, layer by layer")
    _model_args(pm)
    pm.add_argument("--report", metavar="FILE.json", help="write the report here")
    pm.add_argument("--force", action="store_true", help="overwrite an existing report")
    pm.add_argument("--all", action="store_true", help="show every layer, not only compared ones")
    _compare_args(pm, inputs=True)
    pb = sub.add_parser("batch", help="convert and verify every model in a folder tree (or a LIST file), "
                                      "each in its own process; writes OUTDIR/index.html and index.json")
    pb.add_argument("models", metavar="DIR|LIST", help="a folder of models (searched recursively) or a text "
                                                       "file naming one model's files per line")
    pb.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="where the models and the index go")
    pb.add_argument("--mapping", metavar="FILE", help="mapping file for every model without its own "
                                                      "(<weights>.mapping.json or mapping.json beside it)")
    pb.add_argument("--runtime", default="builtin", choices=("builtin", "opencv", "legacy"),
                    help="reference runtime for every model")
    pb.add_argument("--format", choices=("keras", "h5", "weights", "saved_model", "tflite"),
                    help="format of each model's main output (default keras)")
    pb.add_argument("--also", action="append", default=[],
                    choices=("keras", "h5", "weights", "saved_model", "tflite"),
                    help="also write this format for every model (repeatable)")
    pb.add_argument("--images", metavar="DIR|LIST", help="verify every model on this input set too")
    pb.add_argument("--builder-function", default="build_model",
                    help="Lasagne: the builder function to look for in .py files (default build_model)")
    pb.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                    help="load this plugin for every model (repeatable; RUNS its Python code, "
                         "docs/plugins.md)")
    pb.add_argument("--timeout", type=float, default=1800.0, metavar="SECONDS",
                    help="per-model time limit (default 1800)")
    pb.add_argument("--memory-limit", type=float, default=None, metavar="MB",
                    help="per-model limit on resident memory (the model's process group)")
    pb.add_argument("--force", action="store_true",
                    help="convert again the models an earlier run already verified")
    ap.__version__ = __version__
    return ap


def _versions_text() -> str:
    _quiet_tf()
    lines = [f"migrator {__version__}"]
    try:
        v = tool_versions()
        lines.append(", ".join(f"{k} {v[k]}" for k in ("python", "numpy", "tensorflow", "keras",
                                                       "protobuf", "h5py", "cv2") if k in v))
        import tensorflow as tf
        devs = tf.config.list_physical_devices()
        lines.append("TensorFlow devices: " + (", ".join(f"{d.device_type}:{d.name}" for d in devs) or "none"))
        if not tf.config.list_physical_devices("GPU"):
            lines.append("No GPU found by TensorFlow: Keras runs on the CPU (pip install migrator[gpu] "
                         "for CUDA support)")
    except Exception as e:  # noqa: BLE001
        lines.append(f"(could not query TensorFlow: {e})")
    return "\n".join(lines)


def _tolerances(args):
    d = Tolerance()
    if args.atol is not None:
        d.atol = args.atol
    if args.rtol is not None:
        d.rtol = args.rtol
    per = {}
    for spec in args.layer_tolerance:
        try:
            name, vals = spec.split("=", 1)
            a, r = vals.split(",")
            per[name] = Tolerance(float(a), float(r))
        except ValueError:
            raise MigratorError(f"--layer-tolerance expects LAYER=ATOL,RTOL, got {spec!r}") from None
    return Tolerances(default=d, per_layer=per)


def _flow(args, **options):
    """The conversion flow of a command, opened and planned: the model files, the mapping
    file, and --accept-unknown / --input-shape added to the mapping file's entries (and
    recorded with them in the report)."""
    flow = Flow(FlowOptions(paths=list(args.model), builder_function=args.builder_function,
                            output_layer=args.output_layer, mapping_path=args.mapping,
                            accept_unknown=list(args.accept_unknown),
                            input_shapes=parse_input_shapes(args.input_shape),
                            input_array=getattr(args, "input", None), **options))
    flow.make_plan()
    return flow


def _note_output_choice(graph) -> None:
    """State in one line which layer a Lasagne builder's dict/list gave as the output."""
    for w in graph.warnings:
        if w.startswith("output layer:"):
            print(f"note: {w}", file=sys.stderr)


def _check_tolerance_layers(graph, tols):
    for name in tols.per_layer:
        if name not in graph:
            raise MigratorError("--layer-tolerance names an unknown layer", layer=name)


def _runtime_settings(args) -> dict:
    if args.runtime == "legacy":
        if not args.legacy_python:
            raise MigratorError("--runtime legacy needs --legacy-python CMD")
        settings = {"command": args.legacy_python}
        if args.legacy_timeout is not None:
            settings["timeout"] = args.legacy_timeout
        return settings
    return {}


def _fmt(v) -> str:
    if v is None or v != v:  # noqa: PLR0124 - NaN check without importing numpy
        return "-"
    return f"{v:.2e}"


def print_table(result, *, show_all: bool, out=sys.stdout) -> None:
    rows = [r for r in result.layers if show_all or r.status in ("pass", "fail")]
    w = max([len(r.source) for r in rows] + [12])
    wk = max([len(r.keras or "-") for r in rows] + [11])
    # the float64 second look: isolated error, chained drift from float64, float32's own drift
    looked = any(r.isolated is not None or not math.isnan(r.budget64) for r in rows)
    nset = getattr(result, "n_samples", 1) or 1
    extra_h = f" {'isolated':>9} {'drift64':>9} {'f32 budg':>9}" if looked else ""
    sample_h = "  worst sample" if nset > 1 else ""
    print(f"{'source layer':<{w}}  {'type':<14} {'keras layer':<{wk}}  {'max abs':>9} {'max rel':>9} "
          f"{'need rtol':>9}{extra_h}  status{sample_h}", file=out)
    for r in rows:
        st = r.status.upper() if r.status == "fail" else r.status
        if r.status == "pass" and r.basis == "float32":
            st = "pass*"
        extra = (f" {_fmt(r.isolated_max_abs):>9} {_fmt(r.drift64):>9} {_fmt(r.budget64):>9}"
                 if looked else "")
        smp = ""
        if nset > 1 and r.worst_sample is not None:
            smp = f"  #{r.worst_sample}" + (f" {r.sample_name}" if r.sample_name else "")
        print(f"{r.source:<{w}}  {r.source_type[:14]:<14} {(r.keras or '-'):<{wk}}  {_fmt(r.max_abs):>9} "
              f"{_fmt(r.max_rel):>9} {_fmt(r.needed_rtol):>9}{extra}  {st:<6}{smp}"
              + (f"  ({r.note})" if r.note and r.status == "fail" else ""), file=out)
    s = result.to_dict()
    c = s["counts"]
    rt = result.runtime
    print(f"\nreference: {rt.get('name')} ({rt.get('framework', '')}); Keras device: {result.device}", file=out)
    if nset > 1:
        print(f"input set: {nset} samples (per layer: the worst over the set)", file=out)
    print(f"compared {c['pass'] + c['fail']} layers: {c['pass']} passed, {c['fail']} failed"
          f" ({c['fused']} fused, {c['not-compared']} not compared)", file=out)
    fac = getattr(result, "float32_factor", 4.0)
    pb = result.passed_by_budget if hasattr(result, "passed_by_budget") else []
    if pb:
        print(f"pass* = {len(pb)} layer(s) over the plain tolerance that match on the reference's own inputs "
              f"and drift from a float64 reference at most {fac:g}x as much as float32 itself does "
              "(float32 accumulation, not a mapping error)", file=out)
    if getattr(result, "budget_note", None):
        print(f"note: {result.budget_note}", file=out)
    fd = result.first_divergent
    if fd:
        print(f"first divergent layer: {fd.source} ({fd.source_type}) max abs {_fmt(fd.max_abs)}, "
              f"max rel {_fmt(fd.max_rel)}, worst channel {fd.worst_channel}", file=out)
    if fd is not None:
        rc = result.root_cause
        if result.divergence == "accumulated":
            print("every failing layer matches when fed the reference's own inputs: the divergence is "
                  "float32 rounding accumulated along the network, not a wrong mapping", file=out)
        elif result.divergence == "drift":
            print(f"every failing layer matches on the reference's own inputs, but drifts from a float64 "
                  f"reference more than {fac:g}x what float32 itself costs there (drift {_fmt(fd.drift64)} "
                  f"vs float32 budget {_fmt(fd.budget64)}): a small error is introduced at or before "
                  f"{fd.source}", file=out)
        elif result.divergence == "unconfirmed":
            print(f"the float32 budget would pass {fd.source}, but the '{rt.get('name')}' reference does not "
                  f"confirm Migrator's float64 anchor there (|{rt.get('name')} - float64| {_fmt(fd.anchor64)} > "
                  f"{fac:g}x float32's own {_fmt(fd.budget64)}): the reference and Migrator's numpy semantics "
                  "disagree, so no pass is claimed", file=out)
        elif rc is not None:
            iso = rc.isolated
            print(f"root cause: {rc.source} ({rc.source_type}) is wrong even on the reference's own "
                  f"inputs (isolated max rel {_fmt(iso.get('max_rel'))}, worst channel "
                  f"{iso.get('worst_channel')})", file=out)
    print(f"smallest rtol that would pass every layer: {_fmt(result.needed_rtol)}", file=out)
    if result.topk:
        t = result.topk
        n = t.get("n", nset)
        print(f"top-1 agreement {t['top1_agreement']:.3f}, top-{t['k']} overlap {t['topk_overlap']:.3f}"
              + (f" over {n} samples" if n > 1 else ""), file=out)
        mism = getattr(result, "top1_mismatches", None) or []
        if mism:
            shown = ", ".join(f"#{m['index']} {m.get('name') or ''}".strip() for m in mism[:10])
            more = f" (+{len(mism) - 10} more)" if len(mism) > 10 else ""
            print(f"top-1 differs on {len(mism)} sample(s): {shown}{more}", file=out)
    if getattr(result, "coverage_note", None) and result.first_divergent is None:
        # stopped part-way with no failing layer: no verdict for the set
        print("VERIFICATION INCOMPLETE (stopped before the end of the input set)", file=out)
    else:
        print("VERIFICATION PASSED" if result.passed else "VERIFICATION FAILED", file=out)


def cmd_layers(args) -> int:
    """Every source layer type with its status, from the registries (migrator.core.coverage)."""
    items = coverage.entries(args.framework)
    if args.json:
        json.dump(coverage.as_json(items), sys.stdout, indent=1)
        print()
    else:
        sys.stdout.write(coverage.as_text(items))
    return EXIT_OK


def _not_covered_line(plan) -> str:
    """One line, printed first by inspect: the layers Migrator does not convert."""
    bad = plan.unsupported
    if not bad:
        return f"coverage: all {len(plan.mappings)} layers are converted"
    items = ", ".join(f"{m.source} ({m.source_type})" for m in bad[:12]) + (" ..." if len(bad) > 12 else "")
    return f"not covered: {len(bad)} of {len(plan.mappings)} layers: {items}"


def cmd_inspect(args) -> int:
    from .core.mapping.io_layouts import io_layout_lines
    flow = _flow(args)
    graph, plan = flow.graph, flow.plan
    rows = []
    for node, m in zip(graph.nodes, plan.mappings):
        rows.append({"source": node.name, "type": node.source_type, "op": node.op,
                     "inputs": node.inputs,
                     "shape": list(node.out_shape) if node.out_shape else None,
                     "params": {k: list(p.shape) for k, p in node.params.items()},
                     "param_count": node.param_count(),
                     "keras": m.keras_output, "keras_layers": [s.name for s in m.layers],
                     "keras_classes": [s.class_name for s in m.layers], "fused_into": m.fused_into,
                     "supported": m.supported, "error": m.error,
                     "warnings": m.warnings, "overridden": m.overridden})
    unsupported = [r for r in rows if not r["supported"]]
    need = input_shape_need(graph, plan)
    unknown_types = [(n.name, n.source_type) for n in graph.nodes if n.op == "Custom"]
    rc = EXIT_USAGE if unknown_types else EXIT_OK
    if args.json:
        json.dump({"framework": graph.framework, "name": graph.name, "files": graph.files,
                   "warnings": graph.warnings, "layers": rows,
                   "unsupported": [{"source": r["source"], "type": r["type"]} for r in unsupported],
                   "input_shape_needed": need,
                   "unknown_fields": (graph.meta.get("caffe") or {}).get("unknown_fields") or [],
                   "input_shapes": graph.meta.get("input_shapes"),
                   "unknown_types": [{"source": n, "type": t} for n, t in unknown_types],
                   "not_covered": [{"source": m.source, "type": m.source_type, "why": m.error}
                                   for m in plan.unsupported],
                   "keras_io": io_layout_lines(plan)},
                  sys.stdout, indent=1, default=list)
        print()
        return rc
    def shape_txt(shp):
        return "x".join("?" if d is None else str(d) for d in shp) if shp else "?"

    def params_txt(params):
        parts = [f"{k} {shape_txt(v)}" for k, v in params.items()]
        txt = ", ".join(parts)
        if len(txt) > 34:   # cut at a parameter boundary, never inside a shape
            keep = []
            for part in parts:
                if len(", ".join(keep + [part])) > 32:
                    break
                keep.append(part)
            txt = ", ".join(keep) + ", …"
        return txt

    w = max([len(r["source"]) for r in rows] + [5])
    wt = max([len(r["type"]) for r in rows] + [4])
    ws = max([len(shape_txt(r["shape"])) for r in rows] + [12])
    wp = max([len(params_txt(r["params"])) for r in rows] + [6])
    print(f"{graph.framework} model '{graph.name}' — {len(rows)} layers "
          f"({', '.join(os.path.basename(f) for f in graph.files if f)})")
    print(_not_covered_line(plan))
    print(f"{'layer':<{w}}  {'type':<{wt}}  {'output shape':<{ws}}  {'params':<{wp}}  keras")
    for r in rows:
        if not r["supported"]:
            keras = f"UNSUPPORTED: {r['error']}"
        elif r["fused_into"]:
            keras = f"(fused with {r['fused_into']})"
        else:
            keras = ", ".join(f"{n}:{c}" for n, c in zip(r["keras_layers"], r["keras_classes"])) or \
                (f"= {r['keras']}" if r["keras"] else "-")
        flag = " [overridden]" if r["overridden"] else ""
        warn = f" WARNING: {'; '.join(r['warnings'])}" if r["warnings"] else ""
        print(f"{r['source']:<{w}}  {r['type']:<{wt}}  {shape_txt(r['shape']):<{ws}}  "
              f"{params_txt(r['params']):<{wp}}  {keras}{flag}{warn}")
    for line in io_layout_lines(plan):
        print(line)
    for wmsg in graph.warnings:
        print(f"note: {wmsg}")
    if unsupported:
        print(f"{len(unsupported)} unsupported layer(s): " +
              ", ".join(f"{r['source']} ({r['type']})" for r in unsupported))
    if need is not None:
        print(f"note: {need_error(graph, need).message}")
    if unknown_types:
        print(f"migrator: error: {len(unknown_types)} layer type(s) Migrator does not convert: "
              + ", ".join(f"'{n}' ({t})" for n, t in unknown_types[:8]), file=sys.stderr)
    return rc


def _verify(args, flow, *, spec):
    """Compare on ``spec`` with the command's reference runtime and tolerances."""
    flow.check_ready()
    tols = _tolerances(args)
    _check_tolerance_layers(flow.graph, tols)
    o = flow.options
    o.runtime_settings = _runtime_settings(args)
    o.runtime, o.tolerances, o.input_spec = args.runtime, tols, spec
    o.precision = getattr(args, "precision", "failing")
    _quiet_tf()
    if not is_set(spec):
        return flow.compare()
    term = _TERMINAL or (sys.stderr if sys.stderr.isatty() else None)
    bar = SetProgressBar(term) if term is not None else None
    _STOP_SET.clear()
    _SET_RUNNING.set()
    try:
        result = flow.compare(progress=bar.update if bar else None, cancel=_STOP_SET.is_set)
    except Cancelled:
        if not _STOP_SET.is_set():
            raise
        raise _StoppedEmpty() from None
    finally:
        _SET_RUNNING.clear()
        if bar is not None:
            bar.close()
    return result


def _preprocessing(args, graph) -> ImagePreprocessing:
    """--channel-order, --mean (numbers or a mean file, read now) and --scale."""
    mean, mean_file = parse_mean(args.mean)
    order = args.channel_order or ("BGR" if graph.framework == "caffe" else "RGB")
    return ImagePreprocessing(channel_order=order, mean=mean, scale=args.scale,
                              mean_file=mean_file)


# stderr's terminal, opened before descriptor 2 goes through the native-log filter (a pipe,
# line by line): the progress bar draws on it directly.  None when stderr is no terminal.
_TERMINAL = None


def _open_terminal() -> None:
    global _TERMINAL
    if _TERMINAL is None:
        try:
            if sys.stderr.isatty():
                _TERMINAL = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1)
        except (OSError, ValueError, AttributeError):
            _TERMINAL = None


# A first Ctrl+C during an input-set comparison stops it after the batch under way is dropped
# and keeps the batches compared so far (a second Ctrl+C stops at once, as anywhere else).
_SET_RUNNING = threading.Event()
_STOP_SET = threading.Event()


class _StoppedEmpty(Exception):
    """Ctrl+C before the first batch of an input set was compared."""


class SetProgressBar:
    """The terminal progress of an input-set comparison (rich): bar, images done, rate, time
    left, the step under way.  Only made when stderr is a terminal."""

    _DONE = re.compile(r"^(\d+) of (\d+) samples compared$")
    _OF = re.compile(r" of (\d+)\b")

    def __init__(self, file=None):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
        self.done, self.total, self.rate = 0, None, ""
        self.progress = Progress(TextColumn("comparing"), BarColumn(bar_width=24),
                                 TextColumn("{task.fields[count]}"),
                                 TimeElapsedColumn(), TextColumn("{task.fields[rate]}"),
                                 TextColumn("{task.fields[step]}", style="dim"),
                                 console=Console(file=file or sys.stderr), transient=False)
        self.task = self.progress.add_task("compare", total=1.0, count="", rate="", step="")
        self.progress.start()

    def update(self, f: float, msg: str) -> None:
        from .core.compare.sets import split_rate
        head, rate = split_rate(msg)
        m = self._DONE.match(head)
        if m:
            self.done, self.total = int(m.group(1)), int(m.group(2))
        elif self.total is None:
            m = self._OF.search(head)
            if m:
                self.total = int(m.group(1))
        self.rate = rate or self.rate
        step = head.split("): ", 1)[-1] if "): " in head else head
        count = f"{self.done}/{self.total} images" if self.total else ""
        self.progress.update(self.task, completed=max(0.0, min(1.0, f)), count=count, rate=self.rate,
                             step=step[:40])

    def close(self) -> None:
        self.progress.stop()


def _image_spec(args, graph):
    bs = getattr(args, "batch_size", None)
    limit = getattr(args, "limit", None)
    for flag, v in (("--batch-size", bs), ("--limit", limit)):
        if v is not None and v < 1:
            raise MigratorError(f"{flag} must be at least 1, got {v}")
    if args.input:
        if bs is not None or limit is not None:
            return InputSpec(kind="arrays", path=args.input, limit=limit, batch_size=bs or 8)
        return InputSpec(kind="npy", path=args.input)
    if (bs is not None or limit is not None) and not getattr(args, "images", None):
        raise MigratorError("--limit and --batch-size need an input set: --images DIR|LIST or --input X.npy")
    if args.image or getattr(args, "images", None):
        pp = _preprocessing(args, graph)
        if args.resize:
            try:
                h, w = args.resize.lower().split("x")
                pp.resize = (int(h), int(w))
            except ValueError:
                raise MigratorError(f"--resize expects HxW, got {args.resize!r}") from None
        if getattr(args, "images", None):
            return InputSpec(kind="images", path=args.images, limit=limit, batch_size=bs or 8,
                             preprocessing=pp)
        return InputSpec(kind="image", path=args.image, preprocessing=pp)
    return InputSpec(kind="random", seed=args.seed)


def cmd_compare(args) -> int:
    flow = _flow(args, release_weights=True)
    _note_output_choice(flow.graph)
    if args.report:
        check_writable(args.report, args.force)
    if args.repro:
        check_repro_target(args.repro, args.force)
    try:
        result = _verify(args, flow, spec=_image_spec(args, flow.graph))
    except _StoppedEmpty:
        print("migrator: interrupted before the first batch was compared: no results", file=sys.stderr)
        return 130
    print_table(result, show_all=args.all)
    if args.repro and not result.passed:
        print(f"repro: {flow.write_repro(args.repro, force=args.force)}")
    if args.report:
        rep = build_report(flow.graph, flow.plan, result, overrides=flow.overrides)
        write_text(args.report, json.dumps(rep, indent=1, allow_nan=False), force=args.force)
        print(f"report: {args.report}")
    if result.coverage_note:
        print(f"note: {result.coverage_note}")
        return 130
    return EXIT_OK if result.passed else EXIT_VERIFY


def cmd_convert(args) -> int:
    flow = _flow(args, output=args.output, fmt=args.format, also=tuple(args.also),
                 report_path=args.report or default_report_path(args.output, args.format),
                 force=args.force, accept_mismatch=args.accept_mismatch, release_weights=True)
    _note_output_choice(flow.graph)
    if args.bake_preprocessing:
        flow.options.bake_preprocessing = _preprocessing(args, flow.graph)
    elif args.mean is not None or args.channel_order or args.scale != 1.0:
        raise MigratorError("convert verifies on a random input: --mean, --channel-order and "
                            "--scale only matter with --bake-preprocessing")
    flow.check_outputs()      # refuse early, before any work, if outputs exist
    if args.repro:
        check_repro_target(args.repro, args.force)
    result = _verify(args, flow, spec=InputSpec(kind="random", seed=args.seed))
    print_table(result, show_all=False)
    if args.repro and not result.passed:
        print(f"repro: {flow.write_repro(args.repro, force=args.force)}")
    if not result.passed and not args.accept_mismatch:
        print("not saved: verification failed (use --accept-mismatch to save anyway)", file=sys.stderr)
        return EXIT_VERIFY
    written, records = flow.export()
    for line in describe_records(records):
        print(f"checked {line}")
    for p in written:
        print(f"wrote {p}")
    return EXIT_OK if result.passed else EXIT_VERIFY


def cmd_batch(args) -> int:
    """Exit 0 when every model was verified and written, 3 when some were not (the index says
    which and why), 2 for a usage mistake, 130 when interrupted (the index keeps what finished)."""
    opts = batch.BatchOptions(out_dir=args.output, mapping=args.mapping, runtime=args.runtime,
                              fmt=args.format, also=args.also, images=args.images, timeout_s=args.timeout,
                              memory_mb=args.memory_limit, force=args.force,
                              builder_function=args.builder_function,
                              plugins=[os.path.abspath(p) for p in args.plugin])
    tty = sys.stderr.isatty()
    t0 = time.monotonic()

    def progress(done, total, name, eta):
        if not tty:
            return
        width = 24
        bar = "#" * int(width * done / max(total, 1))
        left = f", about {eta:.0f} s left" if eta else ""
        print(f"\r[{bar:<{width}}] {done}/{total} {name[:40]:<40} {time.monotonic() - t0:.0f} s{left}   ",
              end="", file=sys.stderr, flush=True)

    index = batch.run_batch(args.models, opts, progress=progress)
    if tty:
        print(file=sys.stderr)
    for m in index["models"]:
        extra = " (already done)" if m.get("skipped") else ""
        print(f"{m['status']:<20} {m['name']}{extra}" + (f": {m['detail']}" if m.get("detail") else ""))
    counts = ", ".join(f"{n} {s}" for s, n in index["counts"].items() if n)
    print(f"\n{len(index['models'])} models: {counts}")
    print(f"index: {os.path.join(args.output, 'index.html')}")
    return EXIT_OK if batch.all_verified(index) else EXIT_VERIFY


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.version:
        print(_versions_text())
        return EXIT_OK
    if not args.cmd:
        ap.print_help()
        return EXIT_USAGE
    _quiet_tf()
    _install_signal_handlers()
    _one_line_warnings()
    _open_terminal()
    if args.verbose:
        return _run_deep(lambda: _dispatch(args))
    quiet_python_loggers()
    with NativeLogFilter():
        return _run_deep(lambda: _dispatch(args))


def _one_line_warnings() -> None:
    """Python/numpy warnings (e.g. ``RuntimeWarning: overflow``) as one line each, once per
    message, without the source line they were raised from."""
    seen: set = set()

    def show(message, category, filename, lineno, file=None, line=None):
        text = " ".join(str(message).split())
        key = (category, text)
        if key in seen:
            return
        seen.add(key)
        print(f"migrator: warning: {text} ({category.__name__})", file=sys.stderr)
    warnings.showwarning = show


class _Signalled(BaseException):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _install_signal_handlers() -> None:
    """SIGTERM/SIGHUP/SIGINT end the command at once (exit 128+N), taking the builder child
    process with them -- even when the shell started us with SIGINT ignored (a background
    job): a signal sent to this pid is a request to stop."""

    def handler(signum, frame):
        raise _Signalled(signum)
    for name in ("SIGTERM", "SIGHUP", "SIGINT"):
        sig = getattr(signal, name, None)
        if sig is None:
            continue
        try:
            signal.signal(sig, handler)
        except (ValueError, OSError):   # not the main thread (embedded use): leave as is
            pass


def _stop_children() -> None:
    mod = sys.modules.get("migrator.core.importers.lasagne")
    if mod is not None:
        mod.kill_builder_processes()
    mod = sys.modules.get("migrator.core.batch")
    if mod is not None:
        mod.stop_all()
    mod = sys.modules.get("migrator.core.export")
    if mod is not None:
        mod.stop_check_process()


def _run_deep(fn) -> int:
    """Run ``fn`` on a thread with a big stack and a high recursion limit: Keras walks
    functional models recursively, and deep source models (1,000+ layers) need both."""
    old_stack = threading.stack_size()
    old_limit = sys.getrecursionlimit()
    box: dict = {}
    done = threading.Event()

    def target():
        try:
            box["rc"] = fn()
        finally:
            done.set()

    try:
        threading.stack_size(512 << 20)
        sys.setrecursionlimit(max(old_limit, 200_000))
        t = threading.Thread(target=target, name="migrator-cli", daemon=True)
        t.start()
    finally:
        threading.stack_size(old_stack)
    try:
        # waiting on an Event, not Thread.join: a signal interrupting join() can mark the
        # thread stopped while it still runs (CPython's bpo-45274 clean-up)
        while not done.is_set() and t.is_alive():
            try:
                done.wait(0.2)
            except (KeyboardInterrupt, _Signalled) as e:
                if getattr(e, "signum", 2) == 2 and _SET_RUNNING.is_set() and not _STOP_SET.is_set():
                    _STOP_SET.set()     # the input-set comparison keeps the batches done so far
                    print("\nmigrator: stopping the comparison; the images compared so far are kept "
                          "(Ctrl+C again to stop at once)", file=sys.stderr, flush=True)
                    continue
                raise
    except (KeyboardInterrupt, _Signalled) as e:
        signum = getattr(e, "signum", 2)
        _STOPPING.set()     # what the worker hits as its children die is not news: say one line
        _stop_children()
        t.join(3.0)   # let the worker remove its temp files once the child is gone
        print("migrator: interrupted" if signum == 2 else f"migrator: stopped by signal {signum}",
              file=sys.stderr)
        return 128 + signum
    finally:
        sys.setrecursionlimit(old_limit)
    return box.get("rc", EXIT_INTERNAL)


#: set when a signal stops the CLI: the worker thread then reports nothing of its own
_STOPPING = threading.Event()


def _dispatch(args) -> int:
    try:
        if getattr(args, "plugin", None):
            from .core.plugins import load_plugins
            load_plugins(args.plugin)     # the user's code (docs/plugins.md)
        return {"inspect": cmd_inspect, "convert": cmd_convert, "compare": cmd_compare,
                "layers": cmd_layers, "batch": cmd_batch}[args.cmd](args)
    except MigratorError as e:
        if not _STOPPING.is_set():
            print(f"migrator: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except VerificationFailed as e:
        print(f"migrator: verification failed: {e}", file=sys.stderr)
        return EXIT_VERIFY
    except Cancelled:
        if not _STOPPING.is_set():
            print("migrator: cancelled", file=sys.stderr)
        return EXIT_INTERNAL
    except KeyboardInterrupt:
        print("migrator: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("migrator: error: out of memory: the model (or a size declared in its files) is too "
              "large for this machine", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # noqa: BLE001 - internal error
        if os.environ.get("MIGRATOR_DEBUG"):
            traceback.print_exc()
        print(f"migrator: internal error: {type(e).__name__}: {' '.join(str(e).split())} "
              "(set MIGRATOR_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
