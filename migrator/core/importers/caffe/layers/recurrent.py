"""Recurrent family: Caffe's LSTM and RNN layers.

Each handler reads one layer into ``(op, attrs, params, num_outputs)`` (see :mod:`..registry`)."""
from __future__ import annotations

from ....errors import MigratorError
from ....ir import Param
from ..registry import layer_handler


def recurrent(b, lp, cell: str):
    """LSTM / RNN (``cell`` 'lstm' / 'rnn') -> ``CaffeRecurrent``; a static input or
    expose_hidden is refused (Custom)."""
    rp = lp.recurrent_param
    n = lp.name
    if len(lp.bottom) == 3 or rp.expose_hidden:
        parts = b.custom_parts(lp, "recurrent variant")
        parts[1]["refused"] = (f"{lp.type} with a static input (third bottom) or expose_hidden "
                               "(initial states as bottoms) is not converted")
        return parts
    H = int(rp.num_output)
    if H < 1:
        raise b.err("recurrent_param.num_output must be at least 1", n)
    names = ("W_xc", "b_c", "W_hc") if cell == "lstm" else ("W_xh", "b_h", "W_hh", "W_ho", "b_o")
    params = {}
    blobs = b.need_blobs(lp, len(names), len(names), ", ".join(names))
    if blobs is not None:
        G = 4 * H if cell == "lstm" else H
        want = {"W_xc": (G, None), "b_c": (G,), "W_hc": (G, H), "W_xh": (G, None), "b_h": (G,),
                "W_hh": (H, H), "W_ho": (H, H), "b_o": (H,)}
        for i, (nm, arr) in enumerate(zip(names, blobs)):
            w = want[nm]
            if arr.ndim != len(w) or any(a is not None and a != b for a, b in zip(w, arr.shape)):
                raise MigratorError(f"blob {i} ({nm}) has shape {tuple(arr.shape)}, expected "
                                    f"{tuple('I' if a is None else a for a in w)} for num_output {H}",
                                    file=b.blob_file, layer=n)
            params[nm] = Param(nm, arr, "OI" if arr.ndim == 2 else "O", f"blobs[{i}]")
    return "CaffeRecurrent", {"cell": cell, "num_output": H}, params, 1


@layer_handler("LSTM", ops=("CaffeRecurrent",), bottoms=(2, 3))
def lstm(b, lp):
    return recurrent(b, lp, "lstm")


@layer_handler("RNN", ops=("CaffeRecurrent",), bottoms=(2, 3))
def rnn(b, lp):
    return recurrent(b, lp, "rnn")
