"""Shape inference over the canonical IR (source semantics, NCHW).

:func:`infer_shapes` walks a :class:`~migrator.core.ir.Graph` in order and fills every
node's ``out_shapes`` (one tuple per output, batch dimension included).  Any dimension
may be ``None`` (unknown, typically the batch); arithmetic on an unknown dimension gives
an unknown dimension.  A node whose input shape is entirely unknown (after a ``Custom``
layer) gets ``None`` shapes instead of an error.

Inconsistencies that make the network impossible (Eltwise inputs that differ, a Concat
mismatch, a Dense weight that does not match the flattened input, a Conv weight whose
input channels do not match, an impossible Reshape, ...) raise
:class:`~migrator.core.errors.MigratorError` naming the file and the layer.

The output-size formulas (see ``docs/semantics.md``):

* convolution: ``floor((L + 2p - (d(k-1)+1)) / s) + 1``
* pooling ``floor``: ``floor((L + 2p - k) / s) + 1``
* pooling ``caffe_ceil``: ``ceil((L + 2p - k) / s) + 1``, then if ``p > 0`` and
  ``(out-1)*s >= L + p``: ``out -= 1`` (the last window must start inside the image)
* pooling ``lasagne_ceil`` (Theano ``ignore_border=False``, ``r = L + 2p``):
  ``ceil(r/s)`` if ``s >= k`` else ``max(0, ceil((r-k)/s)) + 1``
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

from .errors import MigratorError
from .ir import Graph, Node

Shape = tuple  # tuple of int | None

SHAPE_FUNCS: dict[str, Callable[..., list]] = {}


def shape_rule(*ops: str):
    def deco(fn):
        for op in ops:
            SHAPE_FUNCS[op] = fn
        return fn
    return deco


class _Ctx:
    """What a shape function needs to raise a good error."""

    def __init__(self, node: Node, file: str | None):
        self.node = node
        self.file = file or node.provenance.file

    def error(self, msg: str) -> MigratorError:
        layer = self.node.provenance.layer or self.node.name
        return MigratorError(f"{msg} ({self.node.source_type})", file=self.file, layer=layer)


# ------------------------------------------------------------------------------------
# small helpers
# ------------------------------------------------------------------------------------
def _prod(dims: Sequence[int | None]) -> int | None:
    out = 1
    for d in dims:
        if d is None:
            return None
        out *= int(d)
    return out


def _pair(v: Any, n: int = 2) -> tuple:
    if v is None:
        return (None,) * n
    if isinstance(v, (list, tuple)):
        if len(v) == 1:
            return tuple(v) * n
        return tuple(v)
    return (v,) * n


def _axis(axis: int, ndim: int, ctx: _Ctx, what: str = "axis") -> int:
    a = int(axis)
    if a < 0:
        a += ndim
    if not 0 <= a < ndim:
        raise ctx.error(f"{what} {axis} is out of range for a {ndim}-d input")
    return a


def conv_out_len(L: int | None, k: int, s: int, p: int, d: int = 1) -> int | None:
    if L is None:
        return None
    ek = d * (k - 1) + 1
    return (L + 2 * p - ek) // s + 1


def pool_out_len(L: int | None, k: int, s: int, p: int, rounding: str = "floor") -> int | None:
    """Output length of one pooled dimension under the given rounding rule."""
    if L is None:
        return None
    if rounding == "floor":
        return (L + 2 * p - k) // s + 1
    if rounding == "caffe_ceil":
        out = -((-(L + 2 * p - k)) // s) + 1   # ceil division
        if p > 0 and (out - 1) * s >= L + p:
            out -= 1
        return out
    if rounding == "lasagne_ceil":
        r = L + 2 * p
        if s >= k:
            return -((-r) // s)
        return max(0, -((-(r - k)) // s)) + 1
    raise ValueError(f"unknown pooling rounding {rounding!r}")


def reshape_caffe(in_shape: Shape, shape: Sequence[int], axis: int = 0, num_axes: int = -1,
                  error: Callable[[str], Exception] | None = None) -> Shape:
    """Caffe Reshape semantics: ``shape`` replaces the input axes ``[axis, axis+num_axes)``
    (``num_axes=-1``: to the end); ``0`` copies the input dim at the same position, ``-1``
    is inferred (at most one)."""
    def fail(msg):
        raise (error(msg) if error else ValueError(msg))

    ndim = len(in_shape)
    start = axis + ndim + 1 if axis < 0 else axis
    if not 0 <= start <= ndim:
        fail(f"reshape axis {axis} out of range for input shape {_fmt(in_shape)}")
    end = ndim if num_axes == -1 else start + num_axes
    if num_axes < -1 or end > ndim:
        fail(f"reshape num_axes {num_axes} out of range for input shape {_fmt(in_shape)}")
    new: list[int | None] = []
    infer_at = None
    for i, d in enumerate(shape):
        d = int(d)
        if d == 0:
            if start + i >= ndim:
                fail(f"reshape dim {i} is 0 (copy) but the input has no axis {start + i}")
            new.append(in_shape[start + i])
        elif d == -1:
            if infer_at is not None:
                fail("reshape has more than one -1 dimension")
            infer_at = len(new)
            new.append(-1)
        elif d < 0:
            fail(f"reshape dim {d} is invalid")
        else:
            new.append(d)
    # dims copied with 0 cancel out on both sides (so an unknown batch copied by 0 is fine)
    copied = {start + i for i, d in enumerate(shape) if int(d) == 0}
    replaced = _prod([in_shape[j] for j in range(start, end) if j not in copied])
    if infer_at is not None:
        known = _prod([d for j, d in enumerate(new) if j != infer_at and int(shape[j]) != 0])
        if replaced is None or known is None:
            new[infer_at] = None
        else:
            if known == 0 or replaced % known:
                fail(f"cannot reshape {_fmt(in_shape)} into {list(shape)}")
            new[infer_at] = replaced // known
    else:
        total = _prod([d for j, d in enumerate(new) if int(shape[j]) != 0])
        if replaced is not None and total is not None and total != replaced:
            fail(f"cannot reshape {_fmt(in_shape)} into {list(shape)} "
                 f"({replaced} elements vs {total})")
    return tuple(in_shape[:start]) + tuple(new) + tuple(in_shape[end:])


def _fmt(shape) -> str:
    if shape is None:
        return "?"
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def _same(a, b) -> bool:
    """Dims equal, where None matches anything."""
    return a is None or b is None or a == b


def _check_rank(ctx: _Ctx, shape: Shape, rank: int | None = None, min_rank: int | None = None):
    if rank is not None and len(shape) != rank:
        raise ctx.error(f"expects a {rank}-d input, got shape {_fmt(shape)}")
    if min_rank is not None and len(shape) < min_rank:
        raise ctx.error(f"expects an input of at least {min_rank} dims, got shape {_fmt(shape)}")


# ------------------------------------------------------------------------------------
# per-op rules: fn(node, in_shapes, ctx) -> list of output shapes
# ------------------------------------------------------------------------------------
@shape_rule("Input")
def _input(node, ins, ctx):
    shape = node.attrs.get("shape")
    if shape is None:
        return [None]
    return [tuple(None if d is None or (isinstance(d, int) and d < 0) else int(d) for d in shape)]


@shape_rule("Identity", "Dropout", "Activation", "PReLU", "Power", "LRN", "Softmax")
def _same_shape(node, ins, ctx):
    x = ins[0]
    if node.op == "Softmax":
        _axis(node.attrs.get("axis", 1), len(x), ctx)
    if node.op == "LRN":
        _check_rank(ctx, x, min_rank=3)
    if node.op == "PReLU":
        slope = node.p("slope")
        if (slope is not None and not node.attrs.get("channel_shared", False) and len(x) >= 2
                and slope.size != 1 and not _same(x[1], slope.size)):
            raise ctx.error(f"PReLU has {slope.size} slopes but the input has {x[1]} channels")
    return [tuple(x)]


@shape_rule("BatchNorm")
def _batchnorm(node, ins, ctx):
    x = ins[0]
    form = node.attrs.get("form", "caffe")
    if form in ("caffe", "lasagne"):
        axis = _axis(node.attrs.get("axis", 1), len(x), ctx) if len(x) > 1 else 0
        if form == "lasagne":
            axes = node.attrs.get("axes", "auto")
            if axes == "auto" or axes is None:
                axes = (0,) + tuple(range(2, len(x)))
            kept = [x[i] for i in range(len(x)) if i not in {a % len(x) for a in axes}]
        else:
            kept = [x[axis]]
        want = _prod(kept)
        for pname in ("mean", "variance", "inv_std", "beta", "gamma"):
            v = node.p(pname)
            if v is not None and want is not None and v.size != want:
                raise ctx.error(f"BatchNorm param '{pname}' has {v.size} values but the input "
                                f"{_fmt(x)} needs {want}")
    return [tuple(x)]


@shape_rule("Scale", "Bias")
def _scale(node, ins, ctx):
    x = ins[0]
    axis = _axis(node.attrs.get("axis", 1), len(x), ctx) if len(x) else 0
    if node.op == "Scale" and node.attrs.get("two_input") and len(ins) > 1 and ins[1] is not None:
        s = tuple(ins[1])
    else:
        v = node.p("scale" if node.op == "Scale" else "bias")
        if v is None:
            return [tuple(x)]
        num_axes = node.attrs.get("num_axes", 1)
        if num_axes == -1:
            num_axes = len(x) - axis
        s = tuple(v.shape)
        if v.size == 1 and num_axes == 0:
            return [tuple(x)]
        if len(s) != num_axes and _prod(s) == _prod(x[axis:axis + num_axes]):
            s = tuple(x[axis:axis + num_axes])
    target = x[axis:axis + len(s)]
    if len(target) != len(s) or not all(_same(a, b) for a, b in zip(target, s)):
        raise ctx.error(f"{node.op} of shape {_fmt(s)} does not match input {_fmt(x)} at axis {axis}")
    return [tuple(x)]


@shape_rule("Conv")
def _conv(node, ins, ctx):
    x = ins[0]
    _check_rank(ctx, x, min_rank=3)
    nsp = len(x) - 2
    a = node.attrs
    w = node.p("weight")
    kernel = _pair(a.get("kernel"), nsp) if a.get("kernel") is not None else (
        tuple(w.shape[2:]) if w is not None else None)
    if kernel is None:
        raise ctx.error("convolution has neither a kernel size nor a weight")
    stride = _pair(a.get("stride", 1), nsp)
    pad = _pair(a.get("pad", 0), nsp)
    dil = _pair(a.get("dilation", 1), nsp)
    group = int(a.get("group", 1) or 1)
    if w is not None:
        if w.ndim != nsp + 2:
            raise ctx.error(f"weight shape {tuple(w.shape)} does not fit a {nsp}-d convolution")
        if tuple(w.shape[2:]) != tuple(kernel):
            raise ctx.error(f"weight shape {tuple(w.shape)} does not match kernel size {tuple(kernel)}")
        if x[1] is not None and w.shape[1] * group != x[1]:
            raise ctx.error(f"weight shape {tuple(w.shape)} expects {w.shape[1] * group} input "
                            f"channels (group {group}) but the input has {x[1]} ({_fmt(x)})")
        if w.shape[0] % group:
            raise ctx.error(f"{w.shape[0]} output channels are not divisible by group {group}")
        out_c = int(w.shape[0])
    else:
        out_c = a.get("num_output")
    b = node.p("bias")
    if b is not None and out_c is not None and b.shape[0] != out_c:
        raise ctx.error(f"bias shape {tuple(b.shape)} does not match {out_c} output channels")
    sp = []
    for L, k, s, p, d in zip(x[2:], kernel, stride, pad, dil):
        o = conv_out_len(L, int(k), int(s), int(p), int(d))
        if o is not None and o <= 0:
            raise ctx.error(f"input {_fmt(x)} is too small for kernel {tuple(kernel)} "
                            f"(pad {tuple(pad)}, dilation {tuple(dil)})")
        sp.append(o)
    return [(x[0], out_c, *sp)]


@shape_rule("Dense")
def _dense(node, ins, ctx):
    x = ins[0]
    axis = _axis(node.attrs.get("axis", 1), len(x), ctx)
    flat = _prod(x[axis:])
    w = node.p("weight")
    n_out = node.attrs.get("num_output")
    if w is not None:
        layout = (node.params["weight"].layout or "OI").upper()
        if w.ndim != 2:
            raise ctx.error(f"weight must be 2-d, got shape {tuple(w.shape)}")
        k_in, n = (w.shape[1], w.shape[0]) if layout == "OI" else (w.shape[0], w.shape[1])
        if flat is not None and k_in != flat:
            raise ctx.error(f"weight shape {tuple(w.shape)} ({layout}) expects {k_in} inputs but "
                            f"the input {_fmt(x)} flattened from axis {axis} has {flat}")
        if n_out is not None and int(n_out) != n:
            raise ctx.error(f"num_output {n_out} does not match weight shape {tuple(w.shape)} ({layout})")
        n_out = n
    return [tuple(x[:axis]) + (None if n_out is None else int(n_out),)]


@shape_rule("Pool")
def _pool(node, ins, ctx):
    x = ins[0]
    _check_rank(ctx, x, min_rank=3)
    nsp = len(x) - 2
    a = node.attrs
    kernel = _pair(a["kernel"], nsp)
    stride = _pair(a.get("stride") or kernel, nsp)
    pad = _pair(a.get("pad", 0), nsp)
    rounding = a.get("rounding", "floor")
    if rounding not in ("floor", "caffe_ceil", "lasagne_ceil"):
        raise ctx.error(f"unknown pooling rounding {rounding!r}")
    sp = []
    for L, k, s, p in zip(x[2:], kernel, stride, pad):
        if int(p) >= int(k):
            raise ctx.error(f"pooling pad {tuple(pad)} must be smaller than the kernel {tuple(kernel)}")
        o = pool_out_len(L, int(k), int(s), int(p), rounding)
        if o is not None and o <= 0:
            raise ctx.error(f"input {_fmt(x)} is too small for pooling kernel {tuple(kernel)}")
        sp.append(o)
    return [(x[0], x[1], *sp)]


@shape_rule("GlobalPool")
def _gpool(node, ins, ctx):
    x = ins[0]
    _check_rank(ctx, x, min_rank=2)
    if node.attrs.get("keepdims", False):
        return [(x[0], x[1]) + (1,) * (len(x) - 2)]
    return [(x[0], x[1])]


@shape_rule("Eltwise")
def _eltwise(node, ins, ctx):
    first = ins[0]
    coeffs = node.attrs.get("coeffs")
    if coeffs is not None and len(coeffs) not in (1, len(ins)):
        raise ctx.error(f"{len(coeffs)} coefficients for {len(ins)} inputs")
    out = list(first)
    for s in ins[1:]:
        if len(s) != len(first) or not all(_same(a, b) for a, b in zip(s, first)):
            raise ctx.error("inputs have different shapes: " + ", ".join(_fmt(t) for t in ins))
        out = [a if a is not None else b for a, b in zip(out, s)]
    return [tuple(out)]


@shape_rule("Concat")
def _concat(node, ins, ctx):
    first = ins[0]
    axis = _axis(node.attrs.get("axis", 1), len(first), ctx)
    total: int | None = 0
    out = list(first)
    for s in ins:
        if len(s) != len(first) or not all(_same(a, b) for i, (a, b) in enumerate(zip(s, first))
                                           if i != axis):
            raise ctx.error(f"inputs do not match outside axis {axis}: "
                            + ", ".join(_fmt(t) for t in ins))
        total = None if (total is None or s[axis] is None) else total + s[axis]
        out = [a if a is not None else b for a, b in zip(out, s)]
    out[axis] = total
    return [tuple(out)]


@shape_rule("Flatten")
def _flatten(node, ins, ctx):
    x = ins[0]
    axis = _axis(node.attrs.get("axis", 1), len(x), ctx)
    end = _axis(node.attrs.get("end_axis", -1), len(x), ctx, "end_axis")
    if end < axis:
        raise ctx.error(f"end_axis {end} is before axis {axis}")
    return [tuple(x[:axis]) + (_prod(x[axis:end + 1]),) + tuple(x[end + 1:])]


@shape_rule("Reshape")
def _reshape(node, ins, ctx):
    a = node.attrs
    return [reshape_caffe(tuple(ins[0]), list(a["shape"]), int(a.get("axis", 0)),
                          int(a.get("num_axes", -1)), error=ctx.error)]


@shape_rule("Split")
def _split(node, ins, ctx):
    return [tuple(ins[0])] * node.num_outputs


@shape_rule("Pad")
def _pad(node, ins, ctx):
    x = list(ins[0])
    bnd = int(node.attrs.get("batch_ndim", 2))
    pads = node.attrs.get("pad", [])
    if bnd + len(pads) > len(x):
        raise ctx.error(f"{len(pads)} pad widths do not fit input {_fmt(ins[0])} (batch_ndim {bnd})")
    for i, pw in enumerate(pads):
        before, after = _pair(pw, 2)
        ax = bnd + i
        x[ax] = None if x[ax] is None else x[ax] + int(before) + int(after)
    return [tuple(x)]


@shape_rule("Transpose")
def _transpose(node, ins, ctx):
    x = ins[0]
    pattern = list(node.attrs["pattern"])
    used = [p for p in pattern if p != "x"]
    if len(set(used)) != len(used) or any(not 0 <= int(p) < len(x) for p in used):
        raise ctx.error(f"dimshuffle pattern {pattern} is invalid for input {_fmt(x)}")
    for i, d in enumerate(x):
        if i not in used and d not in (1, None):
            raise ctx.error(f"dimshuffle pattern {pattern} drops axis {i} of size {d} "
                            "(only broadcastable axes of size 1 may be dropped)")
    return [tuple(1 if p == "x" else x[int(p)] for p in pattern)]


@shape_rule("Slice")
def _slice(node, ins, ctx):
    x = ins[0]
    a = node.attrs
    axis = _axis(a.get("axis", 1), len(x), ctx)
    L = x[axis]
    points = a.get("slice_points")
    if points is not None or node.num_outputs > 1:
        # Caffe Slice: several outputs split at slice_points (or equal parts)
        if L is None:
            return [tuple(x[:axis]) + (None,) + tuple(x[axis + 1:])] * node.num_outputs
        bounds = _slice_bounds(L, points, node.num_outputs, ctx)
        return [tuple(x[:axis]) + (e - b,) + tuple(x[axis + 1:]) for b, e in bounds]
    if "index" in a and a["index"] is not None:
        idx = int(a["index"])
        if L is not None and not -L <= idx < L:
            raise ctx.error(f"index {idx} out of range for axis {axis} of size {L}")
        return [tuple(x[:axis]) + tuple(x[axis + 1:])]
    n = None if L is None else len(range(L)[slice(a.get("start"), a.get("stop"), a.get("step"))])
    return [tuple(x[:axis]) + (n,) + tuple(x[axis + 1:])]


def _slice_bounds(L: int, points, n_out: int, ctx: _Ctx) -> list[tuple[int, int]]:
    if points:
        pts = [int(p) for p in points]
        if len(pts) != n_out - 1:
            raise ctx.error(f"{len(pts)} slice points for {n_out} outputs")
        edges = [0] + pts + [L]
        if any(b > e for b, e in itertools.pairwise(edges)):
            raise ctx.error(f"slice points {pts} are not increasing within 0..{L}")
        return list(itertools.pairwise(edges))
    if L % n_out:
        raise ctx.error(f"axis of size {L} cannot be split into {n_out} equal parts")
    step = L // n_out
    return [(i * step, (i + 1) * step) for i in range(n_out)]


def deconv_out_len(L: int | None, k: int, s: int, p: int, d: int = 1) -> int | None:
    """Caffe Deconvolution: ``s*(L-1) + d*(k-1) + 1 - 2p``."""
    if L is None:
        return None
    return s * (L - 1) + d * (k - 1) + 1 - 2 * p


@shape_rule("Deconv")
def _deconv(node, ins, ctx):
    x = ins[0]
    _check_rank(ctx, x, rank=4)
    a = node.attrs
    w = node.p("weight")
    kernel = _pair(a["kernel"])
    stride = _pair(a.get("stride", 1))
    pad = _pair(a.get("pad", 0))
    dil = _pair(a.get("dilation", 1))
    group = int(a.get("group", 1) or 1)
    out_c = a.get("num_output")
    if w is not None:
        if w.ndim != 4 or tuple(w.shape[2:]) != tuple(kernel):
            raise ctx.error(f"weight shape {tuple(w.shape)} does not match kernel size {tuple(kernel)} "
                            "(expected (in, out/group, kh, kw))")
        if x[1] is not None and w.shape[0] != x[1]:
            raise ctx.error(f"weight shape {tuple(w.shape)} expects {w.shape[0]} input channels "
                            f"but the input has {x[1]} ({_fmt(x)})")
        if w.shape[0] % group:
            raise ctx.error(f"{w.shape[0]} input channels are not divisible by group {group}")
        if out_c is not None and w.shape[1] * group != int(out_c):
            raise ctx.error(f"weight shape {tuple(w.shape)} gives {w.shape[1] * group} outputs "
                            f"(group {group}) but num_output is {out_c}")
        out_c = int(w.shape[1]) * group
    b = node.p("bias")
    if b is not None and out_c is not None and b.shape[0] != out_c:
        raise ctx.error(f"bias shape {tuple(b.shape)} does not match {out_c} output channels")
    sp = []
    for L, k, s_, p, d in zip(x[2:], kernel, stride, pad, dil):
        o = deconv_out_len(L, int(k), int(s_), int(p), int(d))
        if o is not None and o <= 0:
            raise ctx.error(f"deconvolution output would be empty for input {_fmt(x)} (kernel "
                            f"{tuple(kernel)}, stride {tuple(stride)}, pad {tuple(pad)})")
        sp.append(o)
    return [(x[0], out_c, *sp)]


@shape_rule("Upscale")
def _upscale(node, ins, ctx):
    x = ins[0]
    _check_rank(ctx, x, rank=4)
    sh, sw = _pair(node.attrs.get("scale", 2))
    if sh < 1 or sw < 1:
        raise ctx.error(f"scale factor {(sh, sw)} must be >= 1")
    if node.attrs.get("mode", "repeat") not in ("repeat", "dilate"):
        raise ctx.error(f"unknown upscale mode {node.attrs.get('mode')!r}")
    return [(x[0], x[1], None if x[2] is None else x[2] * sh, None if x[3] is None else x[3] * sw)]


def crop_bounds(x: Shape, ref: Shape, axis: int, offsets, error: Callable[[str], Exception]
                ) -> list[tuple[int, int | None]]:
    """Caffe Crop: ``(start, stop)`` for every axis of ``x`` (axes before ``axis`` whole:
    ``(0, None)``; from ``axis`` on ``(off, off + ref[i])``).  ``offsets``: empty = 0, one
    value for all cropped axes, or one per cropped axis."""
    ndim = len(x)
    if len(ref) != ndim:
        raise error(f"input {_fmt(x)} and reference {_fmt(ref)} have different ranks")
    a = int(axis) + ndim if int(axis) < 0 else int(axis)
    if not 0 <= a < ndim:
        raise error(f"crop axis {axis} is out of range for a {ndim}-d input")
    offs = [int(o) for o in (offsets or [])]
    n_crop = ndim - a
    if len(offs) > 1 and len(offs) != n_crop:
        raise error(f"{len(offs)} crop offsets for {n_crop} cropped axes (give one, or one per axis)")
    out: list[tuple[int, int | None]] = [(0, None)] * a
    for k in range(n_crop):
        i = a + k
        off = offs[0] if len(offs) == 1 else (offs[k] if offs else 0)
        if ref[i] is None:
            out.append((off, None))
            continue
        if x[i] is not None and off + ref[i] > x[i]:
            raise error(f"crop of axis {i} at offset {off} to size {ref[i]} does not fit the input "
                        f"{_fmt(x)}")
        out.append((off, off + int(ref[i])))
    return out


@shape_rule("Crop")
def _crop(node, ins, ctx):
    if len(ins) != 2:
        raise ctx.error(f"Crop needs 2 inputs (data, reference), got {len(ins)}")
    x, ref = ins
    axis = int(node.attrs.get("axis", 2))
    crop_bounds(x, ref, axis, node.attrs.get("offsets"), ctx.error)   # validates
    a = axis + len(x) if axis < 0 else axis
    return [tuple(x[:a]) + tuple(ref[a:])]


@shape_rule("Custom")
def _custom(node, ins, ctx):
    return [None] * node.num_outputs


# ------------------------------------------------------------------------------------
def infer_shapes(graph: Graph, file: str | None = None) -> None:
    """Fill ``node.out_shapes`` for every node of ``graph`` (in order)."""
    known: dict[str, Shape | None] = {}
    for node in graph.nodes:
        ctx = _Ctx(node, file)
        ins = []
        for t in node.inputs:
            if t not in known:
                raise ctx.error(f"input '{t}' is not produced by any earlier layer")
            ins.append(known[t])
        fn = SHAPE_FUNCS.get(node.op)
        if fn is None:
            raise ctx.error(f"unknown canonical op {node.op!r}")
        if node.op != "Input" and (not ins or any(s is None for s in ins)):
            if node.op != "Input" and not node.inputs:
                raise ctx.error("layer has no input")
            outs: list = [None] * node.num_outputs
        else:
            try:
                outs = fn(node, ins, ctx)
            except MigratorError:
                raise
            except (KeyError, TypeError, ValueError, IndexError) as e:
                raise ctx.error(f"invalid attributes for {node.op}: {e}") from None
        if len(outs) != node.num_outputs:
            outs = (list(outs) + [outs[-1]] * node.num_outputs)[:node.num_outputs]
        node.out_shapes = list(outs)
        for t, s in zip(node.outputs, outs):
            known[t] = s


from . import (
    shapes_forks,  # noqa: F401  (registers the Caffe fork ops)
    shapes_recurrent,  # noqa: F401  (registers the recurrent ops)
)


# ------------------------------------------------------------------------------------
# BVLC Caffe catalogue (issue 14)
# ------------------------------------------------------------------------------------
@shape_rule("Exp", "Log", "Threshold", "Clip", "Swish")
def _catalogue_same(node, ins, ctx):
    return [tuple(ins[0])]


@shape_rule("Reduction")
def _catalogue_reduction(node, ins, ctx):
    x = ins[0]
    axis = _axis(node.attrs.get("axis", 0), len(x), ctx)
    return [tuple(x[:axis])]


@shape_rule("MVN")
def _catalogue_mvn(node, ins, ctx):
    x = ins[0]
    _check_rank(ctx, x, min_rank=2)
    if len(x) > 4:
        raise ctx.error(f"MVN uses Caffe's 4-d (num, channels, height, width) view; got {_fmt(x)}")
    # Caffe reshapes the top to (num, channels, height, width): missing axes become 1
    return [tuple(x) + (1,) * (4 - len(x))]


@shape_rule("Tile")
def _catalogue_tile(node, ins, ctx):
    x = ins[0]
    axis = _axis(node.attrs.get("axis", 1), len(x), ctx)
    tiles = int(node.attrs["tiles"])
    if tiles < 1:
        raise ctx.error(f"tiles must be at least 1, got {tiles}")
    out = list(x)
    out[axis] = None if x[axis] is None else x[axis] * tiles
    return [tuple(out)]


@shape_rule("ArgMax")
def _catalogue_argmax(node, ins, ctx):
    x = ins[0]
    k = int(node.attrs.get("top_k", 1))
    axis = node.attrs.get("axis")
    if axis is not None:
        a = _axis(axis, len(x), ctx)
        if x[a] is not None and k > x[a]:
            raise ctx.error(f"top_k {k} is larger than the axis size {x[a]}")
        out = list(x)
        out[a] = k
        return [tuple(out)]
    flat = _prod(x[1:])
    if flat is not None and k > flat:
        raise ctx.error(f"top_k {k} is larger than the {flat} values per sample")
    return [(x[0], 2 if node.attrs.get("out_max_val") else 1, k) + (1,) * max(0, len(x) - 3)]


@shape_rule("Embed")
def _catalogue_embed(node, ins, ctx):
    w = node.p("weight")
    n = int(node.attrs["num_output"])
    if w is not None and tuple(w.shape) != (int(node.attrs["input_dim"]), n):
        raise ctx.error(f"Embed weight shape {tuple(w.shape)} does not fit input_dim "
                        f"{node.attrs['input_dim']} and num_output {n}")
    return [tuple(ins[0]) + (n,)]


def spp_levels(H: int, W: int, height: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Caffe SPP's (kernel, pad) per pyramid level (stride = kernel), spp_layer.cpp."""
    out = []
    for lvl in range(height):
        b = 2 ** lvl
        kh, kw = -(-H // b), -(-W // b)
        out.append(((kh, kw), ((kh * b - H + 1) // 2, (kw * b - W + 1) // 2)))
    return out


@shape_rule("SPP")
def _catalogue_spp(node, ins, ctx):
    x = ins[0]
    _check_rank(ctx, x, rank=4)
    if x[2] is None or x[3] is None:
        return [(x[0], x[1], 1, 1) if node.attrs["pyramid_height"] == 1 else (x[0], None)]
    total = 0
    for (kh, kw), (ph, pw) in spp_levels(x[2], x[3], int(node.attrs["pyramid_height"])):
        if ph >= kh or pw >= kw:
            raise ctx.error(f"SPP level with kernel {(kh, kw)} needs pad {(ph, pw)} >= kernel: the input "
                            f"{_fmt(x)} is too small for pyramid_height {node.attrs['pyramid_height']}")
        oh = pool_out_len(x[2], kh, kh, ph, "caffe_ceil")
        ow = pool_out_len(x[3], kw, kw, pw, "caffe_ceil")
        total += oh * ow
    if node.attrs["pyramid_height"] == 1:
        return [(x[0], x[1], 1, 1)]
    return [(x[0], None if x[1] is None else x[1] * total)]


@shape_rule("CaffeRecurrent")
def _catalogue_recurrent(node, ins, ctx):
    x, cont = ins[0], ins[1]
    _check_rank(ctx, x, min_rank=3)
    if len(cont) != 2 or not all(_same(a, b) for a, b in zip(cont, x[:2])):
        raise ctx.error(f"the 'cont' bottom must have shape (T, N) = {_fmt(x[:2])}, got {_fmt(cont)}")
    w = node.p("W_xc") if node.p("W_xc") is not None else node.p("W_xh")
    feat = _prod(x[2:])
    if w is not None and feat is not None and w.shape[1] != feat:
        raise ctx.error(f"input weight expects {w.shape[1]} features per step, the input {_fmt(x)} has {feat}")
    return [(x[0], x[1], int(node.attrs["num_output"]))]


@shape_rule("Im2col")
def _catalogue_im2col(node, ins, ctx):
    x = ins[0]
    _check_rank(ctx, x, rank=4)
    a = node.attrs
    (kh, kw), (ph, pw), (sh, sw), (dh, dw) = a["kernel"], a["pad"], a["stride"], a["dilation"]
    sp = []
    for L, k, p, s, d in ((x[2], kh, ph, sh, dh), (x[3], kw, pw, sw, dw)):
        o = None if L is None else (L + 2 * p - (d * (k - 1) + 1)) // s + 1
        if o is not None and o <= 0:
            raise ctx.error(f"input {_fmt(x)} is too small for the Im2col kernel {(kh, kw)}")
        sp.append(o)
    return [(x[0], None if x[1] is None else x[1] * kh * kw, *sp)]


from . import shapes_lasagne_catalogue  # noqa: F401  (registers the Lasagne catalogue ops)
