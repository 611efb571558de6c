"""Mapping rules of Lasagne's recurrent layers and their neighbours: ``Recurrent``,
``Embedding``, and Dense over trailing axes (``DenseLayer(num_leading_axes=2)``).

Layout: Migrator keeps every rank-3 source tensor ``(N, A, B)`` as ``(N, B, A)`` on the Keras
side (channels-last, as for ``(N, C, L)``).  A Lasagne sequence ``(N, T, F)`` therefore
arrives as ``(N, F, T)``: the rules put ``Permute((2, 1))`` before the recurrence (Keras RNNs
and Lasagne both run on ``(N, T, F)``) and after it.

The recurrence is one ``LasagneRNN`` spec (:mod:`migrator.core.keras_build.recurrent_layers`),
built as plain Keras: ``impl='builtin'`` uses ``keras.layers.SimpleRNN`` / ``LSTM`` / ``GRU``
where they are exact (no peepholes, Keras-expressible gate nonlinearities, no mask),
``impl='unrolled'`` writes the Lasagne step out for every time step otherwise.
"""
from __future__ import annotations

import numpy as np

from ..plan import ParamRow
from ..registry import Option, Rule, keras_layout, register
from .layers import Chain, _describe_act, _f32, _in_shape, _unsupported, inline_activation

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
            return None, f"nonlinearity {_describe_act(a.get('activation'))}"
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
        return None, f"hidden_update nonlinearity {_describe_act(ga.get('hidden_update'))}"
    return {"units": int(a["units"]), "activation": act, "recurrent_activation": "sigmoid",
            "use_bias": True, "reset_after": True}, ""


def _weights(node, n_in: int) -> list[np.ndarray]:
    a, U = node.attrs, int(node.attrs["units"])

    def p(name, shape):
        v = node.p(name)
        return np.zeros(shape, np.float32) if v is None else _f32(v).reshape(shape)

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
            rows.append(ParamRow("gate nonlinearities", ", ".join(f"{g}: {_describe_act(v)}"
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
        in_shape = _in_shape(node, ctx)
        if in_shape is None or len(in_shape) != 3:
            return _unsupported(node, ctx, f"recurrent input of shape {in_shape}: only (batch, time, "
                                           "features) is supported (flatten trailing axes first)")
        T, n_in = in_shape[1], in_shape[2]
        if n_in is None:
            return _unsupported(node, ctx, "recurrent input with an unknown number of features")
        kc, why = _builtin_config(node)
        impl = "builtin" if kc is not None and ctx.options.get("impl", "auto") == "auto" else "unrolled"
        if kc is None and ctx.options.get("impl") == "unrolled":
            why = why or "option impl='unrolled'"
        elif kc is not None and impl == "unrolled":
            why = "option impl='unrolled'"
        if impl == "unrolled" and T is None:
            return _unsupported(node, ctx, f"{why} needs the recurrence unrolled, which needs a known "
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


@register("Embedding")
class EmbeddingRule(Rule):
    name = "Embedding"
    description = "keras.layers.Embedding (weights W as stored); a (N, T) input gives (N, T, E), " \
                  "kept as (N, E, T) like every rank-3 tensor."

    def map(self, node, ctx):
        in_shape = _in_shape(node, ctx)
        W = node.p("weight")
        if W is None or W.ndim != 2:
            return _unsupported(node, ctx, "embedding weight must be 2-D")
        if in_shape is None or len(in_shape) > 2:
            return _unsupported(node, ctx, f"embedding of an input of shape {in_shape} (only (N,) "
                                           "or (N, T) is supported)")
        chain = Chain(node, ctx)
        chain.add("Embedding", {"input_dim": int(W.shape[0]), "output_dim": int(W.shape[1])},
                  weights=[W])
        rows = [ParamRow("embeddings", "W (input_size, output_size) as stored; y = W[int(x)]",
                         _f32(W), sources={"W": W})]
        if len(in_shape) == 2:
            chain.add("Permute", {"dims": [2, 1]}, suffix="to_keras")
            return chain.finish(rows=rows, layout=keras_layout(3))
        return chain.finish(rows=rows, layout="NC")


def dense_trailing_node(node, ctx, in_shape, rank: int, axis: int):
    """:func:`dense_trailing` for a Dense node with a Lasagne-layout ('IO') weight."""
    W = node.p("weight")
    if W is None or W.ndim != 2:
        return _unsupported(node, ctx, "dense weight must be 2-D")
    if (node.params["weight"].layout or "").upper() == "OI":
        return dense_trailing(node, ctx, np.asarray(W).T, "W.T", in_shape, rank, axis)
    return dense_trailing(node, ctx, np.asarray(W), "W", in_shape, rank, axis)


def dense_trailing(node, ctx, K: np.ndarray, kformula: str, in_shape, rank: int, axis: int):
    """Dense over the source axes >= ``axis`` (> 1; Lasagne ``num_leading_axes = axis``):
    Permute the Keras tensor to the source order, Reshape the trailing axes into one,
    Dense (acts on the last axis), Permute the result back to Migrator's layout."""
    from .layers import add_activation, to_keras_perm, to_source_perm

    if in_shape is None or any(d is None for d in in_shape[axis:]):
        return _unsupported(node, ctx, "dense over trailing axes of unknown size")
    if any(d is None for d in in_shape[1:axis]) and rank - axis > 1:
        return _unsupported(node, ctx, "dense over several trailing axes with unknown leading axes")
    feat = int(np.prod(in_shape[axis:]))
    if feat != K.shape[0]:
        return _unsupported(node, ctx, f"weight has {K.shape[0]} inputs but the input "
                                       f"{tuple(in_shape)} has {feat} features from axis {axis}")
    chain = Chain(node, ctx)
    rows = [ParamRow("kernel", f"{kformula}; applied to the last axis of the source-order tensor "
                     f"(num_leading_axes={axis})", _f32(K))]
    if rank > 2:
        chain.add("Permute", {"dims": list(to_source_perm(rank))}, suffix="to_src")
    if rank - axis > 1:
        chain.add("Reshape", {"target_shape": [int(d) for d in in_shape[1:axis]] + [feat]},
                  suffix="flatten")
    has_bias = bool(node.attrs.get("bias", True)) and node.p("bias") is not None
    weights = [K] + ([node.p("bias").reshape(-1)] if has_bias else [])
    main = chain.add("Dense", {"units": int(K.shape[1]), "use_bias": has_bias, "activation": "linear"},
                     weights=weights)
    out_rank = axis + 1
    if has_bias:
        rows.append(ParamRow("bias", "b", _f32(node.p("bias"))))
    act = node.attrs.get("activation")
    if act and act.get("kind") == "softmax":
        return _unsupported(node, ctx, "softmax on a dense layer with several leading axes")
    add_activation(chain, main, act, out_rank, rows)
    if out_rank > 2:
        chain.add("Permute", {"dims": list(to_keras_perm(out_rank))}, suffix="to_keras")
    return chain.finish(rows=rows, layout=keras_layout(out_rank))


# ======================================================================================
# 1-D convolution / pooling: the 2-D rules over (N, 1, L, C)
# ======================================================================================
class _OneDRule(Rule):
    two_d = ""

    def map(self, node, ctx):
        from ...ir import Graph, Node
        from ..registry import RULES, MapContext

        in_shape = _in_shape(node, ctx)
        out_shape = node.out_shape
        if in_shape is None or len(in_shape) != 3 or in_shape[1] is None:
            return _unsupported(node, ctx, f"1-D layer on an input of shape {in_shape}")
        N, C, L = in_shape
        chain = Chain(node, ctx)
        # Keras keeps (N, C, L) as (N, L, C): (N, 1, L, C) is the NHWC form of (N, C, 1, L)
        chain.add("Reshape", {"target_shape": [1, -1 if L is None else int(L), int(C)]},
                  suffix="to2d", inputs=[node.inputs[0]])
        t2d = chain.cur[0]
        inp = Node(name=t2d, op="Input", attrs={"shape": (N, C, 1, L)})
        inp.out_shapes = [(N, C, 1, L)]
        sub = Node(name=node.name, op=self.two_d, inputs=[t2d], attrs=dict(node.attrs),
                   params=node.params, provenance=node.provenance)
        sub.out_shapes = [None if out_shape is None else (out_shape[0], out_shape[1], 1, out_shape[2])]
        rule = RULES[self.two_d]
        sub_ctx = MapContext(graph=Graph(framework=ctx.graph.framework, nodes=[inp, sub]),
                             options={k: o.default for k, o in rule.options.items()},
                             keras_names=ctx.keras_names)
        m = rule.map(sub, sub_ctx)
        if not m.supported:
            return _unsupported(node, ctx, m.error or "not supported", rows=m.rows)
        m.layers[-1].output = f"{node.name}/2d"
        chain.layers += m.layers
        chain.cur = [m.layers[-1].output]
        O = out_shape[1] if out_shape is not None and out_shape[1] is not None else None
        if O is None:
            return _unsupported(node, ctx, "1-D layer with an unknown number of output channels")
        chain.add("Reshape", {"target_shape": [-1, int(O)]}, suffix="to1d")
        rows = [ParamRow("layout", f"(N, L, C) reshaped to (N, 1, L, C), the 2-D {self.two_d} rule "
                         "(exact: the (N, C, 1, L) form of the layer), reshaped back", self.two_d)]
        return chain.finish(rows=rows + list(m.rows), layout=keras_layout(3), notes=list(m.notes))


@register("Conv1D")
class Conv1DRule(_OneDRule):
    name = "Conv1D"
    two_d = "Conv"
    description = "Lasagne Conv1DLayer: the Conv rule over (N, 1, L, C) (Reshape before and after)."


@register("Pool1D")
class Pool1DRule(_OneDRule):
    name = "Pool1D"
    two_d = "Pool"
    description = "Lasagne Pool1DLayer/MaxPool1DLayer: the Pool rule over (N, 1, L, C)."


# ======================================================================================
# 3-D convolution / pooling (NDHWC)
# ======================================================================================
@register("Conv3D")
class Conv3DRule(Rule):
    name = "Conv3D"
    description = ("ZeroPadding3D (symmetric pads) + Conv3D(padding='valid'); kernel OIDHW -> "
                   "DHWIO (rotated first when the layer convolves).")

    def map(self, node, ctx):
        from .layers import add_activation

        a = node.attrs
        W = node.p("weight")
        in_shape = _in_shape(node, ctx)
        if W is None or W.ndim != 5 or in_shape is None or len(in_shape) != 5:
            return _unsupported(node, ctx, "3-D convolution needs a 5-d weight and input")
        k, s, p = (tuple(int(v) for v in a[key]) for key in ("kernel", "stride", "pad"))
        K = np.asarray(W)
        flip = bool(a.get("flip"))
        if flip:
            K = K[:, :, ::-1, ::-1, ::-1]
        K = _f32(K.transpose(2, 3, 4, 1, 0))
        chain = Chain(node, ctx)
        rows = [ParamRow("kernel", ("W[:, :, ::-1, ::-1, ::-1].transpose(2, 3, 4, 1, 0) (a true "
                                    "convolution: kernel rotated)" if flip else
                                    "W.transpose(2, 3, 4, 1, 0) (cross-correlation)"), K, sources={"W": W})]
        if any(p):
            chain.add("ZeroPadding3D", {"padding": [[q, q] for q in p]}, suffix="pad")
            rows.append(ParamRow("padding", f"ZeroPadding3D {p} (symmetric) + 'valid'", p))
        has_bias = bool(a.get("bias", True)) and node.p("bias") is not None
        weights = [K] + ([node.p("bias").reshape(-1)] if has_bias else [])
        main = chain.add("Conv3D", {"filters": int(W.shape[0]), "kernel_size": list(k), "strides": list(s),
                                    "padding": "valid", "use_bias": has_bias, "activation": "linear"},
                         weights=weights)
        add_activation(chain, main, a.get("activation"), 5, rows)
        return chain.finish(rows=rows, layout=keras_layout(5))


@register("Pool3D")
class Pool3DRule(Rule):
    name = "Pool3D"
    description = "MaxPooling3D / AveragePooling3D ('valid', ignore_border=True); zero padding " \
                  "only where it is exact (average including the pad)."

    def map(self, node, ctx):
        a = node.attrs
        k, s, p = (tuple(int(v) for v in a[key]) for key in ("kernel", "stride", "pad"))
        mode = a.get("mode", "max")
        chain = Chain(node, ctx)
        rows = []
        if any(p):
            if mode == "max" or a.get("avg_divisor") == "exc_pad":
                return _unsupported(node, ctx, f"3-D {mode} pooling with pad {p} "
                                    f"({'padded cells must never win' if mode == 'max' else 'divisor excludes the pad'})")
            chain.add("ZeroPadding3D", {"padding": [[q, q] for q in p]}, suffix="pad")
            rows.append(ParamRow("padding", f"ZeroPadding3D {p}: the pad's zeros are averaged "
                                 "(average_inc_pad)", p))
        cls = "MaxPooling3D" if mode == "max" else "AveragePooling3D"
        chain.add(cls, {"pool_size": list(k), "strides": list(s), "padding": "valid"})
        rows.insert(0, ParamRow("pool", f"{cls}(pool_size={k}, strides={s}, 'valid') (floor, as "
                                "ignore_border=True)", cls))
        return chain.finish(rows=rows, layout=keras_layout(5))
