"""Document and undoable commands (no Qt): edits change the overrides and re-plan, undo
restores them, staleness follows the mapping, counterparts follow the plan."""
from __future__ import annotations

import numpy as np
import pytest

from migrator.core import document as D
from migrator.core.commands import ApplyToAllBatchNorm, ResetOverride, SetOverride
from migrator.core.errors import MigratorError
from migrator.core.inputs import InputSpec
from migrator.core.mapping.overrides import Overrides


@pytest.fixture(scope="module")
def caffe_demo(tmp_path_factory):
    from resources.make_demos import ensure_demos
    return ensure_demos(tmp_path_factory.mktemp("demo"))["caffe"]


@pytest.fixture(scope="module")
def loaded(caffe_demo):
    return D.load_model(caffe_demo)


@pytest.fixture
def doc(loaded):
    d = D.Document()
    d.set_opened(loaded["paths"], loaded["graph"], loaded["plan"], Overrides(), loaded["model"])
    return d


def _eps(doc, name):
    return doc.mapping(name).options["epsilon"]


def test_counterparts_follow_the_plan(doc):
    # one Keras BatchNormalization computes the Caffe BatchNorm + Scale pair
    assert doc.keras_for_source("bn1") == ["bn1"]
    assert doc.keras_for_source("scale1") == ["bn1"]
    assert doc.sources_for_keras("bn1") == ["bn1", "scale1"]
    assert doc.group_of("scale2") == ["bn2", "scale2"]
    assert set(doc.keras_for_source("conv1")) == {"conv1_pad", "conv1"}
    assert doc.batchnorm_sources() == ["bn1", "bn2", "bn3"]
    assert doc.next_batchnorm(None) == "bn1"
    assert doc.next_batchnorm("bn1") == "bn2"
    assert doc.next_batchnorm("relu3") == "bn1"     # wraps around
    info = {r["name"]: r for r in doc.keras_layer_info()}
    assert info["bn1"]["class_name"] == "BatchNormalization"
    assert info["bn1"]["shape"] == (None, 48, 48, 16)
    assert info["bn1"]["param_count"] == 4 * 16


def test_set_reset_undo_redo(doc):
    events = []
    doc.subscribe("plan", lambda d, **k: events.append("plan"))
    default = _eps(doc, "bn1")
    c = SetOverride(doc, "epsilon", 1e-3, layer="bn1")
    c.do()
    assert _eps(doc, "bn1") == pytest.approx(1e-3) and _eps(doc, "bn2") == pytest.approx(default)
    assert doc.overrides.to_dict()["layers"] == {"bn1": {"epsilon": 1e-3}}
    assert events == ["plan"]
    assert doc.overrides_modified
    c.undo()
    assert _eps(doc, "bn1") == pytest.approx(default)
    assert not doc.overrides and not doc.overrides_modified
    c.redo()
    assert _eps(doc, "bn1") == pytest.approx(1e-3)
    r = ResetOverride(doc, "epsilon", layer="bn1")
    r.do()
    assert _eps(doc, "bn1") == pytest.approx(default)
    r.undo()
    assert _eps(doc, "bn1") == pytest.approx(1e-3)


def test_invalid_values_never_reach_the_overrides(doc):
    with pytest.raises(MigratorError):
        SetOverride(doc, "epsilon", "abc", layer="bn1")
    with pytest.raises(MigratorError):
        SetOverride(doc, "variance", "nonsense", layer="bn1")
    with pytest.raises(MigratorError):
        SetOverride(doc, "no_such_option", 1, layer="bn1")
    with pytest.raises(MigratorError):
        SetOverride(doc, "epsilon", 1e-3, layer="no_such_layer")
    assert not doc.overrides


def test_apply_to_all_batchnorm_replaces_layer_values_and_undoes(doc):
    SetOverride(doc, "epsilon", 1e-3, layer="bn2").do()
    c = ApplyToAllBatchNorm(doc, "epsilon", 2e-4)
    c.do()
    assert [_eps(doc, b) for b in ("bn1", "bn2", "bn3")] == pytest.approx([2e-4] * 3)
    assert doc.overrides.to_dict() == {"version": 1, "layers": {}, "kinds": {"BatchNorm": {"epsilon": 2e-4}}}
    c.undo()
    assert doc.overrides.to_dict()["layers"] == {"bn2": {"epsilon": 1e-3}}
    assert doc.overrides.to_dict()["kinds"] == {}


def test_staleness_follows_the_mapping_and_a_wrong_mapping_fails(doc):
    out = D.compare_model(doc.graph, doc.plan, doc.model, InputSpec(seed=1))
    doc.set_result(out["result"], out["fingerprint"], model=out["model"], model_fp=out["fingerprint"],
                   x=out["x"], input_desc=out["input_desc"])
    assert out["result"].passed and not doc.stale and doc.can_export_cleanly
    assert doc.export_problem() is None
    stale_events = []
    doc.subscribe("stale", lambda d, stale: stale_events.append(stale))
    c = SetOverride(doc, "variance", "raw", layer="bn2")
    c.do()
    c2 = SetOverride(doc, "epsilon", 0.5, layer="bn2")
    c2.do()
    assert doc.stale and stale_events == [True]
    assert "stale" in doc.export_problem()
    # the Keras epsilon no longer matches Caffe's: the comparison (against the numpy
    # reference of Caffe's semantics) fails from the fused bn2/scale2 on, not before
    bad = D.compare_model(doc.graph, doc.plan, None, InputSpec(seed=1))
    r = bad["result"]
    assert not r.passed
    assert r.first_divergent.source in ("bn2", "scale2")
    assert r.layer("conv2").status == "pass"
    doc.set_result(r, bad["fingerprint"], model=bad["model"], model_fp=bad["fingerprint"])
    assert not doc.stale and "failed" in doc.export_problem()
    # undoing back to the passing mapping: the failing result is now the stale one
    c2.undo()
    c.undo()
    assert doc.stale


def test_channel_values_match_the_reference(doc):
    out = D.compare_model(doc.graph, doc.plan, doc.model, InputSpec(seed=2))
    doc.set_result(out["result"], out["fingerprint"], model=out["model"], model_fp=out["fingerprint"],
                   x=out["x"], input_desc=out["input_desc"])
    cv = doc.channel_values("conv1", 5)
    assert cv.reference.shape == (48, 48)
    # independent check: the convolution's channel 5 by direct cross-correlation
    node = doc.graph.node("conv1")
    w, b = node.p("weight"), node.p("bias")
    x = np.pad(out["x"][0].astype(np.float64), ((0, 0), (1, 1), (1, 1)))
    direct = np.zeros((48, 48))
    for ci in range(3):
        for i in range(3):
            for j in range(3):
                direct += w[5, ci, i, j] * x[ci, i:i + 48, j:j + 48]
    direct += b[5]
    np.testing.assert_allclose(cv.reference, direct, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cv.keras, direct, rtol=1e-4, atol=1e-4)
    # a fused BatchNorm shows its Scale partner's output (what its Keras layer computes)
    cvb = doc.channel_values("bn1", 0)
    cvs = doc.channel_values("scale1", 0)
    np.testing.assert_array_equal(cvb.reference, cvs.reference)
    with pytest.raises(MigratorError):
        doc.channel_values("conv1", 999)


def test_async_executor_drops_superseded_plans(doc):
    pending = []
    doc.executor = lambda work, done, failed: pending.append((work, done))
    SetOverride(doc, "epsilon", 1e-3, layer="bn1").do()
    SetOverride(doc, "epsilon", 2e-3, layer="bn1").do()
    assert doc.planning
    # the first (superseded) plan arrives last: it must not win
    w2, d2 = pending[1]
    d2(w2())
    w1, d1 = pending[0]
    d1(w1())
    assert _eps(doc, "bn1") == pytest.approx(2e-3)
    assert not doc.planning


def test_export_without_a_current_comparison_needs_consent(doc, tmp_path):
    out = str(tmp_path / "m.keras")
    with pytest.raises(MigratorError):
        D.export_model(doc.graph, doc.plan, doc.overrides, doc.model, None, out,
                       report_path=str(tmp_path / "m.report.json"))
    assert not (tmp_path / "m.keras").exists()
    files = D.export_model(doc.graph, doc.plan, doc.overrides, None, None, out,
                           report_path=str(tmp_path / "m.report.json"), accept_mismatch=True)
    assert out in files and (tmp_path / "m.report.json").exists()
    # never overwrites without force
    with pytest.raises(MigratorError):
        D.export_model(doc.graph, doc.plan, doc.overrides, doc.model, None, out, accept_mismatch=True)
