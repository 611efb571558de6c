"""Reference kernels: one numpy function per canonical op, exact *source* semantics (NCHW).

Each kernel is ``fn(node, inputs: list[np.ndarray]) -> list[np.ndarray]`` and is
registered in :data:`KERNELS` under its canonical op (see :data:`migrator.core.ops.OPS`),
in the module named after the op's family (``conv.py``, ``pool.py``, ... as in
:data:`migrator.core.ops.FAMILIES`); :mod:`.registry` has the registry and the shared
helpers.  Kernels never modify their inputs (outputs may be written in place once they are
freshly allocated).  They compute in the dtype of their input (the executor feeds float32
by default, like Caffe and Theano's floatX=float32); parameters are cast to that dtype.
Output sizes come from :mod:`migrator.core.shapes` (the formulas of docs/semantics.md).
"""
from __future__ import annotations

# importing a family module registers its kernels
from . import dense, embedding, io, layout, merge, norm, recurrent, reduce  # noqa: F401
from .activation import activation, softmax
from .conv import IM2COL_MAX_ELEMENTS, conv2d, deconv2d
from .pool import pool2d
from .registry import KERNELS, Kernel, kernel
from .resize import interp_matrix

__all__ = ["IM2COL_MAX_ELEMENTS", "KERNELS", "Kernel", "activation", "conv2d", "deconv2d",
           "interp_matrix", "kernel", "pool2d", "softmax"]
