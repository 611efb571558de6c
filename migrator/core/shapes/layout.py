"""Shape rules and formulas of the layout family: ``Crop``, ``Flatten``, ``Reshape``, ``Split``,
``Pad``, ``Transpose``, ``Slice``, ``ShuffleChannel``, ``Tile``."""
from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

from .registry import Shape, check_rank, fmt_shape, norm_axis, pair, prod, shape_rule


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
        fail(f"reshape axis {axis} out of range for input shape {fmt_shape(in_shape)}")
    end = ndim if num_axes == -1 else start + num_axes
    if num_axes < -1 or end > ndim:
        fail(f"reshape num_axes {num_axes} out of range for input shape {fmt_shape(in_shape)}")
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
    replaced = prod([in_shape[j] for j in range(start, end) if j not in copied])
    if infer_at is not None:
        known = prod([d for j, d in enumerate(new) if j != infer_at and int(shape[j]) != 0])
        if replaced is None or known is None:
            new[infer_at] = None
        else:
            if known == 0 or replaced % known:
                fail(f"cannot reshape {fmt_shape(in_shape)} into {list(shape)}")
            new[infer_at] = replaced // known
    else:
        total = prod([d for j, d in enumerate(new) if int(shape[j]) != 0])
        if replaced is not None and total is not None and total != replaced:
            fail(f"cannot reshape {fmt_shape(in_shape)} into {list(shape)} "
                 f"({replaced} elements vs {total})")
    return tuple(in_shape[:start]) + tuple(new) + tuple(in_shape[end:])


def crop_bounds(x: Shape, ref: Shape, axis: int, offsets, error: Callable[[str], Exception]
                ) -> list[tuple[int, int | None]]:
    """Caffe Crop: ``(start, stop)`` for every axis of ``x`` (axes before ``axis`` whole:
    ``(0, None)``; from ``axis`` on ``(off, off + ref[i])``).  ``offsets``: empty = 0, one
    value for all cropped axes, or one per cropped axis."""
    ndim = len(x)
    if len(ref) != ndim:
        raise error(f"input {fmt_shape(x)} and reference {fmt_shape(ref)} have different ranks")
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
                        f"{fmt_shape(x)}")
        out.append((off, off + int(ref[i])))
    return out


def slice_bounds(L: int, points, n_out: int, error: Callable[[str], Exception]) -> list[tuple[int, int]]:
    """Caffe Slice: ``(start, stop)`` of each of the ``n_out`` pieces of an axis of size ``L``,
    split at ``points`` (``n_out - 1`` increasing positions), or in equal parts when empty."""
    if points:
        pts = [int(p) for p in points]
        if len(pts) != n_out - 1:
            raise error(f"{len(pts)} slice points for {n_out} outputs")
        edges = [0] + pts + [L]
        if any(b > e for b, e in itertools.pairwise(edges)):
            raise error(f"slice points {pts} are not increasing within 0..{L}")
        return list(itertools.pairwise(edges))
    if L % n_out:
        raise error(f"axis of size {L} cannot be split into {n_out} equal parts")
    step = L // n_out
    return [(i * step, (i + 1) * step) for i in range(n_out)]


@shape_rule("Crop")
def _crop(node, ins, ctx):
    if len(ins) != 2:
        raise ctx.error(f"Crop needs 2 inputs (data, reference), got {len(ins)}")
    x, ref = ins
    axis = int(node.attrs.get("axis", 2))
    crop_bounds(x, ref, axis, node.attrs.get("offsets"), ctx.error)   # validates
    a = axis + len(x) if axis < 0 else axis
    return [tuple(x[:a]) + tuple(ref[a:])]


@shape_rule("Flatten")
def _flatten(node, ins, ctx):
    x = ins[0]
    axis = norm_axis(node.attrs.get("axis", 1), len(x), ctx)
    end = norm_axis(node.attrs.get("end_axis", -1), len(x), ctx, "end_axis")
    if end < axis:
        raise ctx.error(f"end_axis {end} is before axis {axis}")
    return [tuple(x[:axis]) + (prod(x[axis:end + 1]),) + tuple(x[end + 1:])]


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
        raise ctx.error(f"{len(pads)} pad widths do not fit input {fmt_shape(ins[0])} (batch_ndim {bnd})")
    for i, pw in enumerate(pads):
        before, after = pair(pw, 2)
        ax = bnd + i
        x[ax] = None if x[ax] is None else x[ax] + int(before) + int(after)
    return [tuple(x)]


@shape_rule("Transpose")
def _transpose(node, ins, ctx):
    x = ins[0]
    pattern = list(node.attrs["pattern"])
    used = [p for p in pattern if p != "x"]
    if len(set(used)) != len(used) or any(not 0 <= int(p) < len(x) for p in used):
        raise ctx.error(f"dimshuffle pattern {pattern} is invalid for input {fmt_shape(x)}")
    for i, d in enumerate(x):
        if i not in used and d not in (1, None):
            raise ctx.error(f"dimshuffle pattern {pattern} drops axis {i} of size {d} "
                            "(only broadcastable axes of size 1 may be dropped)")
    return [tuple(1 if p == "x" else x[int(p)] for p in pattern)]


@shape_rule("Slice")
def _slice(node, ins, ctx):
    x = ins[0]
    a = node.attrs
    axis = norm_axis(a.get("axis", 1), len(x), ctx)
    L = x[axis]
    points = a.get("slice_points")
    if points is not None or node.num_outputs > 1:
        # Caffe Slice: several outputs split at slice_points (or equal parts)
        if L is None:
            return [tuple(x[:axis]) + (None,) + tuple(x[axis + 1:])] * node.num_outputs
        bounds = slice_bounds(L, points, node.num_outputs, ctx.error)
        return [tuple(x[:axis]) + (e - b,) + tuple(x[axis + 1:]) for b, e in bounds]
    if "index" in a and a["index"] is not None:
        idx = int(a["index"])
        if L is not None and not -L <= idx < L:
            raise ctx.error(f"index {idx} out of range for axis {axis} of size {L}")
        return [tuple(x[:axis]) + tuple(x[axis + 1:])]
    n = None if L is None else len(range(L)[slice(a.get("start"), a.get("stop"), a.get("step"))])
    return [tuple(x[:axis]) + (n,) + tuple(x[axis + 1:])]


@shape_rule("ShuffleChannel")
def _shuffle(node, ins, ctx):
    x = ins[0]
    check_rank(ctx, x, min_rank=2)
    g = int(node.attrs.get("group", 1))
    if x[1] is not None and x[1] % g:
        raise ctx.error(f"{x[1]} channels cannot be split into {g} groups")
    return [tuple(x)]


@shape_rule("Tile")
def _tile(node, ins, ctx):
    x = ins[0]
    axis = norm_axis(node.attrs.get("axis", 1), len(x), ctx)
    tiles = int(node.attrs["tiles"])
    if tiles < 1:
        raise ctx.error(f"tiles must be at least 1, got {tiles}")
    out = list(x)
    out[axis] = None if x[axis] is None else x[axis] * tiles
    return [tuple(out)]


def _kept_axis(s: int, x: Shape, out: Shape) -> int | None:
    """Where a C-order reshape of ``x`` into ``out`` keeps axis ``s`` whole (the same elements
    along it, in order): the ``p`` with ``prod(x[:s]) == prod(out[:p])`` and ``prod(x[s+1:]) ==
    prod(out[p+1:])``, all known; None when there is none (the axis is mixed with others)."""
    before, after = prod(x[:s]), prod(x[s + 1:])
    if before is None or after is None:
        return None
    for p in range(len(out)):
        if prod(out[:p]) == before and prod(out[p + 1:]) == after:
            return p
    return None


def layout_sample_axis(node, s: int, x: Shape, out: Shape | None) -> int | None:
    """The axis of a layout op's output that indexes the samples, given that axis ``s`` of
    its input ``x`` does (None: the samples are mixed into another axis, or unknown).
    ``Transpose`` moves it where the pattern puts it; ``Reshape`` / ``Flatten`` keep it when
    the reshape keeps that axis whole; ``Pad`` with ``batch_ndim`` 0 pads it (mixed)."""
    op = node.op
    if op == "Transpose":
        pattern = list(node.attrs.get("pattern", ()))
        return pattern.index(s) if s in pattern else None
    if op == "Pad":
        bnd = int(node.attrs.get("batch_ndim", 2))
        pads = node.attrs.get("pad", [])
        k = s - bnd
        if 0 <= k < len(pads) and any(int(v) for v in pair(pads[k], 2)):
            return None
        return s
    if op in ("Reshape", "Flatten"):
        if out is None:
            return None
        if s == 0 and op == "Flatten" and int(node.attrs.get("axis", 1)) % len(x) > 0:
            return 0
        if s == 0 and op == "Reshape" and int(node.attrs.get("axis", 0)) == 0 \
                and list(node.attrs.get("shape", []))[:1] == [0]:
            return 0                       # Caffe's 0: the batch dimension copied
        return _kept_axis(s, x, out)
    return s if s == 0 else None
