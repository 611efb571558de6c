"""Every output of a multi-output layer is compared: a Caffe Slice with three tops, the last of
which feeds nothing, must fail when only that top is wrong (before, only output 0 was checked)."""
from __future__ import annotations

import numpy as np

from migrator.core import flow
from migrator.core.compare.engine import run_comparison
from migrator.testing.caffe_net import NetBuilder


def _net(tmp_path):
    nb = NetBuilder("slices", seed=3)
    nb.input("data", (1, 6, 5, 4))
    nb.conv("conv", "data", 6, 3, pad=1)
    nb.slice("sl", "conv", ["a", "b", "c"])           # c feeds nothing: an output of the network
    nb.relu("relu_a", "a")
    return flow.open_model(nb.save(tmp_path / "s.prototxt", tmp_path / "s.caffemodel"))


def _compare(g, plant=False):
    plan = flow.plan_model(g)
    if plant:   # the third top's Keras slice one channel off: same shape, wrong values
        spec = next(s for s in plan.mapping("sl").layers if s.output == g.node("sl").outputs[2])
        spec.config["start"], spec.config["stop"] = spec.config["start"] - 1, spec.config["stop"] - 1
    model = flow.build_model(plan)
    x = np.random.default_rng(0).normal(size=(1, 6, 5, 4)).astype(np.float32)
    return run_comparison(g, plan, model, x)


def test_every_top_is_compared(tmp_path):
    g = _net(tmp_path)
    res = _compare(g)
    assert res.passed
    sl = res.layer("sl")
    assert [o["output"] for o in sl.outputs] == [0, 1, 2] and all(o["passed"] for o in sl.outputs)
    assert res.to_dict()["counts"]["fail"] == 0
    d = sl.to_dict()
    assert len(d["outputs"]) == 3


def test_a_wrong_unused_top_fails(tmp_path):
    g = _net(tmp_path)
    res = _compare(g, plant=True)
    assert not res.passed
    sl = res.layer("sl")
    assert sl.status == "fail" and "output 2" in sl.note, sl.note
    assert [o["passed"] for o in sl.outputs] == [True, True, False]
    assert res.first_divergent.source == "sl"
