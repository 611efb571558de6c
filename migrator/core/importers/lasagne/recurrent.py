"""Recurrent family: Lasagne's recurrent layers -> canonical ``Recurrent`` nodes.

Canonical form (see ``ir.OPS['Recurrent']``): one node per Lasagne recurrent layer whose
inputs are ``[x, mask?, hid_init?, cell_init?]`` (Lasagne's incomings order), every gate's
own parameters under Lasagne's names and every gate's nonlinearity as an Activation dict.
"""
from __future__ import annotations

import numpy as np

from .common import Unsupported, activation_of
from .registry import converter

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


@converter("CustomRecurrentLayer", "RecurrentLayer", "LSTMLayer", "GRULayer", ops=("Recurrent",))
def recurrent(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """-> (op, attrs, param map) for the recurrent layers.  Raises :class:`.common.Unsupported`
    for settings without a canonical form."""
    known, a = L.get("known"), L.get("attrs", {})
    x_shape = in_shapes[0] if in_shapes else None
    if x_shape is None or len(x_shape) < 3:
        raise Unsupported(f"recurrent input of shape {x_shape}: expected (batch, time, features...)")
    roles = _roles(L)
    pnames = {p["name"] for p in L["params"]}
    attrs = {"backwards": bool(a.get("backwards", False)),
             "only_return_final": bool(a.get("only_return_final", False)),
             "mask": roles["mask"] is not None,
             "hid_init": "input" if roles["hid_init"] is not None else "param",
             "learn_init": bool(a.get("learn_init", False))}
    if roles["hid_init"] is None and "hid_init" not in pnames:
        raise Unsupported("hid_init is neither a parameter nor a layer (a Theano expression)")
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
            raise Unsupported("cell_init is neither a parameter nor a layer (a Theano expression)")
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
            raise Unsupported(f"{key} is not a layer Migrator can read")
        if d["__sublayer__"] != "DenseLayer" or d.get("layers") != ["InputLayer", "DenseLayer"]:
            raise Unsupported(f"{key} is {' -> '.join(d.get('layers') or [d['__sublayer__']])}; "
                              "only a single DenseLayer on an InputLayer is supported")
        if int(d["attrs"].get("num_leading_axes", 1)) != 1:
            raise Unsupported(f"{key}: DenseLayer with num_leading_axes != 1")
        subs[key] = d
    units = int(subs["hidden_to_hidden"]["attrs"]["num_units"])
    if int(subs["input_to_hidden"]["attrs"]["num_units"]) != units:
        raise Unsupported("input_to_hidden and hidden_to_hidden have different numbers of units")
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
