"""Keras constructs of the recurrent family: Lasagne's recurrent layers (the custom class
``LasagneRNN`` and its construct: built-in layers + ``keras.ops`` only) and Caffe's LSTM / RNN
(the construct ``CaffeRecurrent``).

``LasagneRNN`` takes ``[x, mask?, hid_init?, cell_init?]`` with ``x`` in Keras's (and
Lasagne's) order ``(batch, time, features)`` and computes one of ``ir.OPS['Recurrent']``'s
cells exactly as Lasagne does.  Config::

    cell ('simple'|'lstm'|'gru'), units, impl ('builtin'|'unrolled'|'loop'), backwards,
    only_return_final, mask, hid_init/cell_init ('param'|'input'), peepholes,
    outgate_peephole, activations {name: Activation dict or None}, keras (built-in settings)

Weights (``get_weights()`` order), gates stacked along the last axis:

* simple: W_in (F, U), b_in (U,), W_hid (U, U), b_hid (U,), hid_init (1, U)
* lstm:   W_in (F, 4U) [i|f|c|o], W_hid (U, 4U), b (4U,), W_cell (3, U) [i, f, o] (zeros
  without peepholes), hid_init (1, U), cell_init (1, U)
* gru:    W_in (F, 3U) [r|u|h], W_hid (U, 3U), b (3U,), hid_init (1, U)

The plain expression is a nested functional model:

* ``impl='builtin'`` -- ``keras.layers.SimpleRNN`` / ``LSTM`` / ``GRU(reset_after=True)``
  (GRU: Keras's update gate z = 1 - u, so the u columns are negated: sigmoid(-a) =
  1 - sigmoid(a); recurrent bias 0), ``initial_state`` from the init inputs or the init
  parameters broadcast over the batch (``zeros_like(x[:, 0, :1]) + h0``), and
  ``ops.flip`` over time for ``backwards`` (Keras returns the reversed order).
* ``impl='loop'`` -- the Lasagne step in a ``keras.ops.while_loop`` (:func:`looped`): any
  sequence length; traced into SavedModel / TFLite as a graph loop, but a ``.keras`` file
  cannot hold the loop's Python body (no Migrator-free way: the export says so).
* ``impl='unrolled'`` -- the Lasagne step written out for every time step (the sequence
  length must be known): one ``Dense`` for the input projections of all steps, one shared
  ``Dense`` for the recurrent projection called at every step, ``keras.ops`` for gates,
  peepholes and the mask blend ``h = m*h_new + (1-m)*h_prev``.
"""
from __future__ import annotations

import keras
import numpy as np
from keras import ops

from ..custom_layers import CUSTOM_LAYERS, KERAS_PACKAGE
from .registry import plain

GATES = {"simple": 1, "lstm": 4, "gru": 3}


def act_fn(spec):
    """An Activation-kind dict (``ir.OPS['Activation']``) -> a function of keras.ops."""
    if not spec:
        return lambda x: x
    kind = spec.get("kind", "linear")
    if kind == "linear":
        return lambda x: x
    if kind == "relu":
        a = float(spec.get("negative_slope", 0.0) or 0.0)
        if a == 0.0:
            return ops.relu
        return lambda x: ops.maximum(x, 0.0) + a * ops.minimum(x, 0.0)
    if kind == "elu":
        a = float(spec.get("alpha", 1.0))
        return lambda x: ops.where(x > 0, x, a * (ops.exp(ops.minimum(x, 0.0)) - 1.0))
    if kind == "sigmoid":
        return ops.sigmoid
    if kind == "tanh":
        return ops.tanh
    if kind == "softplus":
        return ops.softplus
    if kind == "abs":
        return ops.abs
    if kind == "exp":
        return ops.exp
    if kind == "scaled_tanh":
        si, so = float(spec.get("scale_in", 1.0)), float(spec.get("scale_out", 1.0))
        return lambda x: so * ops.tanh(si * x)
    if kind == "softmax":
        return lambda x: ops.softmax(x, axis=-1)
    raise ValueError(f"unknown activation kind {kind!r}")


def weight_shapes(cfg: dict, n_in: int) -> list[tuple]:
    U, cell = int(cfg["units"]), cfg["cell"]
    g = GATES[cell]
    if cell == "simple":
        return [(n_in, U), (U,), (U, U), (U,), (1, U)]
    shapes = [(n_in, g * U), (U, g * U), (g * U,)]
    if cell == "lstm":
        return shapes + [(3, U), (1, U), (1, U)]
    return shapes + [(1, U)]


def _split_inputs(xs, cfg):
    xs = list(xs) if isinstance(xs, (list, tuple)) else [xs]
    x, pos = xs[0], 1
    mask = h0 = c0 = None
    if cfg.get("mask"):
        mask, pos = xs[pos], pos + 1
    if cfg.get("hid_init") == "input":
        h0, pos = xs[pos], pos + 1
    if cfg["cell"] == "lstm" and cfg.get("cell_init") == "input":
        c0, pos = xs[pos], pos + 1
    return x, mask, h0, c0


def _broadcast_init(x, init):
    """(1, U) parameter -> (batch, U) tensor (exact: zeros + value)."""
    return ops.zeros_like(x[:, 0, :1]) + init


def step(cfg, zt, h, c, ph, w_cell):
    """One Lasagne time step: ``zt`` the input pre-activations of this step (batch, G*U),
    biases included; ``ph(h)`` the recurrent projection.  Returns ``(h_new, c_new)``."""
    U, cell = int(cfg["units"]), cfg["cell"]
    acts = cfg.get("activations") or {}

    def sl(z, k):
        return z[:, k * U:(k + 1) * U]

    if cell == "simple":
        return act_fn(acts.get("activation"))(act_fn(acts.get("hid"))(ph(h)) + zt), None
    zh = ph(h)
    if cell == "lstm":
        zi, zf = sl(zt, 0) + sl(zh, 0), sl(zt, 1) + sl(zh, 1)
        zc, zo = sl(zt, 2) + sl(zh, 2), sl(zt, 3) + sl(zh, 3)
        if cfg.get("peepholes"):
            zi = zi + c * w_cell[0]
            zf = zf + c * w_cell[1]
        i = act_fn(acts.get("ingate"))(zi)
        f = act_fn(acts.get("forgetgate"))(zf)
        g = act_fn(acts.get("cell"))(zc)
        c_new = f * c + i * g
        if cfg.get("peepholes") and cfg.get("outgate_peephole") == "after_nonlinearity":
            o = act_fn(acts.get("outgate"))(zo) + c_new * w_cell[2]
        elif cfg.get("peepholes"):
            o = act_fn(acts.get("outgate"))(zo + c_new * w_cell[2])
        else:
            o = act_fn(acts.get("outgate"))(zo)
        return o * act_fn(acts.get("activation"))(c_new), c_new
    r = act_fn(acts.get("resetgate"))(sl(zt, 0) + sl(zh, 0))
    u = act_fn(acts.get("updategate"))(sl(zt, 1) + sl(zh, 1))
    hu = act_fn(acts.get("hidden_update"))(sl(zt, 2) + r * sl(zh, 2))
    return (1.0 - u) * h + u * hu, None


def _initial(x, h0, c0, cfg, hid_init, cell_init):
    h = h0 if h0 is not None else _broadcast_init(x, hid_init)
    c = None
    if cfg["cell"] == "lstm":
        c = c0 if c0 is not None else _broadcast_init(x, cell_init)
    return h, c


def unrolled(x, mask, h0, c0, cfg, px, ph, w_cell, hid_init, cell_init):
    """The Lasagne step for every time step.  ``px(x)`` -> input pre-activations of all
    steps (batch, T, G*U), biases included; ``ph(h)`` -> recurrent projection (batch, G*U)."""
    T = x.shape[1]
    if T is None:
        raise ValueError("the unrolled recurrent expression needs a known sequence length")
    h, c = _initial(x, h0, c0, cfg, hid_init, cell_init)
    zx = px(x)
    outs = [None] * T
    order = range(T - 1, -1, -1) if cfg.get("backwards") else range(T)
    for t in order:
        h_new, c_new = step(cfg, zx[:, t, :], h, c, ph, w_cell)
        if mask is not None:
            m = mask[:, t:t + 1]
            h_new = h_new * m + h * (1.0 - m)
            if c is not None:
                c_new = c_new * m + c * (1.0 - m)
        h, c = h_new, c_new
        outs[t] = h
    if cfg.get("only_return_final"):
        return h
    return ops.stack(outs, axis=1)


def looped(x, mask, h0, c0, cfg, px, ph, w_cell, hid_init, cell_init):
    """The Lasagne step in a ``keras.ops.while_loop`` over the (open) time axis: a graph loop
    (SavedModel / TFLite ``While``), any sequence length.  The loop carries the step counter,
    the state (h, or [h | c] for the LSTM), the output buffer (time-major, written with
    ``slice_update``) and the time-major input pre-activations (and mask): every symbolic
    tensor the body reads is a loop variable.  ``ph`` must use constant weights."""
    U, lstm = int(cfg["units"]), cfg["cell"] == "lstm"
    h, c = _initial(x, h0, c0, cfg, hid_init, cell_init)
    zx = ops.transpose(px(x), (1, 0, 2))                       # (T, N, G*U)
    st0 = ops.concatenate([h, c], axis=-1) if lstm else h
    i0 = ops.cast(ops.sum(ops.zeros_like(x[:1, :1, :1])), "int32")
    buf0 = ops.transpose(ops.zeros_like(x[:, :, :1]) + ops.zeros_like(h)[:, None, :],
                         (1, 0, 2))                            # (T, N, U) zeros
    back = bool(cfg.get("backwards"))
    final = bool(cfg.get("only_return_final"))
    lv = [i0, st0, zx] + ([] if final else [buf0])
    if mask is not None:
        lv.append(ops.transpose(mask, (1, 0)))                 # (T, N)

    def cond(i, *rest):
        return i < ops.shape(rest[1])[0]

    def body(i, st, z, *rest):
        t = ops.shape(z)[0] - 1 - i if back else i
        hp, cp = (st[:, :U], st[:, U:]) if lstm else (st, None)
        h_new, c_new = step(cfg, ops.take(z, t, axis=0), hp, cp, ph, w_cell)
        if mask is not None:
            m = ops.expand_dims(ops.take(rest[-1], t, axis=0), -1)
            h_new = h_new * m + hp * (1.0 - m)
            if lstm:
                c_new = c_new * m + cp * (1.0 - m)
        st_new = ops.concatenate([h_new, c_new], axis=-1) if lstm else h_new
        out = [i + 1, st_new, z]
        if not final:
            out.append(ops.slice_update(rest[0], (t, 0, 0), ops.expand_dims(h_new, 0)))
        if mask is not None:
            out.append(rest[-1])
        return tuple(out)

    res = ops.while_loop(cond, body, tuple(lv))
    if final:
        return res[1][:, :U] if lstm else res[1]
    return ops.transpose(res[3], (1, 0, 2))


@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class LasagneRNN(keras.layers.Layer):
    """A Lasagne recurrent layer (see the module docstring); inputs
    ``[x (batch, time, F), mask?, hid_init?, cell_init?]``."""

    def __init__(self, cell="lstm", units=1, impl="unrolled", backwards=False,
                 only_return_final=False, mask=False, hid_init="param", cell_init="param",
                 peepholes=False, outgate_peephole="before_nonlinearity", activations=None,
                 keras_config=None, **kwargs):
        super().__init__(**kwargs)
        if cell not in GATES:
            raise ValueError(f"cell must be one of {sorted(GATES)}, got {cell!r}")
        self.cfg = {"cell": cell, "units": int(units), "impl": impl, "backwards": bool(backwards),
                    "only_return_final": bool(only_return_final), "mask": bool(mask),
                    "hid_init": hid_init, "cell_init": cell_init, "peepholes": bool(peepholes),
                    "outgate_peephole": outgate_peephole, "activations": dict(activations or {}),
                    "keras_config": dict(keras_config or {})}

    def build(self, input_shape):
        x_shape = input_shape[0] if isinstance(input_shape, (list, tuple)) and \
            isinstance(input_shape[0], (list, tuple)) else input_shape
        n_in = int(x_shape[-1])
        self._w = [self.add_weight(shape=s, initializer="zeros", name=f"w{i}")
                   for i, s in enumerate(weight_shapes(self.cfg, n_in))]

    def call(self, inputs):
        cfg = self.cfg
        x, mask, h0, c0 = _split_inputs(inputs, cfg)
        w = self._w
        if cfg["cell"] == "simple":
            W_in, b_in, W_hid, b_hid, hid_init = w
            cell_init, w_cell = None, None
            px = lambda z: act_fn(cfg["activations"].get("in"))(ops.matmul(z, W_in) + b_in)
            ph = lambda h: ops.matmul(h, W_hid) + b_hid
        else:
            W_in, W_hid, b = w[:3]
            w_cell = w[3] if cfg["cell"] == "lstm" else None
            hid_init = w[4] if cfg["cell"] == "lstm" else w[3]
            cell_init = w[5] if cfg["cell"] == "lstm" else None
            px = lambda z: ops.matmul(z, W_in) + b
            ph = lambda h: ops.matmul(h, W_hid)
        if mask is not None:
            mask = ops.cast(mask, x.dtype)
        run = looped if cfg.get("impl") == "loop" else unrolled
        return run(x, mask, h0, c0, cfg, px, ph, w_cell, hid_init, cell_init)

    def compute_output_shape(self, input_shape):
        x_shape = input_shape[0] if isinstance(input_shape, (list, tuple)) and \
            isinstance(input_shape[0], (list, tuple)) else input_shape
        if self.cfg["only_return_final"]:
            return (x_shape[0], self.cfg["units"])
        return (x_shape[0], x_shape[1], self.cfg["units"])

    def get_config(self):
        base = super().get_config()
        base.update({k: v for k, v in self.cfg.items()})
        return base


CUSTOM_LAYERS["LasagneRNN"] = LasagneRNN


def _builtin(xs, cfg, weights, name):
    """Built-in SimpleRNN / LSTM / GRU (weights already in Keras's order and signs)."""
    x, _mask, h0, c0 = _split_inputs(xs, cfg)      # the rule never gives a mask here
    cell, kc = cfg["cell"], dict(cfg.get("keras_config") or {})
    cls = {"simple": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM,
           "gru": keras.layers.GRU}[cell]
    layer = cls(name=f"{name}_{cls.__name__.lower()}", return_sequences=not cfg["only_return_final"],
                go_backwards=bool(cfg["backwards"]), **kc)
    kw = weights[-2:] if cell == "lstm" else weights[-1:]   # hid_init (, cell_init) params
    hid_init = kw[0]
    if h0 is None and np.any(hid_init):
        h0 = _broadcast_init(x, hid_init.astype(np.float32))
    states = None
    if cell == "lstm":
        cell_init = kw[1]
        if c0 is None and np.any(cell_init):
            c0 = _broadcast_init(x, cell_init.astype(np.float32))
        if h0 is not None or c0 is not None:
            states = [h0 if h0 is not None else _broadcast_init(x, np.zeros_like(hid_init)),
                      c0 if c0 is not None else _broadcast_init(x, np.zeros_like(hid_init))]
    elif h0 is not None:
        states = [h0]
    y = layer(x, initial_state=states) if states is not None else layer(x)
    layer.set_weights(keras_rnn_weights(cell, int(cfg["units"]), weights))
    if cfg["backwards"] and not cfg["only_return_final"]:
        y = ops.flip(y, axis=1)     # Keras returns the reversed order; Lasagne forward order
    return y


def keras_rnn_weights(cell: str, U: int, weights) -> list[np.ndarray]:
    """LasagneRNN weights -> the built-in layer's ``set_weights`` list.  SimpleRNN: kernel
    W_in, recurrent W_hid, bias b_in + b_hid.  LSTM: [W_in, W_hid, b] (same gate order
    i, f, c, o).  GRU(reset_after=True), gate order (z, r, h) with z = 1 - u: kernel
    [-W_u | W_r | W_h], recurrent [-W_hu | W_hr | W_hh], bias [[-b_u, b_r, b_h], 0]."""
    w = [np.asarray(a, np.float32) for a in weights]
    if cell == "simple":
        return [w[0], w[2], w[1] + w[3]]
    if cell == "lstm":
        return w[:3]

    def zrh(a):
        r, u, h = a[..., :U], a[..., U:2 * U], a[..., 2 * U:]
        return np.concatenate([-u, r, h], axis=-1)

    return [zrh(w[0]), zrh(w[1]), np.stack([zrh(w[2]), np.zeros(3 * U, np.float32)])]


@plain("LasagneRNN", inputs="list")
def _lasagne_rnn(xs, cfg, weights, name):
    """The Lasagne recurrence: built-in RNN layers where exact, else unrolled over time
    with built-in Dense layers (shared across steps) and keras.ops."""
    if cfg.get("impl") == "builtin":
        return _builtin(xs, cfg, weights, name)
    x, mask, h0, c0 = _split_inputs(xs, cfg)
    cell, U = cfg["cell"], int(cfg["units"])
    acts = cfg.get("activations") or {}
    w = [np.asarray(a, np.float32) for a in weights]
    if cell == "simple":
        W_in, b_in, W_hid, b_hid, hid_init = w
        dx = keras.layers.Dense(U, name=f"{name}_xproj")
        dh = keras.layers.Dense(U, name=f"{name}_hproj")
        fin = act_fn(acts.get("in"))
        px = lambda z: fin(dx(z))
        ph = dh
        wx, wh = [W_in, b_in], [W_hid, b_hid]
        w_cell = cell_init = None
    else:
        G = GATES[cell]
        W_in, W_hid, b = w[:3]
        w_cell = w[3] if cell == "lstm" else None
        hid_init = w[4] if cell == "lstm" else w[3]
        cell_init = w[5] if cell == "lstm" else None
        dx = keras.layers.Dense(G * U, name=f"{name}_xproj")
        dh = keras.layers.Dense(G * U, use_bias=False, name=f"{name}_hproj")
        px, ph = dx, dh
        wx, wh = [W_in, b], [W_hid]
    if mask is not None:
        mask = ops.cast(mask, x.dtype)
    if cfg.get("impl") == "loop":   # constants in the loop body (a layer called there is not tracked)
        w_h = wh[0]
        b_h = wh[1] if len(wh) > 1 else None
        y = looped(x, mask, h0, c0, cfg, px,
                   lambda h: ops.matmul(h, w_h) if b_h is None else ops.matmul(h, w_h) + b_h,
                   w_cell, hid_init, cell_init)
        dx.set_weights(wx)
        return y
    y = unrolled(x, mask, h0, c0, cfg, px, ph, w_cell, hid_init, cell_init)
    dx.set_weights(wx)
    dh.set_weights(wh)
    return y


@plain("CaffeRecurrent")
def _caffe_recurrent(xs, cfg, weights, name):
    """Caffe's LSTM / RNN unrolled over its ``steps`` time steps (the leading axis, which the
    Keras model sees as its batch axis); one input (T, N, I + 1): x_t's I features, then cont_t;
    h' = cont_t * h_{t-1}; lstm: gates i, f, o, g = W_xc x_t + b_c + W_hc h', c_t = cont_t * f *
    c_{t-1} + i * g, h_t = o * tanh(c_t); rnn: h_t = tanh(W_xh x_t + b_h + W_hh h'),
    o_t = tanh(W_ho h_t + b_o)."""
    z = xs[0]                                             # (T, N, I + 1): x_t | cont_t
    T, N, H, F = int(cfg["steps"]), int(cfg["batch"]), int(cfg["num_output"]), int(cfg["features"])
    w = [np.asarray(a, np.float32) for a in weights]
    x, cont = z[:, :, :F], z[:, :, F]
    xw = ops.add(ops.matmul(x, w[0].T), w[1])             # (T, N, G)
    h = ops.zeros((N, H), dtype=z.dtype)
    c = h
    outs = []
    for t in range(T):
        ct = ops.expand_dims(ops.take(cont, t, axis=0), -1)  # (N, 1)
        hc = ops.multiply(ct, h)
        if cfg["cell"] == "lstm":
            g = ops.add(ops.take(xw, t, axis=0), ops.matmul(hc, w[2].T))
            i, f = ops.sigmoid(g[:, :H]), ops.sigmoid(g[:, H:2 * H])
            o, gg = ops.sigmoid(g[:, 2 * H:3 * H]), ops.tanh(g[:, 3 * H:])
            c = ops.add(ops.multiply(ops.multiply(ct, f), c), ops.multiply(i, gg))
            h = ops.multiply(o, ops.tanh(c))
            outs.append(h)
        else:
            h = ops.tanh(ops.add(ops.take(xw, t, axis=0), ops.matmul(hc, w[2].T)))
            outs.append(ops.tanh(ops.add(ops.matmul(h, w[3].T), w[4])))
    return ops.stack(outs, axis=0)
