"""The SENet / MobileNet Caffe forks' ``Axpy`` layer (``top = a * x + y``, ``a`` (N, C, 1, 1)
or (N, C) broadcast over H and W), against a naive formula written here from the fork's
definition (``axpy_layer.cpp``: ``top[n, c, s] = a[n, c] * x[n, c, s] + y[n, c, s]``).

OpenCV DNN does not implement Axpy and BVLC Caffe has no such type, so the independent
reference is this naive formula (with naive convolution / pooling / sigmoid upstream):
the Keras model and Migrator's built-in reference kernel are each compared with it, and
``migrator compare --runtime builtin`` passes on an SE block.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from migrator.core.compare.engine import run_comparison
from migrator.core.errors import MigratorError
from migrator.core.importers.caffe import load_caffe
from migrator.core.ir import Node
from migrator.core.keras_build.builder import build_keras
from migrator.core.mapping.planner import make_plan
from migrator.core.reference import numpy_ref
from migrator.core.reference.kernels import KERNELS
from migrator.testing.caffe_net import NetBuilder
from tests.core.naive_ops import conv2d as naive_conv2d

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
F32 = np.float32
SHAPE = (2, 6, 7, 9)


def naive_axpy(a, x, y):
    """The fork's loop: one scalar a[n, c] per (sample, channel) plane."""
    out = np.empty(np.broadcast_shapes(x.shape, y.shape), np.float64)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            out[n, c] = float(a.reshape(a.shape[0], a.shape[1], -1)[n, c, 0]) * x[n, c] + y[n, c]
    return out


def se_net(tmp_path, a_rank: int):
    """A tiny SE block: x = conv(data); a = sigmoid(1x1 conv (or InnerProduct) of the global
    average of x); out = Axpy(a, x, data)."""
    nb = NetBuilder("se", seed=4)
    nb.input("data", SHAPE)
    nb.conv("x", "data", SHAPE[1], 3, pad=1)
    nb.pool("gap", "x", "ave", global_pooling=True)
    if a_rank == 4:
        nb.conv("fc", "gap", SHAPE[1], 1)
    else:
        nb.ip("fc", "gap", SHAPE[1])
    nb.sigmoid("a", "fc", top="a")
    nb.layer("ax", "Axpy", ["a", "x", "data"], ["ax"], out_shape=SHAPE)
    p, m = nb.save(tmp_path / "se.prototxt", tmp_path / "se.caffemodel")
    return nb, p, m


def naive_se(nb: NetBuilder, data: np.ndarray, a_rank: int) -> np.ndarray:
    wx, bx = nb.weights["x"]
    x = naive_conv2d(data, wx, bx, pad=(1, 1))
    gap = x.mean(axis=(2, 3))                                   # (N, C)
    wf, bf = (np.asarray(w, np.float64) for w in nb.weights["fc"])
    z = gap @ wf.reshape(wf.shape[0], -1).T + bf                # 1x1 conv == InnerProduct here
    a = 1.0 / (1.0 + np.exp(-z))
    if a_rank == 4:
        a = a[:, :, None, None]
    return naive_axpy(a, x, np.asarray(data, np.float64))


def _data(seed=0):
    return np.random.default_rng(seed).standard_normal(SHAPE).astype(F32)


@pytest.mark.parametrize("a_rank", [4, 2])
def test_axpy_keras_and_reference_vs_naive(tmp_path, a_rank):
    nb, p, m = se_net(tmp_path, a_rank)
    g = load_caffe(str(p), str(m))
    node = g.nodes[-1]
    assert (node.op, node.source_type, node.out_shape) == ("Axpy", "Axpy", SHAPE)
    data = _data()
    want = naive_se(nb, data, a_rank)

    # the built-in reference (Migrator's kernel) against the naive formula
    got = numpy_ref.run_all(g, data)["ax"][0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

    # the Keras model (built-in layers only) against the naive formula
    plan = make_plan(g)
    assert not plan.unsupported, [(u.source, u.error) for u in plan.unsupported]
    classes = [s.class_name for s in plan.mapping("ax").layers]
    assert classes[-2:] == ["Multiply", "Add"], classes
    model = build_keras(plan)
    k = np.transpose(np.asarray(model(np.transpose(data, (0, 2, 3, 1)))), (0, 3, 1, 2))
    np.testing.assert_allclose(k, want, rtol=1e-5, atol=1e-5)

    # and the layer-by-layer comparison passes with the built-in runtime
    res = run_comparison(g, plan, model, data, runtime="builtin")
    assert res.passed, [(r.source, r.max_abs, r.max_rel) for r in res.layers]


def test_axpy_kernel_vs_naive():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 5, 2)).astype(F32)
    y = rng.standard_normal(x.shape).astype(F32)
    for a in (rng.standard_normal((3, 4, 1, 1)).astype(F32), rng.standard_normal((3, 4)).astype(F32)):
        node = Node("ax", "Axpy", ["a", "x", "y"])
        xs = [a.copy(), x.copy(), y.copy()]
        got = KERNELS["Axpy"](node, xs)[0]
        np.testing.assert_allclose(got, naive_axpy(a, x, y), rtol=1e-6, atol=1e-6)
        for before, after in zip((a, x, y), xs):          # inputs are not modified
            np.testing.assert_array_equal(before, after)


def test_migrator_compare_builtin(tmp_path):
    _, p, m = se_net(tmp_path, 4)
    np.save(tmp_path / "x.npy", _data(2))
    rep = tmp_path / "cmp.json"
    # in a subprocess, as a user runs it (an in-process main() would set the process's
    # environment and signal handlers for every later test)
    r = subprocess.run([sys.executable, "-m", "migrator", "compare", str(p), str(m), "--input",
                        str(tmp_path / "x.npy"), "--runtime", "builtin", "--report", str(rep)],
                       capture_output=True, text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO),
                       timeout=600, check=False)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    v = json.loads(rep.read_text())["verification"]
    assert v["passed"] and v["runtime"]["name"] == "builtin"
    layer = {entry["source"]: entry for entry in json.loads(rep.read_text())["layers"]}["ax"]
    assert layer["source_type"] == "Axpy" and layer["status"] == "pass", layer["status"]


def test_axpy_shape_mismatch_is_a_one_line_error(tmp_path):
    nb = NetBuilder("bad")
    nb.input("data", SHAPE)
    nb.pool("gap", "data", "ave", global_pooling=True)
    nb.pool("half", "data", "max", 2)
    nb.layer("ax", "Axpy", ["gap", "data", "half"], ["ax"], out_shape=SHAPE)
    p = nb.save(tmp_path / "bad.prototxt")[0]
    with pytest.raises(MigratorError, match="must have the same shape") as e:
        load_caffe(str(p))
    assert e.value.layer == "ax"
