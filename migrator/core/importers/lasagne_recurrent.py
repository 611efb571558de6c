"""Lasagne recurrent layers (and EmbeddingLayer) -> canonical ``Recurrent`` / ``Embedding``
nodes.  Called by :func:`migrator.core.importers.lasagne._canonical`.

Canonical form (see ``ir.OPS['Recurrent']``): one node per Lasagne recurrent layer whose
inputs are ``[x, mask?, hid_init?, cell_init?]`` (Lasagne's incomings order), every gate's
own parameters under Lasagne's names and every gate's nonlinearity as an Activation dict.
"""
from __future__ import annotations

import numpy as np

RECURRENT = {"CustomRecurrentLayer", "RecurrentLayer", "LSTMLayer", "GRULayer"}
LSTM_GATES = ("ingate", "forgetgate", "cell", "outgate")
GRU_GATES = ("resetgate", "updategate", "hidden_update")
_GRU_NL_ATTR = {"resetgate": "nonlinearity_resetgate", "updategate": "nonlinearity_updategate",
                "hidden_update": "nonlinearity_hid"}


def _roles(L: dict) -> dict:
    """Which of the node's inputs is the mask / hid_init / cell_init (index or None)."""
    a = L.get("attrs", {})
    n = len(L["inputs"])

    def idx(key):
        v = a.get(key)
        return int(v) if isinstance(v, int) and 0 < int(v) < n else None

    if "mask_incoming_index" in a:       # Lasagne 0.2 (and the recorder)
        return {"mask": idx("mask_incoming_index"), "hid_init": idx("hid_init_incoming_index"),
                "cell_init": idx("cell_init_incoming_index")}
    return {"mask": 1 if n > 1 else None, "hid_init": None, "cell_init": None}   # Lasagne 0.1


def canonical(L: dict, in_shapes: list, unsupported, activation_of) -> tuple[str, dict, dict]:
    """-> (op, attrs, param map) for EmbeddingLayer and the recurrent layers.  Raises
    ``unsupported(why)`` for settings without a canonical form."""
    known, a = L.get("known"), L.get("attrs", {})
    if known == "EmbeddingLayer":
        return "Embedding", {"input_size": int(a["input_size"]),
                             "output_size": int(a["output_size"])}, \
            {"W": ("weight", None, "VE")}
    x_shape = in_shapes[0] if in_shapes else None
    if x_shape is None or len(x_shape) < 3:
        raise unsupported(f"recurrent input of shape {x_shape}: expected (batch, time, features...)")
    roles = _roles(L)
    pnames = {p["name"] for p in L["params"]}
    attrs = {"backwards": bool(a.get("backwards", False)),
             "only_return_final": bool(a.get("only_return_final", False)),
             "mask": roles["mask"] is not None,
             "hid_init": "input" if roles["hid_init"] is not None else "param",
             "learn_init": bool(a.get("learn_init", False))}
    if roles["hid_init"] is None and "hid_init" not in pnames:
        raise unsupported("hid_init is neither a parameter nor a layer (a Theano expression)")
    pmap = {"hid_init": ("hid_init", _row2, "1U")}
    if known == "LSTMLayer":
        units = int(a["num_units"])
        # Lasagne 0.1 applies the outgate nonlinearity BEFORE adding the c_t peephole term
        # (o = act_o(...) + c_t w_co); later versions (0.2.dev, GitHub master) after it
        v01 = str(L.get("lasagne_version") or "").startswith("0.1")
        attrs.update(cell="lstm", units=units, peepholes=bool(a.get("peepholes", True)),
                     outgate_peephole="after_nonlinearity" if v01 else "before_nonlinearity",
                     cell_init="input" if roles["cell_init"] is not None else "param",
                     activation=activation_of(a.get("nonlinearity")),
                     gate_activations={g: activation_of(a.get(f"nonlinearity_{g}"))
                                       for g in LSTM_GATES})
        if roles["cell_init"] is None and "cell_init" not in pnames:
            raise unsupported("cell_init is neither a parameter nor a layer (a Theano expression)")
        for g in LSTM_GATES:
            pmap[f"W_in_to_{g}"] = (f"W_in_to_{g}", None, "IO")
            pmap[f"W_hid_to_{g}"] = (f"W_hid_to_{g}", None, "IO")
            pmap[f"b_{g}"] = (f"b_{g}", None, "U")
        for g in ("ingate", "forgetgate", "outgate"):
            pmap[f"W_cell_to_{g}"] = (f"W_cell_to_{g}", None, "U")
        pmap["cell_init"] = ("cell_init", _row2, "1U")
        return "Recurrent", attrs, pmap
    if known == "GRULayer":
        units = int(a["num_units"])
        attrs.update(cell="gru", units=units,
                     gate_activations={g: activation_of(a.get(_GRU_NL_ATTR[g])) for g in GRU_GATES})
        for g in GRU_GATES:
            pmap[f"W_in_to_{g}"] = (f"W_in_to_{g}", None, "IO")
            pmap[f"W_hid_to_{g}"] = (f"W_hid_to_{g}", None, "IO")
            pmap[f"b_{g}"] = (f"b_{g}", None, "U")
        return "Recurrent", attrs, pmap
    # CustomRecurrentLayer / RecurrentLayer: two Dense sub-layers
    subs = {}
    for key in ("input_to_hidden", "hidden_to_hidden"):
        d = a.get(key)
        if not isinstance(d, dict) or "__sublayer__" not in d:
            raise unsupported(f"{key} is not a layer Migrator can read")
        if d["__sublayer__"] != "DenseLayer" or d.get("layers") != ["InputLayer", "DenseLayer"]:
            raise unsupported(f"{key} is {' -> '.join(d.get('layers') or [d['__sublayer__']])}; "
                              "only a single DenseLayer on an InputLayer is supported")
        if int(d["attrs"].get("num_leading_axes", 1)) != 1:
            raise unsupported(f"{key}: DenseLayer with num_leading_axes != 1")
        subs[key] = d
    units = int(subs["hidden_to_hidden"]["attrs"]["num_units"])
    if int(subs["input_to_hidden"]["attrs"]["num_units"]) != units:
        raise unsupported("input_to_hidden and hidden_to_hidden have different numbers of units")
    attrs.update(cell="simple", units=units, activation=activation_of(a.get("nonlinearity")),
                 in_activation=activation_of(subs["input_to_hidden"]["attrs"].get("nonlinearity")),
                 hid_activation=activation_of(subs["hidden_to_hidden"]["attrs"].get("nonlinearity")))
    pmap.update({"input_to_hidden.W": ("W_in", None, "IO"), "input_to_hidden.b": ("b_in", None, "U"),
                 "hidden_to_hidden.W": ("W_hid", None, "IO"),
                 "hidden_to_hidden.b": ("b_hid", None, "U")})
    return "Recurrent", attrs, pmap


def _row2(v: np.ndarray) -> np.ndarray:
    """hid_init / cell_init as stored, (1, units)."""
    return np.asarray(v).reshape(1, -1)


# ---- 1-D convolution and pooling (sequence models) -------------------------------------
ONE_D = {"Conv1DLayer", "Pool1DLayer", "MaxPool1DLayer"}


def canonical_1d(L: dict, in_shapes: list, unsupported, activation_of) -> tuple[str, dict, dict]:
    """Conv1DLayer / Pool1DLayer / MaxPool1DLayer -> ``Conv1D`` / ``Pool1D``: the attrs of
    the 2-D op over (N, C, 1, L) (kernel (1, k), ...), weight (O, I, 1, k) 'OIHW'."""
    known, a = L.get("known"), L.get("attrs", {})
    x = in_shapes[0] if in_shapes else None
    if x is None or len(x) != 3:
        raise unsupported(f"1-D layer on an input of shape {x} (expected (N, C, L))")

    def one(v, what):
        v = v[0] if isinstance(v, list) and len(v) == 1 else v
        if isinstance(v, bool) or not isinstance(v, int):
            raise unsupported(f"{what} {v!r} is not an integer")
        return int(v)

    if known == "Conv1DLayer":
        k = one(a.get("filter_size"), "filter_size")
        pad = a.get("pad", 0)
        if pad == "full":
            p = k - 1
        elif pad == "same":
            if k % 2 == 0:
                raise unsupported("pad='same' with an even filter (asymmetric padding)")
            p = k // 2
        elif pad == "valid":
            p = 0
        else:
            p = one(pad, "pad")
        pnames = [q["name"] for q in L["params"]]
        untie = bool(a.get("untie_biases", False))
        attrs = {"kernel": (1, k), "stride": (1, one(a.get("stride", 1), "stride")), "pad": (0, p),
                 "dilation": (1, 1), "group": int(a.get("num_groups", 1) or 1), "bias": "b" in pnames,
                 "flip": bool(a.get("flip_filters", True)),
                 "activation": activation_of(a.get("nonlinearity")), "untie_biases": untie}
        return "Conv1D", attrs, {"W": ("weight", _oihw_1d, "OIHW", "W (O, I, k) stored; as (O, I, 1, k)"),
                                 "b": ("bias", _bias_1d if untie else None, "OHW" if untie else "O")}
    k = one(a.get("pool_size"), "pool_size")
    s = k if a.get("stride") is None else one(a.get("stride"), "stride")
    p = one(a.get("pad", 0) or 0, "pad")
    mode = a.get("mode", "max")
    if mode == "max":
        m, div = "max", None
    elif mode in ("average_inc_pad", "average_exc_pad"):
        m, div = "avg", "inc_pad" if mode == "average_inc_pad" else "exc_pad"
    else:
        raise unsupported(f"pooling mode {mode!r}")
    return "Pool1D", {"mode": m, "kernel": (1, k), "stride": (1, s), "pad": (0, p),
                      "rounding": "floor" if bool(a.get("ignore_border", True)) else "lasagne_ceil",
                      "avg_divisor": div}, {}


def _oihw_1d(w: np.ndarray) -> np.ndarray:
    return np.asarray(w)[:, :, None, :]


def _bias_1d(b: np.ndarray) -> np.ndarray:
    return np.asarray(b)[:, None, :]


# ---- 3-D convolution and pooling (the Recipes C3D model) -------------------------------
THREE_D = {"Conv3DLayer", "Conv3DDNNLayer", "Pool3DLayer", "MaxPool3DLayer", "Pool3DDNNLayer",
           "MaxPool3DDNNLayer"}
_FLIP_3D = {"Conv3DLayer": True, "Conv3DDNNLayer": False}


def canonical_3d(L: dict, in_shapes: list, unsupported, activation_of) -> tuple[str, dict, dict]:
    """-> ``Conv3D`` / ``Pool3D`` (see ``ir.OPS``)."""
    known, a = L.get("known"), L.get("attrs", {})
    x = in_shapes[0] if in_shapes else None
    if x is None or len(x) != 5:
        raise unsupported(f"3-D layer on an input of shape {x} (expected (N, C, D, H, W))")

    def triple(v, what):
        if isinstance(v, int) and not isinstance(v, bool):
            return (int(v),) * 3
        if isinstance(v, list) and len(v) == 3 and all(isinstance(t, int) for t in v):
            return tuple(int(t) for t in v)
        raise unsupported(f"{what} {v!r} is not an integer or three")

    if known in _FLIP_3D:
        k = triple(a.get("filter_size"), "filter_size")
        pad = a.get("pad", 0)
        if pad == "full":
            p = tuple(t - 1 for t in k)
        elif pad == "same":
            p = tuple(t // 2 for t in k)
        elif pad == "valid":
            p = (0, 0, 0)
        else:
            p = triple(pad, "pad")
        if int(a.get("num_groups", 1) or 1) != 1:
            raise unsupported("grouped 3-D convolution")
        if bool(a.get("untie_biases", False)):
            raise unsupported("untie_biases=True")
        pnames = [q["name"] for q in L["params"]]
        return "Conv3D", {"kernel": k, "stride": triple(a.get("stride", 1), "stride"), "pad": p,
                          "bias": "b" in pnames, "flip": bool(a.get("flip_filters", _FLIP_3D[known])),
                          "activation": activation_of(a.get("nonlinearity"))}, \
            {"W": ("weight", None, "OIDHW"), "b": ("bias", None, "O")}
    k = triple(a.get("pool_size"), "pool_size")
    s = k if a.get("stride") is None else triple(a.get("stride"), "stride")
    p = triple(a.get("pad", 0) or 0, "pad")
    if not bool(a.get("ignore_border", True)):
        raise unsupported("3-D pooling with ignore_border=False")
    mode = a.get("mode", "max")
    if mode == "max":
        m, div = "max", None
    elif mode in ("average_inc_pad", "average_exc_pad"):
        m, div = "avg", "inc_pad" if mode == "average_inc_pad" else "exc_pad"
    else:
        raise unsupported(f"pooling mode {mode!r}")
    return "Pool3D", {"mode": m, "kernel": k, "stride": s, "pad": p, "avg_divisor": div}, {}
