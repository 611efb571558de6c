"""Dense family: InnerProduct.

Each handler reads one layer into ``(op, attrs, params, num_outputs)`` (see :mod:`..registry`)."""
from __future__ import annotations

from ....errors import MigratorError
from ....ir import Param
from ..common import strip_leading_ones, vector
from ..registry import layer_handler


@layer_handler("InnerProduct", ops=("Dense",))
def inner_product(b, lp):
    ip = lp.inner_product_param
    n = lp.name
    if not ip.HasField("num_output"):
        raise b.err("inner_product_param.num_output is missing", n)
    N = int(ip.num_output)
    bias = bool(ip.bias_term)
    transpose = bool(ip.transpose)
    attrs = {"num_output": N, "axis": int(ip.axis), "bias": bias, "activation": None}
    params = {}
    blobs = b.need_blobs(lp, 1 + bias, 1 + bias, "weight" + (", bias" if bias else ""))
    if blobs is not None:
        w = strip_leading_ones(blobs[0], 2)
        if w.ndim == 1:
            w = w.reshape((1, -1) if not transpose else (-1, 1))
        n_dim = w.shape[1] if transpose else w.shape[0]
        if w.ndim != 2 or n_dim != N:
            exp = f"(K, {N})" if transpose else f"({N}, K)"
            raise MigratorError(f"weight blob of shape {tuple(blobs[0].shape)} does not fit "
                                f"num_output {N} (expected {exp}"
                                f"{', transpose: true' if transpose else ''})",
                                file=b.blob_file, layer=n)
        params["weight"] = Param("weight", w, "IO" if transpose else "OI", "blobs[0]")
        if bias:
            params["bias"] = Param("bias", vector(blobs[1], "bias", b.blob_file, n, N), "O",
                                   "blobs[1]")
    return "Dense", attrs, params, 1
