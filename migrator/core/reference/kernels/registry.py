"""The reference-kernel registry and the helpers every family module of
:mod:`migrator.core.reference.kernels` shares.

A kernel is ``fn(node, inputs: list[np.ndarray]) -> list[np.ndarray]``, registered with
``@kernel(op, ...)`` in :data:`KERNELS` (one entry per op; a second registration raises
:class:`~migrator.core.registry.RegistrationError`).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ...errors import MigratorError
from ...registry import Registry

if TYPE_CHECKING:
    from ...ir import Node

Kernel = Callable[["Node", list], list]

#: op -> its reference kernel
KERNELS: Registry[Kernel] = Registry("reference kernels")


def kernel(*ops: str) -> Callable[[Kernel], Kernel]:
    """``@kernel("Op", ...)`` registers the decorated function for each op."""
    return KERNELS.decorator(*ops)


def err(node: Node, msg: str) -> MigratorError:
    """The error a kernel raises for ``node`` (names its file and layer)."""
    return MigratorError(msg, file=node.provenance.file, layer=node.provenance.layer or node.name)


def nchw_input(node: Node, xs: list, what: str) -> np.ndarray:
    """The first input of ``node``, which must be 4-d: else the error "<what> (NCHW) inputs,
    got shape ..." (``what`` says what supports them, e.g. "pooling supports 2-d")."""
    x = xs[0]
    if x.ndim != 4:
        raise err(node, f"{what} (NCHW) inputs, got shape {x.shape}")
    return x


def pair(v, n=2) -> tuple:
    """``v`` as an ``n``-tuple of ints (a scalar or a 1-list repeated)."""
    if isinstance(v, (list, tuple)):
        return tuple(int(a) for a in v) if len(v) != 1 else (int(v[0]),) * n
    return (int(v),) * n


def param(node: Node, name: str, dtype) -> np.ndarray | None:
    """The node's parameter ``name`` cast to ``dtype`` (no copy when it already is); None if absent."""
    v = node.p(name)
    if v is None:
        return None
    return np.asarray(v).astype(dtype, copy=False)


def norm_axis(a: int, ndim: int) -> int:
    """A possibly negative axis made non-negative for an ``ndim``-d array."""
    return a + ndim if a < 0 else a


def bshape(ndim: int, axis: int, shape: tuple) -> tuple:
    """Shape for broadcasting an array of ``shape`` against an ``ndim`` input at ``axis``."""
    return (1,) * axis + tuple(shape) + (1,) * (ndim - axis - len(shape))


def windows3d(xp, k, s, out):
    """Yield ((a, b, c), view) of every kernel offset: xp[:, :, a::sd, b::sh, c::sw] cut to out."""
    for a in range(k[0]):
        for b in range(k[1]):
            for c in range(k[2]):
                yield (a, b, c), xp[:, :, a:a + s[0] * (out[0] - 1) + 1:s[0],
                                    b:b + s[1] * (out[1] - 1) + 1:s[1],
                                    c:c + s[2] * (out[2] - 1) + 1:s[2]]


def one_d(node: Node, xs: list, kernel_2d: Kernel) -> list:
    """Run the 2-D kernel ``kernel_2d`` over (N, C, 1, L) and drop the size-1 axis again."""
    x = np.asarray(xs[0])
    if x.ndim != 3:
        raise err(node, f"1-D layer input of shape {x.shape} is not (N, C, L)")
    y = kernel_2d(node, [x[:, :, None, :]])[0]
    return [y[:, :, 0, :]]
