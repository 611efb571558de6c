"""Mapping rules of the recurrent family: Lasagne's recurrent layers (``Recurrent``) and Caffe's
LSTM / RNN (``CaffeRecurrent``).

Layout by meaning: a sequence keeps Keras's (and Lasagne's) order ``(N, T, F)`` (layout tag
``'NTF'``, :data:`~migrator.core.mapping.registry.SEQUENCE_LAYOUT`): an Input that feeds a
recurrence (:func:`feeds_recurrence`), every recurrent output, Embedding outputs.  Only a
rank-3 tensor in Migrator's channels-last form (``(N, C, L)`` data kept as ``(N, L, C)``, e.g.
after a DimshuffleLayer or a Conv1D) gets a ``Permute((2, 1))`` before the recurrence.
Caffe's LSTM / RNN blobs are ``(T, N, ...)``: kept as Caffe has them (``'TNF'``), the Keras
model's leading axis being Caffe's time axis (Caffe's batch of time steps).

Open lengths: when the source declares no sequence length (``InputLayer((None, None, F))``)
and everything between the input and the recurrence keeps the time axis
(:func:`open_time_axis`), the Keras time axis stays open (None) even where ``--input-shape``
fixed a length for the comparison.  Then a layer no built-in Keras RNN computes exactly
(peepholes, ...) runs as a loop (``impl='loop'``: ``keras.ops.while_loop``) traced into the
SavedModel / TFLite graph; ``.keras`` cannot hold that loop without a Migrator class
(:func:`loop_layers` names them for the export's one-line refusal).

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
from ..registry import SEQUENCE_LAYOUT, TIME_MAJOR_LAYOUT, Option, Rule, is_source_order, register
from .common import (
    Chain,
    chain_to_source,
    describe_act,
    f32,
    inline_activation,
    input_shape,
    known_shape,
    unsupported,
)

LSTM_GATES = ("ingate", "forgetgate", "cell", "outgate")

#: ops a sequence passes through on its way to a recurrence (element by element)
_SEQ_THROUGH = frozenset({"Dropout", "Identity", "Activation", "Exp", "Log", "Power", "Threshold",
                          "Clip", "Swish"})


def feeds_recurrence(ctx, tensor_id: str, _depth: int = 0) -> bool:
    """True when ``tensor_id`` reaches the sequence input of a recurrent layer (directly or
    through element-wise layers): it is a sequence (N, T, F), not (N, C, L) data."""
    if _depth > 50:
        return False
    for c in ctx.consumers(tensor_id):
        if c.op in ("Recurrent", "CaffeRecurrent") and c.inputs and c.inputs[0] == tensor_id:
            return True
        if (c.op in _SEQ_THROUGH and (c.op != "Activation" or c.attrs.get("kind") != "softmax")
                and c.outputs and feeds_recurrence(ctx, c.outputs[0], _depth + 1)):
            return True
    return False


def _keeps_open_time(ctx, tensor_id: str, _depth: int = 0) -> bool:
    """True when every consumer of the sequence ``tensor_id`` works at any sequence length:
    recurrences, element-wise layers, a Lasagne SliceLayer picking one time step."""
    if _depth > 200:
        return False
    for c in ctx.consumers(tensor_id):
        if c.op == "Recurrent":
            forced = ctx.overrides.for_node(c.name, c.op, c.source_type) if ctx.overrides else {}
            if c.inputs[0] != tensor_id or forced.get("impl") == "unrolled":
                return False          # a mask (N, T) is fine only as the mask: keep it simple
            if not c.attrs.get("only_return_final") and not _keeps_open_time(ctx, c.outputs[0], _depth + 1):
                return False
        elif c.op in _SEQ_THROUGH and (c.op != "Activation" or c.attrs.get("kind") != "softmax"):
            if not _keeps_open_time(ctx, c.outputs[0], _depth + 1):
                return False
        elif c.op == "Slice" and int(c.attrs.get("axis", 1)) == 1 and c.attrs.get("index") is not None \
                and int(c.attrs["index"]) == -1:
            continue
        else:
            return False
    return True


def open_time_axis(node, ctx) -> bool:
    """True when the Keras time axis of the sequence Input ``node`` can stay open: the source
    declares no length (``declared_shape[1]`` None, before any ``--input-shape``) and every layer
    reading the sequence works at any length."""
    decl = tuple(node.attrs.get("declared_shape") or node.attrs.get("shape") or ())
    return len(decl) == 3 and decl[1] is None and _keeps_open_time(ctx, node.outputs[0])


def open_length_problem(plan, fmt: str) -> str | None:
    """Why format ``fmt`` cannot hold this model at an open sequence length, in one line; None
    when it can.  '.keras' / '.h5' / 'weights' (its architecture JSON): an open-length loop
    (``impl='loop'``) needs a Migrator class there.  TFLite: a built-in Keras RNN layer on an open time axis becomes TensorList
    ops that only TFLite's Flex delegate runs; the loop form runs with TFLite's built-ins."""
    if fmt == "tflite":
        names = builtin_open_layers(plan)
        if not names:
            return None
        return ("TFLite runs the built-in Keras RNN layer(s) "
                f"{', '.join(repr(n) for n in names[:5])} at an open length only with the Flex "
                'delegate: convert with --mapping FILE holding {"kinds": {"Recurrent": {"impl": '
                '"loop"}}} (a graph loop TFLite runs at any length); SavedModel keeps any length as '
                "it is")
    names = loop_layers(plan)
    if not names or fmt not in ("keras", "h5", "weights"):
        return None
    ext = {"keras": ".keras", "h5": ".h5", "weights": "a weights file's architecture JSON"}[fmt]
    return (f"{ext} cannot hold the open-length loop of recurrent layer(s) "
            f"{', '.join(repr(n) for n in names[:5])} without a Migrator class: write a SavedModel "
            "(--format saved_model), which keeps any sequence length, or fix the length "
            '(--mapping FILE with {"kinds": {"Recurrent": {"impl": "unrolled"}}}, and --input-shape)')


def builtin_open_layers(plan) -> list[str]:
    """Source names of the recurrent layers built as a built-in Keras RNN layer on an open
    time axis."""
    out = []
    for m in plan.mappings:
        for s in m.layers:
            if s.class_name == "LasagneRNN" and s.config.get("impl") == "builtin" and \
                    plan.graph.node(m.source).inputs[0] in getattr(plan, "open_time", ()):
                out.append(m.source)
    return out


def loop_layers(plan) -> list[str]:
    """Source names of the recurrent layers built as an open-length loop (``impl='loop'``),
    which ``.keras`` / ``.h5`` cannot store without a Migrator class."""
    return [m.source for m in plan.mappings for s in m.layers
            if s.class_name == "LasagneRNN" and s.config.get("impl") == "loop"]


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
        if impl == "loop":
            rows.append(ParamRow("layer", "the Lasagne step in a keras.ops.while_loop over an open "
                                 "number of time steps (traced into SavedModel / TFLite; .keras "
                                 f"cannot hold the loop without a Migrator class) -- because of {why}",
                                 "loop"))
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
    description = ("Lasagne CustomRecurrentLayer/RecurrentLayer/LSTMLayer/GRULayer on (N, T, F) as "
                   "Keras RNNs: built-in SimpleRNN/LSTM/GRU where exact, else the Lasagne step as a "
                   "loop (open length) or unrolled (known length) with built-in layers and keras.ops.")
    options = {"impl": Option(str, "auto", "'auto': built-in Keras RNN layer where exact, else "  # noqa: RUF012
                                           "a loop when the length is open, else unrolled; "
                                           "'unrolled': always unroll (a known length; .keras "
                                           "without a Migrator class); 'loop': always the loop",
                              choices=("auto", "unrolled", "loop"))}
    sequence_aware = True

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
        opt = ctx.options.get("impl", "auto")
        x_open = node.inputs[0] in ctx.open_time
        if opt == "auto":
            impl = "builtin" if kc is not None else ("loop" if x_open or T is None else "unrolled")
        else:
            impl = opt
            why = f"option impl={opt!r}" if kc is not None else why
        if x_open and impl == "unrolled":   # not reached: an 'unrolled' override fixes the input length
            return unsupported(node, ctx, "impl='unrolled' needs a fixed sequence length, but the "
                                          "Keras time axis is open")
        if impl == "unrolled" and T is None:
            return unsupported(node, ctx, f"{why} needs the recurrence unrolled, which needs a known "
                                          "sequence length (the input's time axis is None)")
        a = dict(a)
        a["_T"] = T
        node_view = type("V", (), {"attrs": a, "p": node.p})()
        chain = Chain(node, ctx)
        x_id = node.inputs[0]
        if not is_source_order(ctx.layout_of(x_id)):   # channels-last (N, F, T) -> (N, T, F)
            chain.add("Permute", {"dims": [2, 1]}, suffix="to_time", inputs=[x_id])
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
        rows.append(ParamRow("layout", "Keras (N, T, F) = Lasagne's order (no transposition)"
                             + ("; the time axis is open" if impl != "unrolled" and (x_open or T is None)
                                else ""), SEQUENCE_LAYOUT))
        if a.get("only_return_final"):
            return chain.finish(rows=rows, layout="NC")
        return chain.finish(rows=rows, layout=SEQUENCE_LAYOUT)


@register("CaffeRecurrent")
class CaffeRecurrentRule(Rule):
    name = "CaffeRecurrent"
    description = ("Caffe LSTM / RNN: unrolled over the known number of time steps with keras.ops "
                   "(plain expression CaffeRecurrent); blobs stay (T, N, ...) as in Caffe, so time "
                   "is the model's leading (batch) axis.")
    sequence_aware = True

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
        if not is_source_order(ctx.layout_of(node.inputs[0])):
            chain_to_source(chain, rank)
        chain.add("Reshape", {"target_shape": [N, feat]}, suffix="x_flat")
        x_flat = chain.cur[0]
        chain.add("Reshape", {"target_shape": [N, 1]}, suffix="cont", inputs=[node.inputs[1]])
        chain.add("Concatenate", {"axis": -1}, suffix="x_cont", inputs=[x_flat, chain.cur[0]])
        cfg = {"cell": node.attrs["cell"], "num_output": int(node.attrs["num_output"]),
               "steps": int(x_shape[0]), "batch": N, "features": feat}
        chain.add("CaffeRecurrent", cfg, suffix="unrolled", weights=[node.p(k) for k in names])
        rows = [ParamRow("layout", "Caffe's (T, N, F) blobs as they are: Keras input/output "
                         "(T, N, F) with Caffe's time axis T as the Keras model's leading axis and the "
                         "continuation markers cont (T, N) as a second input", TIME_MAJOR_LAYOUT),
                ParamRow("cell", f"{cfg['cell']} unrolled over {cfg['steps']} steps (the leading axis); "
                         "h' = cont_t * h_{t-1}" + ("; gates i, f, o, g" if cfg["cell"] == "lstm" else ""),
                         cfg["cell"], sources={k: node.p(k) for k in names},
                         caveats=[("the Keras model's leading (batch) axis is Caffe's time axis, of "
                                  f"fixed length {cfg['steps']}")])]
        return chain.finish(rows=rows, layout=TIME_MAJOR_LAYOUT)
