"""Memory savings of a one-shot build keep every value the same (issue 12, item 4).

* layers are built with their variables created from the plan's weights (no random init +
  set_weights): the model's weights equal the plan's arrays bit for bit, and equal those of a
  model built the old way (random init, then ``set_weights``);
* ``release_weights=True`` leaves no copy of the weights in the plan: mapping rows that held
  a weight array point to the Keras variable, and the report summarises them exactly as it
  summarised the array (shape, min/mean/max, sha256 of the float32 bytes).
"""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from migrator.core import flow, inputs
from migrator.core.keras_build import builder as B
from migrator.core.report import jsonable
from migrator.testing.caffe_net import NetBuilder


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    d = tmp_path_factory.mktemp("memrel")
    nb = NetBuilder("memrel", seed=3)
    nb.input("data", (1, 3, 15, 13))
    nb.conv("conv1", "data", 8, 3, pad=1)
    nb.bn_scale("bn1", "scale1", "conv1")
    nb.prelu("prelu1", "conv1", top="conv1")
    nb.conv("conv2", "conv1", 8, 3, pad=1, group=2)
    nb.deconv("up", "conv2", 4, 2, stride=2)
    nb.pool("pool1", "up", "max", 3, stride=2)
    nb.ip("fc", "pool1", 10)
    nb.ip("fc2", "fc", 5, bias=False)
    nb.softmax("prob", "fc2")
    return nb.save(str(d / "m.prototxt"), str(d / "m.caffemodel"))


def _plan_weights(plan):
    return {s.name: [np.array(w, copy=True) for w in s.weights]
            for s in plan.keras_layers if s.weights is not None}


def test_variables_created_from_the_plan_weights(net, monkeypatch):
    g = flow.open_model(list(net))
    plan = flow.plan_model(g)
    want = _plan_weights(plan)
    calls = []
    real = B._call_with_weights

    def spy(layer, arg, weights):
        out, preset = real(layer, arg, weights)
        calls.append((layer.name, preset))
        return out, preset

    monkeypatch.setattr(B, "_call_with_weights", spy)
    km = flow.build_model(plan)
    assert calls and all(p for _, p in calls), calls      # every weighted layer took the path
    for name, ws in want.items():
        got = km.get_layer(name).get_weights()
        assert len(got) == len(ws)
        for a, b in zip(got, ws):
            assert a.dtype == np.float32 and a.shape == b.shape
            assert np.array_equal(a, b.astype(np.float32)), name

    # the old way (random initializers, then set_weights) gives the same model
    monkeypatch.setattr(B, "_call_with_weights", lambda layer, arg, w: (layer(arg), False))
    km_old = flow.build_model(flow.plan_model(g))
    x, _ = inputs.make_input(g, inputs.InputSpec(seed=0))
    xk = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    for name in want:
        for a, b in zip(km.get_layer(name).get_weights(), km_old.get_layer(name).get_weights()):
            assert np.array_equal(a, b)
    for name, _ in calls:     # the saved configs too (initializers as the layer declares them)
        assert km.get_layer(name).get_config() == km_old.get_layer(name).get_config()
    assert np.array_equal(np.asarray(km(xk)), np.asarray(km_old(xk)))


def test_released_rows_summarised_like_the_arrays(net):
    g = flow.open_model(list(net))
    plan = flow.plan_model(g)
    before = {}
    for m in plan.mappings:
        for r in m.rows:
            if isinstance(r.value, np.ndarray) and r.value.size > 1:
                before[(m.source, r.key)] = r.value.copy()
    assert len(before) >= 6
    flow.build_model(plan, release_weights=True)
    released = 0
    for m in plan.mappings:
        for r in m.rows:
            key = (m.source, r.key)
            if key not in before:
                continue
            a = before[key]
            if isinstance(r.value, B.ReleasedWeight):
                released += 1
                assert r.value.shape == a.shape
            s = jsonable(r.value)
            # the summary from first principles
            af = a.astype(np.float64)
            assert s["shape"] == list(a.shape) and s["dtype"] == "float32"
            assert s["min"] == float(af.min()) and s["max"] == float(af.max())
            assert s["mean"] == float(af.ravel().mean()) and s["nonfinite"] == 0
            assert s["sha256"] == hashlib.sha256(np.ascontiguousarray(a, np.float32).tobytes()).hexdigest()
            if a.size <= 64:
                assert s["values"] == [float(v) for v in af.ravel()]
    assert released >= 5      # kernels and biases no longer held by the plan


def test_report_summary_of_non_finite_and_odd_arrays():
    a = np.array([[1.5, np.nan], [np.inf, -2.0]], np.float32)
    s = jsonable(a)
    assert s["nonfinite"] == 2 and s["min"] == -2.0 and s["max"] == 1.5 and s["mean"] == -0.25
    assert s["values"] == [1.5, None, None, -2.0]
    f = np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4))
    s = jsonable(f)
    assert s["sha256"] == hashlib.sha256(np.arange(12, dtype=np.float32).tobytes()).hexdigest()
    assert s["values"] == [float(v) for v in range(12)]
    assert jsonable(np.array([np.nan], np.float32))["min"] is None
