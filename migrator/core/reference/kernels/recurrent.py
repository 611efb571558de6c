"""Reference kernels of the recurrent family: ``Recurrent`` (Lasagne, written from
lasagne/layers/recurrent.py: a plain loop over time in the input dtype) and
``CaffeRecurrent`` (Caffe's LSTM / RNN).
"""
from __future__ import annotations

import numpy as np

from .activation import activation
from .registry import err, kernel


@kernel("CaffeRecurrent")
def _caffe_recurrent(node, xs):
    """Caffe's unrolled LSTM / RNN (lstm_layer.cpp, lstm_unit_layer.cpp, rnn_layer.cpp)."""
    x, cont = xs[0], xs[1].astype(xs[0].dtype, copy=False)
    T, N = x.shape[:2]
    xf = x.reshape(T, N, -1)
    dt = x.dtype
    H = int(node.attrs["num_output"])
    p = {k: np.asarray(v.value, dt) for k, v in node.params.items()}

    def sig(v):
        return activation(v, {"kind": "sigmoid"})
    h = np.zeros((N, H), dt)
    outs = []
    if node.attrs["cell"] == "lstm":
        c = np.zeros((N, H), dt)
        xw = xf @ p["W_xc"].T + p["b_c"]
        for t in range(T):
            ct = cont[t][:, None]
            g = xw[t] + (ct * h) @ p["W_hc"].T
            i, f, o, gg = sig(g[:, :H]), sig(g[:, H:2 * H]), sig(g[:, 2 * H:3 * H]), np.tanh(g[:, 3 * H:])
            c = ct * f * c + i * gg
            h = o * np.tanh(c)
            outs.append(h)
    else:
        xw = xf @ p["W_xh"].T + p["b_h"]
        for t in range(T):
            h = np.tanh(xw[t] + (cont[t][:, None] * h) @ p["W_hh"].T)
            outs.append(np.tanh(h @ p["W_ho"].T + p["b_o"]))
    return [np.stack(outs).astype(dt)]


def _mm(a, b):
    return np.matmul(a, b.astype(a.dtype, copy=False))


def _init_state(node, name, xs, pos, batch, dtype):
    if node.attrs.get(name) == "input":
        return np.asarray(xs[pos], dtype=dtype).reshape(batch, -1), pos + 1
    v = node.p(name)
    if v is None:
        raise err(node, f"missing parameter {name}")
    return np.broadcast_to(v.reshape(1, -1).astype(dtype), (batch, v.size)).copy(), pos


def _p(node, name, dtype, default_shape=None):
    v = node.p(name)
    if v is None:
        return None if default_shape is None else np.zeros(default_shape, dtype)
    return np.asarray(v, dtype=dtype)


@kernel("Recurrent")
def _recurrent(node, xs):
    a = node.attrs
    x = np.asarray(xs[0])
    dt = x.dtype if x.dtype.kind == "f" else np.dtype(np.float32)
    N, T = x.shape[0], x.shape[1]
    x = x.reshape(N, T, -1).astype(dt, copy=False)
    U = int(a["units"])
    pos = 1
    mask = None
    if a.get("mask"):
        mask = np.asarray(xs[pos], dtype=dt).reshape(N, T, 1)
        pos += 1
    cell = a["cell"]
    h, pos = _init_state(node, "hid_init", xs, pos, N, dt)
    c = None
    if cell == "lstm":
        c, pos = _init_state(node, "cell_init", xs, pos, N, dt)
    steps = range(T - 1, -1, -1) if a.get("backwards") else range(T)
    out = np.zeros((N, T, U), dt)
    ga = a.get("gate_activations") or {}
    if cell == "simple":
        W_in, W_hid = _p(node, "W_in", dt), _p(node, "W_hid", dt)
        b_in, b_hid = _p(node, "b_in", dt, (U,)), _p(node, "b_hid", dt, (U,))
        pre_in = activation(_mm(x, W_in) + b_in, a.get("in_activation"))
    elif cell == "lstm":
        gates = ("ingate", "forgetgate", "cell", "outgate")
        W_in = {g: _p(node, f"W_in_to_{g}", dt) for g in gates}
        W_hid = {g: _p(node, f"W_hid_to_{g}", dt) for g in gates}
        b = {g: _p(node, f"b_{g}", dt) for g in gates}
        pre_in = {g: _mm(x, W_in[g]) + b[g] for g in gates}
        peep = bool(a.get("peepholes"))
        wc = {g: _p(node, f"W_cell_to_{g}", dt) for g in ("ingate", "forgetgate", "outgate")} \
            if peep else {}
        o_after = a.get("outgate_peephole", "before_nonlinearity") == "after_nonlinearity"
    elif cell == "gru":
        gates = ("resetgate", "updategate", "hidden_update")
        W_in = {g: _p(node, f"W_in_to_{g}", dt) for g in gates}
        W_hid = {g: _p(node, f"W_hid_to_{g}", dt) for g in gates}
        b = {g: _p(node, f"b_{g}", dt) for g in gates}
        pre_in = {g: _mm(x, W_in[g]) + b[g] for g in gates}
    else:
        raise err(node, f"unknown recurrent cell {cell!r}")
    for t in steps:
        if cell == "simple":
            h_new = activation(activation(_mm(h, W_hid) + b_hid, a.get("hid_activation"))
                               + pre_in[:, t], a.get("activation"))
        elif cell == "lstm":
            z = {g: pre_in[g][:, t] + _mm(h, W_hid[g]) for g in gates}
            if peep:
                z["ingate"] = z["ingate"] + c * wc["ingate"]
                z["forgetgate"] = z["forgetgate"] + c * wc["forgetgate"]
            i = activation(z["ingate"], ga.get("ingate"))
            f = activation(z["forgetgate"], ga.get("forgetgate"))
            g_ = activation(z["cell"], ga.get("cell"))
            c_new = f * c + i * g_
            if peep and not o_after:
                o = activation(z["outgate"] + c_new * wc["outgate"], ga.get("outgate"))
            elif peep:
                o = activation(z["outgate"], ga.get("outgate")) + c_new * wc["outgate"]
            else:
                o = activation(z["outgate"], ga.get("outgate"))
            h_new = o * activation(c_new, a.get("activation"))
        else:
            hid_in = {g: _mm(h, W_hid[g]) for g in gates}
            r = activation(pre_in["resetgate"][:, t] + hid_in["resetgate"], ga.get("resetgate"))
            u = activation(pre_in["updategate"][:, t] + hid_in["updategate"], ga.get("updategate"))
            hu = activation(pre_in["hidden_update"][:, t] + r * hid_in["hidden_update"],
                            ga.get("hidden_update"))
            h_new = (1 - u) * h + u * hu
        if mask is not None:
            m = mask[:, t]
            h_new = h_new * m + h * (1 - m)
            if cell == "lstm":
                c_new = c_new * m + c * (1 - m)
        h = h_new.astype(dt, copy=False)
        if cell == "lstm":
            c = c_new.astype(dt, copy=False)
        out[:, t] = h
    if a.get("only_return_final"):
        return [h]
    return [out]
