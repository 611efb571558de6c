"""What Migrator converts: every source layer type of both frameworks with its status.

The status of each type is *derived from the registries* (the Caffe importer's
``LAYER_HANDLERS`` with the ``SUPPORTED_TYPES`` / ``FORK_TYPES`` derived from it, its
``REFUSED_TYPES`` / data and sink tables, and the Lasagne importer's ``CONVERTERS``, from which
its ``KNOWN`` / ``REFUSED_CLASSES`` are derived), so it cannot drift from what the code does; the
only hand-written data is *which reference proves each converted type* (the test file and
the independent implementation it compares with).  ``tests/cli/test_layers_cmd.py`` checks
that this table and the registries agree both ways, that each named test file exists and
uses the type, and that ``docs/coverage.md`` (``python -m migrator.core.coverage``, or
``make coverage``) is up to date.

Statuses: ``exact`` (converted; tested against ``reference``), ``input`` (becomes a model
input), ``dropped`` (training-only; dropped from the deploy graph with a note),
``refused`` (named, with the reason), ``converted`` (converted, no proof against the real
framework recorded here yet), ``unsupported`` (imported as an unknown layer).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

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

_RC = "real Caffe"
_RC_CV = "real Caffe + OpenCV DNN"
_CAT = "tests/core/test_caffe_catalogue.py"
_BRIDGE = "tests/legacy/test_caffe_bridge.py"
_EXTRA = "tests/core/test_caffe_extra_layers.py"

#: Caffe type -> (reference, test file that compares with it, what is covered).
CAFFE_TESTED: dict[str, tuple[str, str, str]] = {
    "Input": (_RC, _CAT, "Input layer, input/input_dim, input_shape"),
    "Convolution": (_RC_CV, _BRIDGE, "kernel/stride/pad h != w, dilation, group"),
    "Deconvolution": (_RC_CV, _EXTRA, "stride, pad, dilation, group, rectangular kernels"),
    "InnerProduct": (_RC, _CAT, "axis, transpose"),
    "BatchNorm": (_RC_CV, _BRIDGE, "use_global_stats, eps, fused with Scale"),
    "Scale": (_RC, _CAT, "one bottom (axis, num_axes, bias) or two bottoms at axis 0"),
    "Bias": (_RC, _CAT, "one bottom (axis, num_axes) or two bottoms at axis 0"),
    "ReLU": (_RC_CV, _BRIDGE, "negative_slope"),
    "PReLU": (_RC, _CAT, "per channel, channel_shared"),
    "ELU": (_RC, _CAT, "alpha"),
    "Sigmoid": (_RC_CV, _EXTRA, ""),
    "TanH": (_RC_CV, _EXTRA, ""),
    "AbsVal": (_RC, _CAT, ""),
    "BNLL": (_RC, _CAT, ""),
    "Exp": (_RC, _CAT, "base, scale, shift"),
    "Log": (_RC, _CAT, "base, scale, shift (keras.ops expression)"),
    "Power": (_RC, _CAT, "power, scale, shift"),
    "Threshold": (_RC, _CAT, "threshold (strict >)"),
    "Clip": (_RC, _CAT, "min, max"),
    "Swish": (_RC, _CAT, "beta"),
    "Pooling": (_RC, _CAT, "MAX, AVE, global, round_mode, pad (STOCHASTIC refused)"),
    "LRN": (_RC_CV, _BRIDGE, "ACROSS_CHANNELS, WITHIN_CHANNEL"),
    "Eltwise": (_RC_CV, _BRIDGE, "SUM (coeff), PROD, MAX"),
    "Concat": (_RC_CV, _BRIDGE, "axis"),
    "Slice": (_RC_CV, _EXTRA, "axis, slice_point, slice_dim"),
    "Split": (_RC_CV, _BRIDGE, ""),
    "Crop": (_RC_CV, _EXTRA, "axis, offsets (none, one, one per axis)"),
    "Flatten": (_RC, _CAT, "axis, end_axis"),
    "Reshape": (_RC, _CAT, "axis, num_axes, 0 / -1"),
    "Softmax": (_RC, _CAT, "any axis"),
    "Dropout": (_RC_CV, _BRIDGE, "identity at inference"),
    "Reduction": (_RC, _CAT, "SUM, ASUM, SUMSQ, MEAN over any axis > 0, coeff"),
    "MVN": (_RC, _CAT, "normalize_variance, across_channels, eps; rank 3 and 4"),
    "Tile": (_RC, _CAT, "axis, tiles"),
    "ArgMax": (_RC, _CAT, "top_k, axis, out_max_val (keras.ops expression)"),
    "Embed": (_RC, _CAT, "bias_term"),
    "SPP": (_RC, _CAT, "MAX, AVE, pyramid_height 1-3 (STOCHASTIC refused)"),
    "Im2col": (_RC, _CAT, "kernel/stride/pad h != w, dilation"),
    "LSTM": (_RC, _CAT, "x + cont bottoms, unrolled over the fixed T (static input / expose_hidden refused)"),
    "RNN": (_RC, _CAT, "x + cont bottoms, unrolled over the fixed T (static input / expose_hidden refused)"),
    # fork types (no BVLC Caffe to compare with)
    "Axpy": ("naive numpy formula (a*x+y, NCHW)", "tests/core/test_axpy.py",
             ("a (N, C, 1, 1) or (N, C); OpenCV DNN does not implement Axpy, so the runtime reference is "
              "the built-in kernel, itself checked against the naive formula")),
}

_RL = "real Theano + Lasagne 0.1"
_TO = "Theano ops (Lasagne master's definition)"
_LCAT = "tests/lasagne/test_lasagne_catalogue.py"

#: Lasagne class -> (reference, test file, what is covered); classes of the registry without
#: an entry are listed as 'converted' (no proof recorded here).
LASAGNE_TESTED: dict[str, tuple[str, str, str]] = {
    "InputLayer": ("real Theano + Lasagne", "tests/lasagne/test_vs_real_lasagne.py", ""),
    "DenseLayer": ("real Theano + Lasagne", "tests/lasagne/test_vs_real_lasagne.py", ""),
    "NINLayer": ("real Theano + Lasagne", "tests/lasagne/test_vs_real_lasagne.py", ""),
    "Conv2DLayer": ("real Theano + Lasagne", "tests/lasagne/test_vs_real_lasagne.py", ""),
    "LocalResponseNormalization2DLayer": ("real Theano + Lasagne", "tests/lasagne/test_vs_real_lasagne.py", ""),
    "NonlinearityLayer": ("real Theano + Lasagne", "tests/lasagne/test_vs_real_lasagne.py", ""),
    "Pool2DLayer": ("real Theano + Lasagne", "tests/lasagne/test_vs_real_lasagne.py", ""),
    "MaxPool2DLayer": ("real Theano + Lasagne", "tests/lasagne/test_vs_real_lasagne.py", ""),
    "GlobalPoolLayer": ("real Theano + Lasagne", "tests/lasagne/test_vs_real_lasagne.py", ""),
    "ElemwiseSumLayer": ("real Theano + Lasagne", "tests/lasagne/test_vs_real_lasagne.py", ""),
    "ConcatLayer": ("real Theano + Lasagne", "tests/lasagne/test_vs_real_lasagne.py", ""),
    "DropoutLayer": ("real Theano + Lasagne", "tests/lasagne/test_vs_real_lasagne.py", ""),
    "PadLayer": ("real Theano + Lasagne", "tests/lasagne/test_vs_real_lasagne.py", ""),
    "FlattenLayer": ("real Theano + Lasagne", "tests/lasagne/test_vs_real_lasagne.py", ""),
    "ReshapeLayer": ("real Theano + Lasagne", "tests/lasagne/test_vs_real_lasagne.py", ""),
    "DimshuffleLayer": ("real Theano + Lasagne", "tests/lasagne/test_vs_real_lasagne.py", ""),
    "TransposedConv2DLayer": ("real Theano", "tests/lasagne/test_extra_layers.py", ""),
    "DilatedConv2DLayer": ("real Theano", "tests/lasagne/test_extra_layers.py", ""),
    "Upscale2DLayer": ("real Theano", "tests/lasagne/test_extra_layers.py", ""),
    # the rest of master's lasagne.layers (tests/lasagne/test_lasagne_catalogue.py)
    "FeaturePoolLayer": (_RL, _LCAT, "T.max / T.mean / T.sum / T.min, any axis"),
    "FeatureWTALayer": (_RL, _LCAT, "axis 1 and 3"),
    "ElemwiseMergeLayer": (_RL, _LCAT, "T.maximum, T.mul, T.minimum, T.sub; cropping vs Theano ops"),
    "SliceLayer": (_RL, _LCAT, "slices with a step, an index"),
    "GaussianNoiseLayer": (_RL, _LCAT, "identity at inference"),
    "Conv2DDNNLayer": (_TO, _LCAT, "flip_filters=False default"),
    "Conv2DMMLayer": (_TO, _LCAT, "flip_filters False (default) / True, pad same / full"),
    "Conv2DCCLayer": (_TO, _LCAT, "flip_filters=False default, stride, untie_biases"),
    "MaxPool2DDNNLayer": (_TO, _LCAT, "stride, pad"),
    "Pool2DDNNLayer": (_TO, _LCAT, "average_exc_pad, rectangular, pad"),
    "MaxPool2DCCLayer": (_TO, _LCAT, "cuda-convnet pooling = Theano pool_2d ignore_border=False"),
    "ScaleLayer": (_TO, _LCAT, "shared_axes auto, rank 2 and 4"),
    "BiasLayer": (_TO, _LCAT, "shared_axes auto, rank 2 and 4"),
    "ParametricRectifierLayer": (_TO, _LCAT, "shared_axes auto / 'all'"),
    "RandomizedRectifierLayer": (_TO, _LCAT, "deterministic: slope (lower + upper) / 2"),
    "StandardizationLayer": (_TO, _LCAT, "axes spatial / features / int; instance_norm, layer_norm"),
    "SpatialPyramidPoolingLayer": (_TO, _LCAT, "kaiming / fast (pool_2d), max / average"),
    "SpatialPyramidPoolingDNNLayer": (_TO, _LCAT, "cuDNN pooling as pool_2d (ceil window, floor stride)"),
    "LocallyConnected2DLayer": (_TO, _LCAT, "channelwise or not, flip_filters, untie_biases"),
    "BatchNormLayer": (_TO, _LCAT, "axes auto on rank 4 and 2, batch_norm(), epsilon"),
    "BatchNormDNNLayer": (_TO, _LCAT, "batch_norm_dnn(), inference formula of BatchNormLayer"),
    "Upscale1DLayer": (_TO, _LCAT, "repeat / dilate"),
}


@dataclass
class Entry:
    framework: str          # 'caffe' | 'lasagne'
    type: str               # source layer type / class
    status: str             # exact | input | dropped | refused | converted | unsupported
    reference: str = ""     # the independent implementation the tests compare with
    test: str = ""          # the test file that does it
    detail: str = ""        # covered variants, or the reason (refused / dropped)


def caffe_entries() -> list[Entry]:
    from .importers import caffe as C
    out = []
    for t in BVLC_CAFFE_TYPES:
        if t in C.REFUSED_TYPES:
            out.append(Entry("caffe", t, "refused", detail=C.REFUSED_TYPES[t]))
        elif t in C.DATA_TYPES or t in C.SINK_TYPES or C.is_loss(t):
            out.append(Entry("caffe", t, "dropped", detail="training only: dropped from the deploy "
                             "graph with a note naming the layer"))
        elif t in C.SHAPED_DATA_TYPES:
            out.append(Entry("caffe", t, "input", detail="becomes a model Input (its shape is known)"))
        elif t in C.SUPPORTED_TYPES:
            ref = CAFFE_TESTED.get(t)
            if ref is None:
                out.append(Entry("caffe", t, "converted"))
            else:
                out.append(Entry("caffe", t, "exact", ref[0], ref[1], ref[2]))
        else:
            out.append(Entry("caffe", t, "unsupported", detail="imported as an unknown layer"))
    for t in sorted(set(C.FORK_TYPES) - set(BVLC_CAFFE_TYPES)):   # SSD, DeepLab, ShuffleNet, ...
        fork = f"Caffe fork type ({C.LAYER_HANDLERS[t].fork}), not in BVLC"
        ref = CAFFE_TESTED.get(t)
        if ref is None:
            out.append(Entry("caffe", t, "converted", detail=fork))
        else:
            out.append(Entry("caffe", t, "exact", ref[0], ref[1], f"{fork}; {ref[2]}" if ref[2] else fork))
    return out


def lasagne_entries() -> list[Entry]:
    from .importers.lasagne import KNOWN
    from .importers.lasagne import REFUSED_CLASSES as LASAGNE_REFUSED
    out = []
    for cls in sorted(KNOWN):
        ref = LASAGNE_TESTED.get(cls)
        if cls in LASAGNE_REFUSED:
            out.append(Entry("lasagne", cls, "refused", detail=LASAGNE_REFUSED[cls]))
        elif ref is None:
            out.append(Entry("lasagne", cls, "converted", detail="no proof against the real framework "
                             "recorded in migrator/core/coverage.py"))
        else:
            out.append(Entry("lasagne", cls, "exact", ref[0], ref[1], ref[2]))
    return out


def entries(framework: str | None = None) -> list[Entry]:
    out = []
    if framework in (None, "caffe"):
        out += caffe_entries()
    if framework in (None, "lasagne"):
        out += lasagne_entries()
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
             "Statuses: **exact** — converted and compared with the named independent reference by the",
             "named test; **input** — becomes a model input; **dropped** — training-only, dropped from the",
             "deploy graph with a note; **refused** — named, with the reason; **converted** — converted, no",
             "proof against the real framework recorded yet.", ""]
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
