"""Embedding family: Embed.

Each handler reads one layer into ``(op, attrs, params, num_outputs)`` (see :mod:`..registry`)."""
from __future__ import annotations

from ....errors import MigratorError
from ....ir import Param
from ..common import strip_leading_ones, vector
from ..registry import layer_handler


@layer_handler("Embed", ops=("Embed",))
def embed(b, lp):
    ep = lp.embed_param
    n = lp.name
    if not ep.HasField("num_output") or not ep.HasField("input_dim"):
        raise b.err("embed_param needs num_output and input_dim", n)
    N, K, bias = int(ep.num_output), int(ep.input_dim), bool(ep.bias_term)
    params = {}
    blobs = b.need_blobs(lp, 1 + bias, 1 + bias, "weight" + (", bias" if bias else ""))
    if blobs is not None:
        w = strip_leading_ones(blobs[0], 2)
        if w.shape != (K, N):
            raise MigratorError(f"weight blob of shape {tuple(blobs[0].shape)} does not fit "
                                f"input_dim {K} and num_output {N} (expected ({K}, {N}))",
                                file=b.blob_file, layer=n)
        params["weight"] = Param("weight", w, "IO", "blobs[0]")
        if bias:
            params["bias"] = Param("bias", vector(blobs[1], "bias", b.blob_file, n, N), "O",
                                   "blobs[1]")
    return "Embed", {"num_output": N, "input_dim": K, "bias": bias}, params, 1
