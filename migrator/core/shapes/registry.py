"""The shape-rule registry and the helpers every family module of :mod:`migrator.core.shapes` shares.

A shape rule is ``fn(node, in_shapes, ctx) -> list of output shapes`` (one tuple per output,
batch included, ``None`` for an unknown dimension), registered with ``@shape_rule(op, ...)``
in :data:`SHAPE_RULES`.  ``ctx`` is a :class:`ShapeContext`: ``ctx.error(msg)`` builds the
:class:`~migrator.core.errors.MigratorError` that names the file and the layer.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..errors import MigratorError
from ..registry import Registry

Shape = tuple  # tuple of int | None
ShapeRule = Callable[..., list]

#: op -> its shape rule; one entry per op (a second registration raises RegistrationError)
SHAPE_RULES: Registry[ShapeRule] = Registry("shape rules")


def shape_rule(*ops: str) -> Callable[[ShapeRule], ShapeRule]:
    """``@shape_rule("Op", ...)`` registers the decorated function for each op."""
    return SHAPE_RULES.decorator(*ops)


class ShapeContext:
    """What a shape rule needs to raise a good error: the node (a :class:`migrator.core.ir.Node`;
    not imported here, the IR imports this package) and the source file."""

    def __init__(self, node, file: str | None):
        self.node = node
        self.file = file or node.provenance.file

    def error(self, msg: str) -> MigratorError:
        layer = self.node.provenance.layer or self.node.name
        return MigratorError(f"{msg} ({self.node.source_type})", file=self.file, layer=layer)


def prod(dims: Sequence[int | None]) -> int | None:
    """Product of the dims; ``None`` when any dim is unknown."""
    out = 1
    for d in dims:
        if d is None:
            return None
        out *= int(d)
    return out


def pair(v: Any, n: int = 2) -> tuple:
    """``v`` as an ``n``-tuple: a scalar repeated, a 1-list repeated, a list kept (None -> Nones)."""
    if v is None:
        return (None,) * n
    if isinstance(v, (list, tuple)):
        if len(v) == 1:
            return tuple(v) * n
        return tuple(v)
    return (v,) * n


def norm_axis(axis: int, ndim: int, ctx: ShapeContext, what: str = "axis") -> int:
    """``axis`` made non-negative for an ``ndim``-d input; an error when out of range."""
    a = int(axis)
    if a < 0:
        a += ndim
    if not 0 <= a < ndim:
        raise ctx.error(f"{what} {axis} is out of range for a {ndim}-d input")
    return a


def fmt_shape(shape) -> str:
    """``(1, ?, 3)`` style text of a shape (``?`` for unknown dims, ``?`` for an unknown shape)."""
    if shape is None:
        return "?"
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def same_dim(a, b) -> bool:
    """Dims equal, where None matches anything."""
    return a is None or b is None or a == b


def check_rank(ctx: ShapeContext, shape: Shape, rank: int | None = None, min_rank: int | None = None):
    """Raise ``ctx.error`` unless ``shape`` has exactly ``rank`` / at least ``min_rank`` dims."""
    if rank is not None and len(shape) != rank:
        raise ctx.error(f"expects a {rank}-d input, got shape {fmt_shape(shape)}")
    if min_rank is not None and len(shape) < min_rank:
        raise ctx.error(f"expects an input of at least {min_rank} dims, got shape {fmt_shape(shape)}")


def spatial_input(ins, ctx: ShapeContext) -> tuple[Shape, int]:
    """The first input shape ``(N, C, ...)`` of a convolution / pooling and its number of
    spatial axes (``ctx.error`` when it has fewer than 3 dims)."""
    x = ins[0]
    check_rank(ctx, x, min_rank=3)
    return x, len(x) - 2


def out_lens_3d(ctx: ShapeContext, x: Shape, attrs: dict) -> list:
    """Spatial output sizes ``(L + 2p - k) // s + 1`` of a 3-D convolution / pooling over
    ``x = (N, C, D, H, W)`` (``kernel``, ``stride`` and ``pad`` from the node's ``attrs``)."""
    kernel, stride, pad = attrs["kernel"], attrs["stride"], attrs["pad"]
    if len(x) != 5:
        raise ctx.error(f"3-D layer input {tuple(x)} is not (N, C, D, H, W)")
    sp = []
    for L, kk, ss, pp in zip(x[2:], kernel, stride, pad):
        if L is None:
            sp.append(None)
            continue
        o = (L + 2 * pp - kk) // ss + 1
        if o < 1:
            raise ctx.error(f"input {tuple(x)} is too small for kernel {tuple(kernel)} (pad {tuple(pad)})")
        sp.append(o)
    return sp


def one_d(node, ins, ctx: ShapeContext, rule_2d: ShapeRule) -> list:
    """A 1-D op's shapes: the 2-D rule ``rule_2d`` over (N, C, 1, L), the size-1 axis dropped."""
    x = ins[0]
    if len(x) != 3:
        raise ctx.error(f"1-D layer input {tuple(x)} is not (N, C, L)")
    out = rule_2d(node, [(x[0], x[1], 1, x[2])], ctx)
    return [(o[0], o[1], o[3]) for o in out]
