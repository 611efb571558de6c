"""Isolated re-checks separate a wrong mapping (root cause) from error inherited downstream."""
import numpy as np
import pytest

from migrator.core import flow
from migrator.core.mapping.overrides import Overrides
from migrator.testing.caffe_net import NetBuilder


def _net(tmp_path):
    nb = NetBuilder("iso", seed=4)
    nb.input("data", (1, 3, 11, 13))
    nb.conv("conv1", "data", 5, 3, pad=1)
    nb.bn_scale("bn1", "scale1", "conv1")
    nb.relu("relu1", "conv1", top="conv1")
    nb.conv("conv2", "conv1", 4, 3, stride=2)
    nb.pool("pool2", "conv2", "ave", 3, stride=2, pad=1)
    nb.ip("fc", "pool2", 6)
    return nb.save(tmp_path / "iso.prototxt", tmp_path / "iso.caffemodel")


def test_wrong_mapping_is_the_root_cause_and_downstream_layers_pass_in_isolation(tmp_path):
    g = flow.open_model(_net(tmp_path))
    ov = Overrides.from_dict({"version": 1, "layers": {"bn1": {"epsilon": 0.5, "variance": "raw"}}})
    plan = flow.plan_model(g, ov)
    model = flow.build_model(plan)
    x = np.random.default_rng(0).standard_normal((1, 3, 11, 13)).astype(np.float32)
    res = flow.compare(g, plan, model, x)
    assert not res.passed
    assert res.first_divergent.source == "scale1"
    assert res.root_cause.source == "scale1" and res.divergence == "mapping"
    by = {r.source: r for r in res.layers}
    # the same error as the chained run: scale1's inputs differ from the reference's only by
    # float32 rounding upstream (conv1), far below the planted error (max rel ~0.3)
    assert by["scale1"].isolated["max_abs"] == pytest.approx(by["scale1"].max_abs, rel=1e-5)
    for name in ("relu1", "conv2", "pool2", "fc"):
        assert by[name].status == "fail", name          # inherited in the chained run ...
        assert by[name].isolated["passed"], name         # ... but exact on the reference's inputs
        assert by[name].isolated["max_rel"] < 1e-5
    d = res.to_dict()
    assert d["root_cause"] == "scale1" and d["divergence"] == "mapping"


def test_no_isolation_work_when_everything_passes(tmp_path):
    g = flow.open_model(_net(tmp_path))
    plan = flow.plan_model(g)
    model = flow.build_model(plan)
    x = np.random.default_rng(1).standard_normal((1, 3, 11, 13)).astype(np.float32)
    res = flow.compare(g, plan, model, x)
    assert res.passed and res.divergence is None and "isolation_s" not in res.timings
    assert all(r.isolated is None for r in res.layers)
