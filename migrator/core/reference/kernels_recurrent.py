"""Reference kernels of the Lasagne recurrent ops (``Recurrent``, ``Embedding``), written
from lasagne/layers/recurrent.py (see ``ir.OPS['Recurrent']``): a plain loop over time in
the input dtype.  Registered in :data:`.kernels.KERNELS` when :mod:`.kernels` is imported."""
from __future__ import annotations

import numpy as np

from .kernels import _err, activation, kernel


@kernel("Embedding")
def _embedding(node, xs):
    idx = np.asarray(xs[0])
    W = node.p("weight")
    if idx.dtype.kind == "f":
        if not np.all(np.isfinite(idx)):
            raise _err(node, "embedding indices are not finite")
        idx = idx.astype(np.int64)
    V = W.shape[0]
    if idx.size and (idx.min() < -V or idx.max() >= V):
        raise _err(node, f"embedding index out of range 0..{V - 1}")
    return [W[idx]]


def _mm(a, b):
    return np.matmul(a, b.astype(a.dtype, copy=False))


def _init_state(node, name, xs, pos, batch, dtype):
    if node.attrs.get(name) == "input":
        return np.asarray(xs[pos], dtype=dtype).reshape(batch, -1), pos + 1
    v = node.p(name)
    if v is None:
        raise _err(node, f"missing parameter {name}")
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
        raise _err(node, f"unknown recurrent cell {cell!r}")
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


@kernel("Conv1D", "Pool1D")
def _one_d(node, xs):
    """The 2-D kernel over (N, C, 1, L) (see ``ir.OPS['Conv1D']``), size-1 axis dropped."""
    from .kernels import KERNELS
    x = np.asarray(xs[0])
    if x.ndim != 3:
        raise _err(node, f"1-D layer input of shape {x.shape} is not (N, C, L)")
    y = KERNELS["Conv" if node.op == "Conv1D" else "Pool"](node, [x[:, :, None, :]])[0]
    return [y[:, :, 0, :]]


def _windows3d(xp, k, s, out):
    """Yield ((a, b, c), view) of every kernel offset: xp[:, :, a::sd, b::sh, c::sw] cut to out."""
    for a in range(k[0]):
        for b in range(k[1]):
            for c in range(k[2]):
                yield (a, b, c), xp[:, :, a:a + s[0] * (out[0] - 1) + 1:s[0],
                                    b:b + s[1] * (out[1] - 1) + 1:s[1],
                                    c:c + s[2] * (out[2] - 1) + 1:s[2]]


@kernel("Conv3D")
def _conv3d(node, xs):
    """y[n, o] = sum_{c, a, b, e} xpad[n, c, s*z + a, ...] * w[o, c, a, b, e] (``flip``: w
    rotated over its three spatial axes first: a true convolution)."""
    a = node.attrs
    x = np.asarray(xs[0])
    w = np.asarray(node.p("weight"), dtype=x.dtype)
    if a.get("flip"):
        w = w[:, :, ::-1, ::-1, ::-1]
    k, s, p = tuple(a["kernel"]), tuple(a["stride"]), tuple(a["pad"])
    xp = np.pad(x, [(0, 0), (0, 0)] + [(q, q) for q in p])
    out = [(L + 2 * q - kk) // ss + 1 for L, kk, ss, q in zip(x.shape[2:], k, s, p)]
    y = np.zeros((x.shape[0], w.shape[0], *out), x.dtype)
    for (i, j, m), v in _windows3d(xp, k, s, out):
        y += np.einsum("ncdhw,oc->nodhw", v, w[:, :, i, j, m], optimize=True)
    b = node.p("bias")
    if b is not None and a.get("bias", True):
        y += np.asarray(b, x.dtype).reshape(1, -1, 1, 1, 1)
    return [activation(y, a.get("activation"))]


@kernel("Pool3D")
def _pool3d(node, xs):
    a = node.attrs
    x = np.asarray(xs[0])
    k, s, p = tuple(a["kernel"]), tuple(a["stride"]), tuple(a["pad"])
    out = [(L + 2 * q - kk) // ss + 1 for L, kk, ss, q in zip(x.shape[2:], k, s, p)]
    pads = [(0, 0), (0, 0)] + [(q, q) for q in p]
    if a.get("mode", "max") == "max":
        xp = np.pad(x, pads, constant_values=-np.inf)
        y = np.full((*x.shape[:2], *out), -np.inf, x.dtype)
        for _, v in _windows3d(xp, k, s, out):
            np.maximum(y, v, out=y)
        return [y]
    xp = np.pad(x, pads)
    y = np.zeros((*x.shape[:2], *out), x.dtype)
    for _, v in _windows3d(xp, k, s, out):
        y += v
    if a.get("avg_divisor") == "exc_pad":
        cnt = np.zeros(out, x.dtype)
        ones = np.pad(np.ones(x.shape[2:], x.dtype), [(q, q) for q in p])[None, None]
        for _, v in _windows3d(ones, k, s, out):
            cnt += v[0, 0]
        return [y / cnt]
    return [y / x.dtype.type(k[0] * k[1] * k[2])]
