"""What Migrator converts: every source layer type of both frameworks with its status.

The status of each type is *derived from the registries* (the Caffe importer's
``LAYER_HANDLERS`` with the ``SUPPORTED_TYPES`` / ``FORK_TYPES`` derived from it, its
``REFUSED_TYPES`` / data and sink tables, and the Lasagne importer's ``CONVERTERS``, from which
its ``KNOWN`` / ``REFUSED_CLASSES`` are derived), so it cannot drift from what the code does.
Whether a converted type is ``exact`` -- and against which reference, by which test -- is read
from the *recorded* proofs in ``docs/proofs.json``: the tests that compare Migrator layer by
layer with a real framework (real Caffe, real Theano / Lasagne, OpenCV DNN) record the types
they compared when they pass (``tests/proofs.py``), and ``make coverage`` writes them there.
Nothing here is hand-kept but the notes on covered variants.  ``tests/cli/test_layers_cmd.py``
checks that ``docs/coverage.md`` (``python -m migrator.core.coverage``, or ``make coverage``) is
up to date.

Statuses: ``exact`` (converted; a passing test compared it with ``reference``), ``input``
(becomes a model input), ``dropped`` (training-only; dropped from the deploy graph with a note),
``refused`` (named, with the reason), ``converted`` (converted, no proof against the real
framework recorded yet), ``unsupported`` (imported as an unknown layer).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

#: Every layer type registered in BVLC Caffe (git 2018-08, Debian 11 python3-caffe:
#: ``caffe.layer_type_list()`` in the test chroot).
BVLC_CAFFE_TYPES = (
    "AbsVal", "Accuracy", "ArgMax", "BNLL", "BatchNorm", "BatchReindex", "Bias", "Clip", "Concat",
    "ContrastiveLoss", "Convolution", "Crop", "Data", "Deconvolution", "Dropout", "DummyData", "ELU",
    "Eltwise", "Embed", "EuclideanLoss", "Exp", "Filter", "Flatten", "HDF5Data", "HDF5Output",
    "HingeLoss", "Im2col", "ImageData", "InfogainLoss", "InnerProduct", "Input", "LRN", "LSTM",
    "LSTMUnit", "Log", "MVN", "MemoryData", "MultinomialLogisticLoss", "PReLU", "Parameter",
    "Pooling", "Power", "Python", "RNN", "ReLU", "Reduction", "Reshape", "SPP", "Scale", "Sigmoid",
    "SigmoidCrossEntropyLoss", "Silence", "Slice", "Softmax", "SoftmaxWithLoss", "Split", "Swish",
    "TanH", "Threshold", "Tile", "WindowData",
)

#: Caffe type -> the variants its tests cover (shown next to a recorded proof; not a proof itself).
CAFFE_NOTES: dict[str, str] = {
    "Input": "Input layer, input/input_dim, input_shape",
    "Convolution": "kernel/stride/pad h != w, dilation, group",
    "Deconvolution": "stride, pad, dilation, group, rectangular kernels",
    "InnerProduct": "axis, transpose",
    "BatchNorm": "use_global_stats, eps, fused with Scale",
    "Scale": "one bottom (axis, num_axes, bias) or two bottoms at axis 0",
    "Bias": "one bottom (axis, num_axes) or two bottoms at axis 0",
    "ReLU": "negative_slope",
    "PReLU": "per channel, channel_shared",
    "ELU": "alpha",
    "Exp": "base, scale, shift",
    "Log": "base, scale, shift (keras.ops expression)",
    "Power": "power, scale, shift",
    "Threshold": "threshold (strict >)",
    "Clip": "min, max",
    "Swish": "beta",
    "Pooling": "MAX, AVE, global, round_mode, pad (STOCHASTIC refused)",
    "LRN": "ACROSS_CHANNELS, WITHIN_CHANNEL",
    "Eltwise": "SUM (coeff), PROD, MAX",
    "Concat": "axis",
    "Slice": "axis, slice_point, slice_dim",
    "Crop": "axis, offsets (none, one, one per axis)",
    "Flatten": "axis, end_axis",
    "Reshape": "axis, num_axes, 0 / -1",
    "Softmax": "any axis",
    "Dropout": "identity at inference",
    "Reduction": "SUM, ASUM, SUMSQ, MEAN over any axis > 0, coeff",
    "MVN": "normalize_variance, across_channels, eps; rank 3 and 4",
    "Tile": "axis, tiles",
    "ArgMax": "top_k, axis, out_max_val (keras.ops expression)",
    "Embed": "bias_term",
    "SPP": "MAX, AVE, pyramid_height 1-3 (STOCHASTIC refused)",
    "Im2col": "kernel/stride/pad h != w, dilation",
    "LSTM": "x + cont bottoms, unrolled over the fixed T (static input / expose_hidden refused)",
    "RNN": "x + cont bottoms, unrolled over the fixed T (static input / expose_hidden refused)",
}

#: Lasagne class -> the variants its tests cover (shown next to a recorded proof).
LASAGNE_NOTES: dict[str, str] = {
    "FeaturePoolLayer": "T.max / T.mean / T.sum / T.min, any axis",
    "FeatureWTALayer": "axis 1 and 3",
    "ElemwiseMergeLayer": "T.maximum, T.mul, T.minimum, T.sub; cropping vs Theano ops",
    "SliceLayer": "slices with a step, an index",
    "GaussianNoiseLayer": "identity at inference",
    "Conv2DDNNLayer": "flip_filters=False default",
    "Conv2DMMLayer": "flip_filters False (default) / True, pad same / full",
    "Conv2DCCLayer": "flip_filters=False default, stride, untie_biases",
    "MaxPool2DDNNLayer": "stride, pad",
    "Pool2DDNNLayer": "average_exc_pad, rectangular, pad",
    "MaxPool2DCCLayer": "cuda-convnet pooling = Theano pool_2d ignore_border=False",
    "ScaleLayer": "shared_axes auto, rank 2 and 4",
    "BiasLayer": "shared_axes auto, rank 2 and 4",
    "ParametricRectifierLayer": "shared_axes auto / 'all'",
    "RandomizedRectifierLayer": "deterministic: slope (lower + upper) / 2",
    "StandardizationLayer": "axes spatial / features / int; instance_norm, layer_norm",
    "SpatialPyramidPoolingLayer": "kaiming / fast (pool_2d), max / average",
    "SpatialPyramidPoolingDNNLayer": "cuDNN pooling as pool_2d (ceil window, floor stride)",
    "LocallyConnected2DLayer": "channelwise or not, flip_filters, untie_biases",
    "BatchNormLayer": "axes auto on rank 4 and 2, batch_norm(), epsilon",
    "BatchNormDNNLayer": "batch_norm_dnn(), inference formula of BatchNormLayer",
    "Upscale1DLayer": "repeat / dilate",
}

#: The recorded proofs: {framework: {type: [{"reference", "test"}]}}, written by the test suite
#: (tests/proofs.py, ``make coverage``) from the real-framework comparisons that passed.
PROOF_FILE = Path(__file__).resolve().parents[2] / "docs" / "proofs.json"


def load_proofs(path: Path | str | None = None) -> dict:
    """The recorded proofs ({} when the file is missing, e.g. in an installed package)."""
    try:
        with open(path or PROOF_FILE, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def proof_of(proofs: dict, framework: str, type_: str) -> tuple[str, str] | None:
    """(reference, test) of a proved type (references joined with ' + ', the first test and how
    many more), or None."""
    ps = proofs.get(framework, {}).get(type_) or []
    if not ps:
        return None
    refs = sorted({p["reference"] for p in ps})
    tests = sorted({p["test"] for p in ps})
    more = f" (+{len(tests) - 1} more)" if len(tests) > 1 else ""
    return " + ".join(refs), tests[0] + more


NO_PROOF = "no proof against the real framework recorded in docs/proofs.json"


@dataclass
class Entry:
    framework: str          # 'caffe' | 'lasagne'
    type: str               # source layer type / class
    status: str             # exact | input | dropped | refused | converted | unsupported | plugin
    reference: str = ""     # the independent implementation the tests compare with
    test: str = ""          # the test file that does it
    detail: str = ""        # covered variants, or the reason (refused / dropped)


def _plugin_entry(framework: str, type_: str, op: str, path: str) -> Entry:
    return Entry(framework, type_, "plugin", detail=f"from the plugin {path} (op {op}; runs the "
                 f"plugin's code, compared with the plugin's own reference kernel)")


def caffe_entries(proofs: dict | None = None) -> list[Entry]:
    from .importers import caffe as C
    from .plugins import source_types
    proofs = load_proofs() if proofs is None else proofs
    plugged = source_types("caffe")      # types the loaded plugins import ({} without --plugin)
    out = []
    for t in BVLC_CAFFE_TYPES:
        if t in plugged:                 # e.g. 'Python', which a plugin may take over
            out.append(_plugin_entry("caffe", t, *plugged[t]))
        elif t in C.REFUSED_TYPES:
            out.append(Entry("caffe", t, "refused", detail=C.REFUSED_TYPES[t]))
        elif t in C.DATA_TYPES or t in C.SINK_TYPES or C.is_loss(t):
            out.append(Entry("caffe", t, "dropped", detail="training only: dropped from the deploy "
                             "graph with a note naming the layer"))
        elif t in C.SHAPED_DATA_TYPES:
            out.append(Entry("caffe", t, "input", detail="becomes a model Input (its shape is known)"))
        elif t in C.SUPPORTED_TYPES:
            ref = proof_of(proofs, "caffe", t)
            if ref is None:
                out.append(Entry("caffe", t, "converted", detail=NO_PROOF))
            else:
                out.append(Entry("caffe", t, "exact", ref[0], ref[1], CAFFE_NOTES.get(t, "")))
        else:
            out.append(Entry("caffe", t, "unsupported", detail="imported as an unknown layer"))
    for t in sorted(set(C.FORK_TYPES) - set(BVLC_CAFFE_TYPES) - set(plugged)):   # SSD, DeepLab, ...
        fork = f"Caffe fork type ({C.LAYER_HANDLERS[t].fork}), not in BVLC"
        ref = proof_of(proofs, "caffe", t)
        if ref is None:
            out.append(Entry("caffe", t, "converted", detail=fork))
        else:
            out.append(Entry("caffe", t, "exact", ref[0], ref[1], fork))
    for t in sorted(set(plugged) - set(BVLC_CAFFE_TYPES)):        # the user's plugins, last
        out.append(_plugin_entry("caffe", t, *plugged[t]))
    return out


def lasagne_entries(proofs: dict | None = None) -> list[Entry]:
    from .importers.lasagne import KNOWN
    from .importers.lasagne import REFUSED_CLASSES as LASAGNE_REFUSED
    proofs = load_proofs() if proofs is None else proofs
    out = []
    for cls in sorted(KNOWN):
        ref = proof_of(proofs, "lasagne", cls)
        if cls in LASAGNE_REFUSED:
            out.append(Entry("lasagne", cls, "refused", detail=LASAGNE_REFUSED[cls]))
        elif ref is None:
            out.append(Entry("lasagne", cls, "converted", detail=NO_PROOF))
        else:
            out.append(Entry("lasagne", cls, "exact", ref[0], ref[1], LASAGNE_NOTES.get(cls, "")))
    return out


def entries(framework: str | None = None, proofs: dict | None = None) -> list[Entry]:
    proofs = load_proofs() if proofs is None else proofs
    out = []
    if framework in (None, "caffe"):
        out += caffe_entries(proofs)
    if framework in (None, "lasagne"):
        out += lasagne_entries(proofs)
    return out


def counts(items: list[Entry]) -> dict[str, dict[str, int]]:
    """{framework: {status: n}}"""
    out: dict[str, dict[str, int]] = {}
    for e in items:
        d = out.setdefault(e.framework, {})
        d[e.status] = d.get(e.status, 0) + 1
    return out


def as_json(items: list[Entry]) -> dict:
    return {"layers": [asdict(e) for e in items], "counts": counts(items)}


def as_text(items: list[Entry]) -> str:
    w = max((len(e.type) for e in items), default=4)
    lines = []
    for fw in ("caffe", "lasagne"):
        sel = [e for e in items if e.framework == fw]
        if not sel:
            continue
        c = counts(sel)[fw]
        lines.append(f"{fw}: {len(sel)} layer types (" + ", ".join(f"{v} {k}" for k, v in sorted(c.items()))
                     + ")")
        for e in sel:
            if e.status == "exact":
                what = f"tested against {e.reference} ({e.test})" + (f"; {e.detail}" if e.detail else "")
            else:
                what = e.detail
            lines.append(f"  {e.type:<{w}}  {e.status:<11}  {what}")
    return "\n".join(lines) + "\n"


def as_markdown(items: list[Entry]) -> str:
    lines = ["# Layer coverage", "",
             "Generated from Migrator's registries by `python -m migrator.core.coverage` (`make coverage`;",
             "`migrator layers` prints the same). Do not edit by hand: `tests/cli/test_layers_cmd.py` checks",
             "that this file is up to date.", "",
             "Statuses: **exact** — converted and compared with the named real framework by the named",
             "test, which recorded the comparison when it passed (`docs/proofs.json`, written by the",
             "real-framework tests: `tests/proofs.py`); **input** — becomes a model input; **dropped** —",
             "training-only, dropped from the deploy graph with a note; **refused** — named, with the",
             "reason; **converted** — converted, no proof against the real framework recorded yet.", ""]
    for fw, title in (("caffe", "Caffe (BVLC git 2018-08, then fork types)"), ("lasagne", "Lasagne")):
        sel = [e for e in items if e.framework == fw]
        if not sel:
            continue
        c = counts(sel)[fw]
        lines += [f"## {title}", "", f"{len(sel)} layer types: "
                  + ", ".join(f"{v} {k}" for k, v in sorted(c.items())) + ".", "",
                  "| type | status | reference | test | notes |", "|---|---|---|---|---|"]
        for e in sel:
            lines.append(f"| {e.type} | {e.status} | {e.reference} | {e.test} | {e.detail} |")
        lines.append("")
    return "\n".join(lines)


def not_covered(plan) -> list[tuple[str, str, str]]:
    """(layer, type, why) of a plan's layers that Migrator does not convert (unknown types,
    refused types and variants, cases a rule cannot convert exactly) -- what ``inspect``
    lists up front; for the GUI to show the same line."""
    return [(m.source, m.source_type, m.error or "") for m in plan.unsupported]


def main() -> None:   # pragma: no cover - thin wrapper, the output is tested
    import sys
    path = sys.argv[1] if len(sys.argv) > 1 else "docs/coverage.md"
    with open(path, "w", encoding="utf-8") as f:
        f.write(as_markdown(entries()))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
