"""Mapping rules of the recurrent family: Lasagne's recurrent layers (``Recurrent``) and Caffe's
LSTM / RNN (``CaffeRecurrent``).

Layout: Migrator keeps every rank-3 source tensor ``(N, A, B)`` as ``(N, B, A)`` on the Keras
side (channels-last, as for ``(N, C, L)``).  A Lasagne sequence ``(N, T, F)`` therefore
arrives as ``(N, F, T)``: the rules put ``Permute((2, 1))`` before the recurrence (Keras RNNs
and Lasagne both run on ``(N, T, F)``) and after it.

The Lasagne recurrence is one ``LasagneRNN`` spec
(:mod:`migrator.core.keras_build.constructs.recurrent`), built as plain Keras:
``impl='builtin'`` uses ``keras.layers.SimpleRNN`` / ``LSTM`` / ``GRU`` where they are exact
(no peepholes, Keras-expressible gate nonlinearities, no mask), ``impl='unrolled'`` writes
the Lasagne step out for every time step otherwise.  Caffe's LSTM / RNN is unrolled over its
known number of time steps (the plain expression ``CaffeRecurrent``).
"""
from __future__ import annotations

import numpy as np

from ..plan import ParamRow
from ..registry import Option, Rule, keras_layout, register
from .common import (
    Chain,
    chain_to_keras,
    chain_to_source,
    describe_act,
    f32,
    inline_activation,
    input_shape,
    known_shape,
    unsupported,
)

LSTM_GATES = ("ingate", "forgetgate", "cell", "outgate")


GRU_GATES = ("resetgate", "updategate", "hidden_update")


_KERAS_ACTS = {"relu", "linear", "sigmoid", "tanh", "softplus", "elu", "exponential"}


def _inline(act) -> str | None:
    k = inline_activation(act, 2)
    return k if k in _KERAS_ACTS else None


def _builtin_config(node) -> tuple[dict | None, str]:
    """(Keras built-in layer settings, '') when a built-in layer is exact, else (None, why)."""
    a = node.attrs
    cell = a["cell"]
    if a.get("mask"):
        return None, "a mask input (Lasagne blends h = m*h_new + (1-m)*h_prev)"
    ga = a.get("gate_activations") or {}
    if cell == "simple":
        if a.get("in_activation") or a.get("hid_activation"):
            return None, "the Dense sub-layers have nonlinearities of their own"
        act = _inline(a.get("activation"))
        if act is None:
            return None, f"nonlinearity {describe_act(a.get('activation'))}"
        return {"units": int(a["units"]), "activation": act, "use_bias": True}, ""
    if cell == "lstm":
        if a.get("peepholes"):
            return None, "peepholes (Keras LSTM has none)"
        rec = {_inline(ga.get(g)) for g in ("ingate", "forgetgate", "outgate")}
        if len(rec) != 1 or None in rec:
            return None, ("the input, forget and output gates' nonlinearities differ or have no "
                          "Keras name (Keras LSTM has one recurrent_activation)")
        act = _inline(a.get("activation"))
        if act is None or _inline(ga.get("cell")) != act:
            return None, ("the cell gate's and the output nonlinearity differ (Keras LSTM "
                          "uses one activation for both)")
        return {"units": int(a["units"]), "activation": act, "recurrent_activation": rec.pop(),
                "use_bias": True, "unit_forget_bias": False}, ""
    if any((ga.get(g) or {}).get("kind") != "sigmoid" for g in ("resetgate", "updategate")):
        return None, "reset/update gates are not sigmoid (the z = 1 - u negation needs sigmoid)"
    act = _inline(ga.get("hidden_update"))
    if act is None:
        return None, f"hidden_update nonlinearity {describe_act(ga.get('hidden_update'))}"
    return {"units": int(a["units"]), "activation": act, "recurrent_activation": "sigmoid",
            "use_bias": True, "reset_after": True}, ""


def _weights(node, n_in: int) -> list[np.ndarray]:
    a, U = node.attrs, int(node.attrs["units"])

    def p(name, shape):
        v = node.p(name)
        return np.zeros(shape, np.float32) if v is None else f32(v).reshape(shape)

    cell = a["cell"]
    if cell == "simple":
        return [p("W_in", (n_in, U)), p("b_in", (U,)), p("W_hid", (U, U)), p("b_hid", (U,)),
                p("hid_init", (1, U))]
    gates = LSTM_GATES if cell == "lstm" else GRU_GATES
    w = [np.concatenate([p(f"W_in_to_{g}", (n_in, U)) for g in gates], axis=1),
         np.concatenate([p(f"W_hid_to_{g}", (U, U)) for g in gates], axis=1),
         np.concatenate([p(f"b_{g}", (U,)) for g in gates])]
    if cell == "lstm":
        if a.get("peepholes"):
            w.append(np.stack([p(f"W_cell_to_{g}", (U,)) for g in ("ingate", "forgetgate", "outgate")]))
        else:
            w.append(np.zeros((3, U), np.float32))
        return w + [p("hid_init", (1, U)), p("cell_init", (1, U))]
    return w + [p("hid_init", (1, U))]


def _rows(node, impl: str, kc: dict | None, why: str) -> list[ParamRow]:
    a, cell = node.attrs, node.attrs["cell"]
    rows = []
    if impl == "builtin":
        cls = {"simple": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}[cell]
        rows.append(ParamRow("layer", f"keras.layers.{cls}({', '.join(f'{k}={v!r}' for k, v in kc.items())}) "
                             "(exact)", cls))
        if cell == "simple":
            rows.append(ParamRow("kernel / recurrent_kernel / bias", "W_in, W_hid, b_in + b_hid",
                                 None, sources={"W_in": node.p("W_in"), "W_hid": node.p("W_hid")}))
        elif cell == "lstm":
            rows.append(ParamRow("kernel", "[W_in_to_ingate | W_in_to_forgetgate | W_in_to_cell | "
                                 "W_in_to_outgate] (Keras gate order i, f, c, o = Lasagne's)", None))
            rows.append(ParamRow("unit_forget_bias", "False: the forget bias is b_forgetgate as stored",
                                 False))
        else:
            rows.append(ParamRow("kernel", "[-W_in_to_updategate | W_in_to_resetgate | "
                                 "W_in_to_hidden_update]: Keras z = 1 - u, sigmoid(-a) = 1 - sigmoid(a); "
                                 "recurrent kernel likewise; bias [[-b_u, b_r, b_h], 0] (Lasagne has "
                                 "no recurrent bias; reset applied after the matmul = reset_after)", None))
    else:
        rows.append(ParamRow("layer", f"the Lasagne step unrolled over {a.get('_T')} time steps: "
                             "Dense (all input projections), one shared Dense (recurrent "
                             f"projection), keras.ops for the gates -- because of {why}", "unrolled"))
        ga = a.get("gate_activations") or {}
        if ga:
            rows.append(ParamRow("gate nonlinearities", ", ".join(f"{g}: {describe_act(v)}"
                                                               for g, v in ga.items()), None))
        if cell == "lstm" and a.get("peepholes"):
            where = ("added after the outgate nonlinearity (Lasagne 0.1)"
                     if a.get("outgate_peephole") == "after_nonlinearity" else
                     "inside the outgate nonlinearity (Lasagne 0.2)")
            rows.append(ParamRow("peepholes", f"i += c_prev*w_ci, f += c_prev*w_cf, o: c_t*w_co {where}",
                                 True))
        if a.get("mask"):
            rows.append(ParamRow("mask", "h = m*h_new + (1-m)*h_prev (and c), as Lasagne", True))
    for s in ("hid_init", "cell_init"):
        if s == "cell_init" and cell != "lstm":
            continue
        if a.get(s) == "input":
            rows.append(ParamRow(s, "the output of the layer given as " + s, "input"))
        else:
            v = node.p(s)
            rows.append(ParamRow(s, "parameter (1, units) broadcast over the batch"
                                 + (" (all zero: Keras's default state)" if v is not None and not np.any(v)
                                    else ""), v))
    if a.get("backwards"):
        rows.append(ParamRow("backwards", "scan in reverse (go_backwards); outputs flipped back to "
                             "forward time order as Lasagne returns them" if not a.get("only_return_final")
                             else "scan in reverse; the final state", True))
    return rows


@register("Recurrent")
class RecurrentRule(Rule):
    name = "Recurrent"
    description = ("Lasagne CustomRecurrentLayer/RecurrentLayer/LSTMLayer/GRULayer: Permute to "
                   "(N, T, F), the recurrence (built-in SimpleRNN/LSTM/GRU where exact, else the "
                   "Lasagne step unrolled with built-in layers and keras.ops), Permute back.")
    options = {"impl": Option(str, "auto", "'auto': built-in Keras RNN layer where exact, else "  # noqa: RUF012
                                           "unrolled; 'unrolled': always unroll",
                              choices=("auto", "unrolled"))}

    def map(self, node, ctx):
        a = node.attrs
        in_shape = input_shape(node, ctx)
        if in_shape is None or len(in_shape) != 3:
            return unsupported(node, ctx, f"recurrent input of shape {in_shape}: only (batch, time, "
                                          "features) is supported (flatten trailing axes first)")
        T, n_in = in_shape[1], in_shape[2]
        if n_in is None:
            return unsupported(node, ctx, "recurrent input with an unknown number of features")
        kc, why = _builtin_config(node)
        impl = "builtin" if kc is not None and ctx.options.get("impl", "auto") == "auto" else "unrolled"
        if kc is None and ctx.options.get("impl") == "unrolled":
            why = why or "option impl='unrolled'"
        elif kc is not None and impl == "unrolled":
            why = "option impl='unrolled'"
        if impl == "unrolled" and T is None:
            return unsupported(node, ctx, f"{why} needs the recurrence unrolled, which needs a known "
                                          "sequence length (the input's time axis is None)")
        a = dict(a)
        a["_T"] = T
        node_view = type("V", (), {"attrs": a, "p": node.p})()
        chain = Chain(node, ctx)
        chain.add("Permute", {"dims": [2, 1]}, suffix="to_time", inputs=[node.inputs[0]])
        x_id = chain.cur[0]
        ins = [x_id] + list(node.inputs[1:])
        acts = {}
        if a["cell"] == "simple":
            acts = {"activation": a.get("activation"), "in": a.get("in_activation"),
                    "hid": a.get("hid_activation")}
        else:
            acts = dict(a.get("gate_activations") or {})
            if a["cell"] == "lstm":
                acts["activation"] = a.get("activation")
        cfg = {"cell": a["cell"], "units": int(a["units"]), "impl": impl,
               "backwards": bool(a.get("backwards")), "only_return_final": bool(a.get("only_return_final")),
               "mask": bool(a.get("mask")), "hid_init": a.get("hid_init", "param"),
               "cell_init": a.get("cell_init", "param"), "peepholes": bool(a.get("peepholes")),
               "outgate_peephole": a.get("outgate_peephole", "before_nonlinearity"),
               "activations": acts, "keras_config": kc or {}}
        chain.add("LasagneRNN", cfg, suffix=None, weights=_weights(node, int(n_in)), inputs=ins)
        rows = _rows(node_view, impl, kc, why)
        if a.get("only_return_final"):
            return chain.finish(rows=rows, layout="NC")
        chain.add("Permute", {"dims": [2, 1]}, suffix="to_keras")
        return chain.finish(rows=rows, layout=keras_layout(3))


@register("CaffeRecurrent")
class CaffeRecurrentRule(Rule):
    name = "CaffeRecurrent"
    description = ("Caffe LSTM / RNN: unrolled over the known number of time steps with keras.ops "
                   "(plain expression CaffeRecurrent); time is the model's leading (batch) axis.")

    def map(self, node, ctx):
        x_shape, _c_shape = input_shape(node, ctx, 0), input_shape(node, ctx, 1)
        if not known_shape(x_shape) or x_shape[0] is None:
            return unsupported(node, ctx, "a Caffe recurrent layer needs a known (T, N, ...) input shape")
        rank = len(x_shape)
        names = ("W_xc", "b_c", "W_hc") if node.attrs["cell"] == "lstm" else ("W_xh", "b_h", "W_hh", "W_ho", "b_o")
        if any(node.p(k) is None for k in names):
            return unsupported(node, ctx, "recurrent layer without weights")
        N, feat = int(x_shape[1]), int(np.prod(x_shape[2:]))
        # one input for the expression: [x_t features | cont_t] per (t, n)
        chain = Chain(node, ctx, inputs=[node.inputs[0]])
        chain_to_source(chain, rank)
        chain.add("Reshape", {"target_shape": [N, feat]}, suffix="x_flat")
        x_flat = chain.cur[0]
        chain.add("Reshape", {"target_shape": [N, 1]}, suffix="cont", inputs=[node.inputs[1]])
        chain.add("Concatenate", {"axis": -1}, suffix="x_cont", inputs=[x_flat, chain.cur[0]])
        cfg = {"cell": node.attrs["cell"], "num_output": int(node.attrs["num_output"]),
               "steps": int(x_shape[0]), "batch": N, "features": feat}
        chain.add("CaffeRecurrent", cfg, suffix="unrolled", weights=[node.p(k) for k in names])
        chain_to_keras(chain, 3)
        rows = [ParamRow("cell", f"{cfg['cell']} unrolled over {cfg['steps']} steps (the leading axis); "
                         "h' = cont_t * h_{t-1}" + ("; gates i, f, o, g" if cfg["cell"] == "lstm" else ""),
                         cfg["cell"], sources={k: node.p(k) for k in names},
                         caveats=[("the Keras model's leading (batch) axis is Caffe's time axis, of "
                                  f"fixed length {cfg['steps']}")])]
        return chain.finish(rows=rows, layout=keras_layout(3))
