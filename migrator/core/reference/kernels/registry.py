"""The reference-kernel registry and the helpers every family module of
:mod:`migrator.core.reference.kernels` shares.

A kernel is ``fn(node, inputs: list[np.ndarray]) -> list[np.ndarray]``, registered with
``@kernel(op, ...)`` in :data:`KERNELS` (one entry per op; a second registration raises
:class:`~migrator.core.registry.RegistrationError`).
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
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


# -- reusable work buffers ------------------------------------------------------------------
class _ScratchState(threading.local):
    def __init__(self):
        self.depth = 0
        self.bufs: dict = {}


_SCRATCH = _ScratchState()


@contextlib.contextmanager
def scratch_session() -> Iterator[None]:
    """While at least one session is open in this thread, :func:`scratch` hands out reusable
    buffers (so a forward pass does not fault in fresh pages for every im2col matrix); the
    buffers are freed when the thread's last session closes.  Sessions nest and may
    interleave (several reference runs streamed side by side)."""
    state = _SCRATCH          # this thread's state, even if a generator is closed elsewhere
    state.depth += 1
    try:
        yield
    finally:
        state.depth -= 1
        if state.depth <= 0:
            state.depth = 0
            state.bufs = {}


#: work arrays from this size on are kept for the run; smaller ones are allocated afresh (the C
#: allocator recycles those without new page faults, and a small run's peak memory stays as it was)
SCRATCH_KEEP_MIN_BYTES = 32 << 20


def scratch(name: str, shape: tuple, dtype) -> np.ndarray:
    """An uninitialised work array of ``shape``: inside a :func:`scratch_session` and from
    :data:`SCRATCH_KEEP_MIN_BYTES` on, a view of a buffer reused by every later
    ``scratch(name, ...)`` call of the same dtype in this thread; else a fresh array.  A kernel
    must never return it (or a view of it)."""
    dtype = np.dtype(dtype)
    state = _SCRATCH
    size = 1
    for d in shape:
        size *= int(d)
    if not state.depth or size * dtype.itemsize < SCRATCH_KEEP_MIN_BYTES:
        return np.empty(shape, dtype)
    key = (name, dtype)
    buf = state.bufs.get(key)
    if buf is None or buf.size < size:
        state.bufs[key] = None                 # the old buffer is freed before the bigger one
        state.bufs[key] = buf = np.empty(max(size, 1), dtype)
    return buf[:size].reshape(shape)
