"""OpenCV DNN as a reference runtime: its own Caffe reader and kernels, independent of Migrator.

Its per-layer outputs must agree with Migrator's numpy reference (two independent implementations of
Caffe's semantics), in-place layers must be observed one by one, and models where OpenCV is known to
differ from real Caffe are refused with the reason (the deviations themselves are measured against
real Caffe in test_caffe_bridge.py)."""
from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest

from migrator.core.errors import MigratorError
from migrator.core.reference.runtimes import available_runtimes, get_runtime
from tests import proofs
from tests.legacy import make_caffe_models, nsfw_files, within_default_tolerance

pytestmark = pytest.mark.opencv


def opencv_net(d):
    """Layers OpenCV handles: in-place BN (scale factor 999.98) + Scale, grouped conv, ceil pooling
    with pad, LRN across (k=1) and within, explicit Split, Eltwise, Concat, Dropout, max pool output."""
    from migrator.testing.caffe_net import NetBuilder
    nb = NetBuilder("cvnet", seed=9)
    nb.input("data", (2, 4, 15, 13))
    nb.conv("conv1", "data", 8, 3, pad=1)
    nb.bn("bn1", "conv1", top="conv1")
    nb.scale("scale1", "conv1", bias=True, top="conv1")
    nb.relu("relu1", "conv1", top="conv1")
    nb.split("split1", "conv1", ["a", "b"])
    nb.conv("conv_g", "a", 8, 3, pad=1, group=4)
    nb.scale("scale_g", "conv_g", bias=False, top="conv_g")
    nb.eltwise("sum", ["conv_g", "b"], "sum")
    nb.pool("pool1", "sum", "max", 3, stride=2, pad=1)
    nb.lrn("norm1", "pool1", local_size=3, alpha=0.5, beta=0.75, k=1.0)
    nb.pool("pool2", "norm1", "avg", 3, stride=2, pad=1)
    nb.lrn("norm2", "pool2", local_size=3, alpha=0.4, beta=0.6, region="within")
    nb.concat("cat", ["norm2", "pool2"])
    nb.dropout("drop", "cat", top="cat")
    nb.pool("out", "cat", "max", 2, stride=2)
    x = np.random.default_rng(2).standard_normal((2, 4, 15, 13)).astype(np.float32)
    return nb.save(d / "cv.prototxt", d / "cv.caffemodel"), x


@pytest.fixture(scope="module")
def cvnet(tmp_path_factory):
    from migrator.core.importers.caffe import load_caffe
    (proto, weights), x = opencv_net(tmp_path_factory.mktemp("cv"))
    return load_caffe(proto, weights), x


def test_opencv_matches_numpy_reference_layer_by_layer(cvnet, record_proof):
    from migrator.core.reference import numpy_ref
    g, x = cvnet
    rt = get_runtime("opencv")
    assert rt.check(g) is None
    got = list(rt.run(g, x))
    assert [n for n, _ in got] == [n.name for n in g.nodes]          # all observed, graph order
    assert rt.warnings == []
    got = dict(got)
    bad = []
    for name, ref in numpy_ref.run(g, x):
        assert len(got[name]) == len(ref), name                          # Split: both copies
        for r, c in zip(ref, got[name]):
            ok, err, bound = within_default_tolerance(c, r)
            if not ok:
                bad.append((name, err, bound))
    assert not bad, bad
    record_proof(g, proofs.OPENCV, list(got))
    assert rt.describe()["versions"]["opencv"] == cv2.__version__


def test_opencv_in_place_chain_values_are_each_layers_own(cvnet):
    g, x = cvnet
    got = dict(get_runtime("opencv").run(g, x))
    conv, bn, scale, relu = (got[n][0] for n in ("conv1", "bn1", "scale1", "relu1"))
    assert conv.min() < 0 and relu.min() >= 0
    assert not np.allclose(conv, bn) and not np.allclose(bn, scale)
    np.testing.assert_array_equal(relu, np.maximum(scale, 0))


def test_opencv_progress_and_cancel(cvnet):
    from migrator.core.errors import Cancelled
    g, x = cvnet
    seen = []
    list(get_runtime("opencv").run(g, x, progress=lambda f, m: seen.append(f)))
    assert seen and seen == sorted(seen) and seen[-1] == pytest.approx(1.0)
    with pytest.raises(Cancelled):
        list(get_runtime("opencv").run(g, x, cancel=lambda: True))


def test_known_deviations_are_refused(tmp_path):
    from migrator.core.importers.caffe import load_caffe
    from migrator.testing.caffe_net import NetBuilder
    models = make_caffe_models(tmp_path)
    g = load_caffe(*models["bn_pool_lrn"][:2])
    assert "LRN k" in get_runtime("opencv").check(g)
    g = load_caffe(*models["branches"][:2])
    assert "Bias" in get_runtime("opencv").check(g)
    assert get_runtime("opencv").check(load_caffe(*models["v1"][:2])) is None

    nb = NetBuilder("t", seed=1)
    nb.input("data", (1, 3, 4, 4))
    nb.ip("fc", "data", 5, transpose=True)
    g = load_caffe(*nb.save(tmp_path / "t.prototxt", tmp_path / "t.caffemodel"))
    assert "transpose" in get_runtime("opencv").check(g)

    nb = NetBuilder("p", seed=1)
    nb.input("data", (1, 3, 8, 8))
    nb.pool("pool", "data", "max", 2, stride=2, round_mode="floor")
    g = load_caffe(*nb.save(tmp_path / "p.prototxt", tmp_path / "p.caffemodel"))
    reason = get_runtime("opencv").check(g)
    assert "round_mode" in reason
    with pytest.raises(MigratorError, match="round_mode"):
        list(get_runtime("opencv").run(g, np.zeros((1, 3, 8, 8), np.float32)))
    rows = {n: (ok, why) for n, ok, why in available_runtimes(g)}
    assert rows["opencv"] == (False, reason) and rows["builtin"][0]


def test_missing_opencv_gives_install_hint(cvnet, monkeypatch):
    g, _ = cvnet
    monkeypatch.setitem(sys.modules, "cv2", None)        # import cv2 -> ImportError
    rt = get_runtime("opencv")
    reason = rt.check(g)
    assert "pip install migrator[opencv]" in reason
    assert "error" in rt.describe()


def test_opencv_refuses_non_caffe():
    from migrator.core.ir import Graph
    assert "Caffe models only" in get_runtime("opencv").check(Graph(framework="lasagne"))


@pytest.mark.slow
def test_opencv_open_nsfw_vs_numpy_reference():
    from migrator.core.importers.caffe import load_caffe
    from migrator.core.reference import numpy_ref
    g = load_caffe(*nsfw_files())
    x = np.random.default_rng(5).uniform(-120, 135, (1, 3, 224, 224)).astype(np.float32)
    got = dict(get_runtime("opencv").run(g, x))
    assert len(got) == len(g.nodes)
    bad = [(n, e) for n, outs in numpy_ref.run(g, x)
           for ok, e, _ in [within_default_tolerance(got[n][0], outs[0])] if not ok]
    assert not bad, bad
