"""The Keras layout of each model input and output, in words (``migrator inspect``, the report
and the GUI's model panel show these lines).

Layouts follow meaning, not rank: images are NHWC (source NCHW), 1-D data (N, L, C) (source
(N, C, L)), sequences (N, T, F) in Keras RNNs' order -- the same order as Lasagne's --, and
Caffe's LSTM/RNN blobs (T, N, F) as Caffe has them (the model's leading axis is time).
"""
from __future__ import annotations

#: layout tag -> (axis letters of the Keras tensor, what it is, the permutation source -> Keras)
_KINDS = {
    "NTF": ("NTF", "sequence, same order as {fw}", None),
    "TNF": ("TNF", "Caffe's time-major blob as it is (the model's leading axis is time)", None),
    "NC": ("NC", "features", None),
    "N": ("N", "one value per sample", None),
    "NWC": ("NLC", "1-D data, channels-last (source (N, C, L))", (0, 2, 1)),
    "NHWC": ("NHWC", "image, channels-last (source (N, C, H, W))", (0, 2, 3, 1)),
    "NDHWC": ("NDHWC", "volume, channels-last (source (N, C, D, H, W))", (0, 2, 3, 4, 1)),
}


def _dims(letters: str, shape, open_axes=()) -> str:
    out = []
    for i, (a, d) in enumerate(zip(letters, shape)):
        if i == 0 and a == "N":
            out.append("N")
        else:
            out.append(f"{a}=?" if d is None or i in open_axes else f"{a}={d}")
    return "(" + ", ".join(out) + ")"


def describe(plan, tensor: str, shape, layout: str | None) -> str:
    """``Keras (N, T=?, F=60) — sequence, same order as Lasagne`` for one tensor of source
    shape ``shape`` whose Keras layout tag is ``layout``."""
    fw = {"lasagne": "Lasagne", "caffe": "Caffe"}.get(getattr(plan.graph, "framework", ""), "the source")
    kind = _KINDS.get(layout or "")
    if shape is None or kind is None or len(kind[0]) != len(shape):
        return f"Keras layout {layout or '?'}"
    letters, what, perm = kind
    kshape = tuple(shape[p] for p in perm) if perm else tuple(shape)
    open_axes = (1,) if layout == "NTF" and tensor in getattr(plan, "open_time", ()) else ()
    return f"Keras {_dims(letters, kshape, open_axes)} — {what.format(fw=fw)}"


def io_layout_lines(plan) -> list[str]:
    """One line per model input and output: its Keras shape and layout, in words."""
    g = plan.graph
    lines = []
    for n in g.input_nodes:
        try:
            lay = plan.mapping(n.name).layout
        except KeyError:
            continue
        lines.append(f"input '{n.name}': " + describe(plan, n.outputs[0], n.out_shape, lay))
    for t in g.output_tensors:
        try:
            shape = g.tensor_shape(t)
        except (KeyError, ValueError):
            shape = None
        lines.append(f"output '{t}': " + describe(plan, t, shape, plan.tensor_layouts.get(t)))
    return lines
