"""Real Caffe 1.0 (Debian 11's python3-caffe, in a chroot) through the legacy bridge.

Independent reference: Caffe's own C++ kernels.  Its layer-by-layer outputs must match Migrator's
numpy reference and the converted Keras model at the default tolerance
(max_abs <= 1e-5 + 1e-4 * max|ref| per layer), on models made by the tests and on open-nsfw's real
ResNet-50.  Skipped (with the reason) where the chroot has not been built by ``tests.setup_envs``.
"""
from __future__ import annotations

import numpy as np
import pytest

from migrator.core.errors import MigratorError
from migrator.core.reference.runtimes import get_runtime
from tests import proofs
from tests.legacy import (
    caffe_command,
    caffe_root,
    make_caffe_models,
    not_plain_passes,
    nsfw_files,
    within_default_tolerance,
)

pytestmark = [pytest.mark.caffe,
              pytest.mark.skipif(caffe_root()[0] is None, reason=caffe_root()[1] or "no caffe root")]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return make_caffe_models(tmp_path_factory.mktemp("caffe_models"))


@pytest.fixture(scope="module")
def real_runs(models):
    """name -> (graph, x, {node: outputs} from real Caffe, runtime)."""
    from migrator.core.importers.caffe import load_caffe
    out = {}
    for name, (proto, weights, x) in models.items():
        g = load_caffe(proto, weights)
        rt = get_runtime("legacy", command=caffe_command())
        got = {}
        order = []
        for node, outs in rt.run(g, x):
            got[node] = outs
            order.append(node)
        out[name] = (g, x, got, order, rt)
    return out


@pytest.mark.parametrize("name", ["bn_pool_lrn", "v1", "branches"])
def test_real_caffe_matches_numpy_reference(real_runs, name, record_proof):
    from migrator.core.reference import numpy_ref
    g, x, got, order, rt = real_runs[name]
    assert rt.describe()["versions"]["caffe"] == "1.0.0"
    assert rt.warnings == [], rt.warnings
    # every node observed, yielded in graph order
    assert order == [n.name for n in g.nodes]
    bad = []
    for node, ref_outs in numpy_ref.run(g, x):
        assert len(got[node]) == len(ref_outs), node
        for r, c in zip(ref_outs, got[node]):
            ok, err, bound = within_default_tolerance(c, r)
            if not ok:
                bad.append(f"{node}: max_abs {err:.3g} > {bound:.3g}")
    assert not bad, bad
    record_proof(g, proofs.REAL_CAFFE, order)


def test_in_place_layers_are_observed_one_by_one(real_runs):
    """conv1 -> bn1 -> scale1 -> relu1 all write blob 'conv1': each must keep its own value."""
    got = real_runs["bn_pool_lrn"][2]
    conv, bn, scale, relu = (got[n][0] for n in ("conv1", "bn1", "scale1", "relu1"))
    assert conv.min() < 0 and relu.min() >= 0                       # before / after the ReLU
    assert not np.allclose(conv, bn) and not np.allclose(bn, scale)
    np.testing.assert_array_equal(relu, np.maximum(scale, 0))
    # BatchNorm divides by the stored scale factor (999.98): normalised output ~ zero mean, unit var
    assert abs(float(bn.mean())) < 1.0 and 0.2 < float(bn.std()) < 3.0


@pytest.mark.parametrize("name", ["bn_pool_lrn", "v1", "branches"])
def test_real_caffe_matches_converted_keras(models, name, record_proof):
    from migrator.core import flow
    proto, weights, x = models[name]
    g = flow.open_model([proto, weights])
    plan = flow.plan_model(g)
    model = flow.build_model(plan)
    res = flow.compare(g, plan, model, x, runtime="legacy",
                           runtime_settings={"command": caffe_command()})
    assert res.runtime["name"] == "legacy" and res.runtime["versions"]["caffe"] == "1.0.0"
    statuses = {lr.source: lr.status for lr in res.layers}
    failed = {lr.source: (lr.max_abs, lr.note) for lr in res.layers if lr.status == "fail"}
    assert not failed, failed
    assert sum(s == "pass" for s in statuses.values()) >= len(g.nodes) // 2
    assert all(s in ("pass", "fused") for n, s in statuses.items() if g.node(n).op != "Input"), statuses
    # a few layers deep: every compared layer passes on the plain tolerance, not the float32 budget
    assert not not_plain_passes(res.layers), not_plain_passes(res.layers)
    record_proof(g, proofs.REAL_CAFFE, proofs.passed(res))


@pytest.mark.slow
def test_open_nsfw_real_caffe_vs_reference_and_keras(record_proof):
    from migrator.core import flow
    from migrator.core.reference import numpy_ref
    proto, weights = nsfw_files()
    g = flow.open_model([proto, weights])
    x = np.random.default_rng(11).uniform(-120, 135, (1, 3, 224, 224)).astype(np.float32)
    rt = get_runtime("legacy", command=caffe_command())
    ref = numpy_ref.run(g, x)
    bad = []
    n = 0
    for (name, outs), (rname, routs) in zip(rt.run(g, x), ref):
        assert name == rname
        ok, err, bound = within_default_tolerance(outs[0], routs[0])
        n += 1
        if not ok:
            bad.append((name, err, bound))
    assert n == len(g.nodes) and not bad, bad
    plan = flow.plan_model(g)
    model = flow.build_model(plan)
    res = flow.compare(g, plan, model, x, runtime="legacy", runtime_settings={"command": caffe_command()})
    failed = [(lr.source, lr.max_abs) for lr in res.layers if lr.status == "fail"]
    assert not failed, failed
    assert sum(lr.status == "pass" for lr in res.layers) > 150
    # the real ResNet-50 (176 layers, its trained weights) needs no float32 budget against real
    # Caffe 1.0: every compared layer passes on the plain tolerance (worst error about 1/40 of it)
    assert not not_plain_passes(res.layers), not_plain_passes(res.layers)
    worst = max(lr.max_abs / (lr.tolerance.atol + lr.tolerance.rtol * lr.scale) for lr in res.compared)
    print("open-nsfw worst error / plain tolerance:", worst)
    record_proof(g, proofs.REAL_CAFFE, [n.name for n in g.nodes])


def test_real_caffe_rejects_a_broken_model(models, tmp_path):
    """Caffe's own fatal error (glog CHECK -> SIGABRT) comes back as one line with Caffe's text."""
    from migrator.core.importers.caffe import load_caffe
    proto, weights, x = models["branches"]
    g = load_caffe(proto, weights)
    bad = tmp_path / "bad.caffemodel"
    bad.write_bytes(b"\x0a\x03abc\xff\xff\xff")        # not a NetParameter
    g.files = [proto, str(bad)]
    with pytest.raises(MigratorError) as ei:
        list(get_runtime("legacy", command=caffe_command()).run(g, x))
    msg = str(ei.value)
    assert "\n" not in msg and ("SIGABRT" in msg or "status" in msg or "could not load" in msg), msg


def test_probe_reports_versions():
    info = get_runtime("legacy", command=caffe_command()).probe("caffe")
    assert info["framework"] == "caffe"
    assert info["versions"]["caffe"] == "1.0.0" and info["versions"]["python"].startswith("3.9")


@pytest.mark.opencv
def test_opencv_deviations_refused_by_check_are_real(tmp_path, monkeypatch):
    """OpenCV's check() refuses LRN k != 1 and InnerProduct transpose because, run anyway, OpenCV
    disagrees with real Caffe there (and agrees on the k = 1 / no-transpose twins)."""
    from migrator.core.importers.caffe import load_caffe
    from migrator.core.reference import opencv_rt
    from migrator.testing.caffe_net import NetBuilder
    monkeypatch.setattr(opencv_rt, "known_deviation", lambda graph, proto=None: None)
    x = np.random.default_rng(1).standard_normal((1, 6, 5, 5)).astype(np.float32) * 3
    agree = {}
    for tag, build in {"lrn_k1": lambda nb: nb.lrn("L", "data", local_size=3, alpha=0.5, k=1.0),
                       "lrn_k2": lambda nb: nb.lrn("L", "data", local_size=3, alpha=0.5, k=2.0),
                       "ip": lambda nb: nb.ip("L", "data", 7),
                       "ip_transpose": lambda nb: nb.ip("L", "data", 7, transpose=True)}.items():
        nb = NetBuilder(tag, seed=2)
        nb.input("data", (1, 6, 5, 5))
        build(nb)
        g = load_caffe(*nb.save(tmp_path / f"{tag}.prototxt", tmp_path / f"{tag}.caffemodel"))
        real = dict(get_runtime("legacy", command=caffe_command()).run(g, x))["L"][0]
        cv = dict(get_runtime("opencv").run(g, x))["L"][0]
        agree[tag] = within_default_tolerance(cv, real)[0]
    assert agree == {"lrn_k1": True, "lrn_k2": False, "ip": True, "ip_transpose": False}


@pytest.mark.parametrize("k,s,p", [(2, 2, 0), (3, 2, 1), (3, 1, 1)])
def test_pooling_mask_top_matches_real_caffe(tmp_path, k, s, p):
    """A MAX Pooling with two tops (BVLC Caffe's argmax mask, what SegNet's Upsample reads):
    real Caffe's mask equals Migrator's reference and the converted Keras model's, exactly."""
    from migrator.core import flow
    from migrator.core.reference import numpy_ref
    from migrator.testing.caffe_net import NetBuilder
    nb = NetBuilder("mask", seed=2)
    nb.input("data", (2, 3, 9, 11))
    nb.conv("c1", "data", 4, 3, pad=1)
    pp = {"pool": "MAX", "kernel_size": k, "stride": s}
    if p:
        pp["pad"] = p

    def olen(L):
        o = -(-(L + 2 * p - k) // s) + 1
        return o - 1 if p > 0 and (o - 1) * s >= L + p else o
    nb.layer("pool1", "Pooling", ["c1"], ["pool1", "pool1_mask"], {"pooling_param": pp},
             out_shape=(2, 4, olen(9), olen(11)))
    nb.conv("c2", "pool1", 2, 1)
    proto, weights = nb.save(tmp_path / "m.prototxt", tmp_path / "m.caffemodel")
    x = np.random.default_rng(1).standard_normal((2, 3, 9, 11)).astype(np.float32)
    g = flow.open_model([proto, weights])
    rt = get_runtime("legacy", command=caffe_command())
    real = dict(rt.run(g, x))
    assert len(real["pool1"]) == 2
    ref = numpy_ref.run_all(g, x)["pool1"]
    np.testing.assert_array_equal(ref[1], real["pool1"][1])         # the mask, exactly
    assert real["pool1"][1].min() >= 0 and len(np.unique(real["pool1"][1])) > 10
    plan = flow.plan_model(g)
    model = flow.build_model(plan)
    res = flow.compare(g, plan, model, x, runtime="legacy",
                       runtime_settings={"command": caffe_command()})
    pool = next(lr for lr in res.layers if lr.source == "pool1")
    assert pool.status == "pass" and [o["output"] for o in pool.outputs] == [0, 1], pool.note
    assert pool.outputs[1]["max_abs"] == 0.0, pool.outputs
    assert res.passed, [(lr.source, lr.status, lr.note) for lr in res.layers]
