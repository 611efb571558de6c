"""`migrator inspect|convert|compare` on Lasagne models exactly as on Caffe ones."""
import json
import os
import pickle

import numpy as np
import pytest

from migrator.testing.lasagne_models import CUSTOM_SCRIPT, RESNET_SCRIPT, write_model, write_script

from .test_cli import one_line_error, run


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    d = tmp_path_factory.mktemp("lasagne_resnet")
    b, p, _ = write_model(d, RESNET_SCRIPT, flavour="npz", seed=3)
    return d, b, p


def test_inspect_uses_lasagne_names(resnet):
    d, b, p = resnet
    r = run("inspect", b, p, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    names = [L["source"] for L in info["layers"]]
    # batch_norm() stacks <name>_bn and <name>_bn_nonlin on the conv
    assert {"conv1", "conv1_bn", "conv1_bn_nonlin", "res2a_sum", "prob"} <= set(names)
    assert info["framework"] == "lasagne"


def test_convert_and_report(resnet):
    d, b, p = resnet
    out = d / "resnet.keras"
    r = run("convert", b, p, "-o", out)
    assert r.returncode == 0, r.stdout + r.stderr
    rep = json.loads((d / "resnet.report.json").read_text())
    L = {e["source"]: e for e in rep["layers"]}
    assert L["conv1_bn"]["keras"] and L["conv1_bn"]["status"] == "pass"
    rows = {row["key"]: row for row in L["conv1_bn"]["mapping"]}
    assert "inv_std" in rows["moving_variance"]["formula"]
    assert L["fc"]["status"] == "pass" and L["prob"]["layout"] == "NC"


def test_compare_with_mapping_override_fails_when_wrong(resnet, tmp_path):
    d, b, p = resnet
    m = tmp_path / "map.json"
    m.write_text(json.dumps({"version": 1, "kinds": {"BatchNormLayer": {"epsilon": 0.3, "variance": "raw"}}}))
    r = run("compare", b, p, "--mapping", m)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "first divergent layer: conv1_bn" in r.stdout


def test_builder_exception_exit_2(tmp_path):
    b = write_script(tmp_path, "def build_model():\n    raise ValueError('no GPU today')\n")
    np.savez(tmp_path / "p.npz", np.zeros(3))
    one_line_error(run("inspect", b, tmp_path / "p.npz"), "no GPU today", "builder.py")


def test_missing_builder_function_exit_2(resnet):
    d, b, p = resnet
    one_line_error(run("inspect", b, p, "--builder-function", "make_net"), "make_net")


def test_param_mismatch_exit_2(resnet, tmp_path):
    d, b, p = resnet
    vals = list(np.load(p).values())
    np.savez(tmp_path / "short.npz", *vals[:-1])
    one_line_error(run("inspect", b, tmp_path / "short.npz"), "short.npz")


def test_unsupported_custom_layer_named(tmp_path):
    b, p, _ = write_model(tmp_path, CUSTOM_SCRIPT, flavour="pkl_list")
    r = run("convert", b, p, "-o", tmp_path / "x.keras")
    line = one_line_error(r, "unsupported")
    assert not (tmp_path / "x.keras").exists()
    assert "MyScale" in line and "myscale" in line


def test_malicious_pickle_refused_and_not_executed(resnet, tmp_path):
    d, b, _ = resnet
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    bad = tmp_path / "evil.pkl"
    with open(bad, "wb") as f:
        pickle.dump([Evil()], f)
    r = run("inspect", b, bad)
    one_line_error(r, "evil.pkl")
    assert not marker.exists()


def test_unreadable_params(resnet, tmp_path):
    d, b, _ = resnet
    one_line_error(run("inspect", b, tmp_path / "nope.pkl"), "nope.pkl")
    os.makedirs(tmp_path / "dir.npz")
    one_line_error(run("inspect", b, tmp_path / "dir.npz"), "dir.npz")
