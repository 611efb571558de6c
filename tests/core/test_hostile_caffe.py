"""Hostile and broken Caffe inputs (issue 11): a bit-flipped huge weight, a forged input
size, a supported layer type refused for a setting -- one line naming the layer and the
reason, no numpy RuntimeWarning lines, no misleading "unsupported layer type"."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from migrator.core import flow
from migrator.core.errors import MigratorError, UnsupportedLayerError
from migrator.core.importers.caffe import load_caffe, parse_caffemodel
from migrator.core.reference import numpy_ref
from migrator.testing.caffe_net import NetBuilder


def net(pool_mode="max", in_hw=12) -> NetBuilder:
    nb = NetBuilder("h", seed=0)
    nb.input("data", (1, 3, in_hw, in_hw))
    nb.conv("conv1", "data", 4, 3)
    nb.relu("relu1", "conv1")
    nb.pool("pool1", "conv1", mode=pool_mode, kernel=2)
    nb.ip("fc", "pool1", 5)
    nb.softmax("prob", "fc")
    return nb


def _flip_first_conv_weight(model_path: str, out_path: str, value=3.0e38) -> None:
    """Overwrite the first conv1 weight in the file's bytes with a huge finite float32 (an
    exponent bit flip), leaving the protobuf structure intact."""
    raw = Path(model_path).read_bytes()
    w = parse_caffemodel(model_path).get("conv1")[0][0]
    i = raw.find(w.astype("<f4").tobytes()[:8])
    assert i > 0
    big = np.array([value if w.flat[0] >= 0 else -value], "<f4").tobytes()
    with open(out_path, "wb") as f:
        f.write(raw[:i] + big + raw[i + 4:])


def test_huge_finite_weight_is_one_error_naming_the_layer_without_warnings(tmp_path):
    p, m = net().save(tmp_path / "n.prototxt", tmp_path / "n.caffemodel")
    bad = str(tmp_path / "flipped.caffemodel")
    _flip_first_conv_weight(m, bad)
    g = load_caffe(p, bad)     # finite: loads (a huge value is not NaN/Inf)
    assert np.abs(g.node("conv1").params["weight"].value).max() > 1e38
    x = np.random.default_rng(0).normal(size=(1, 3, 12, 12)).astype(np.float32)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        with pytest.raises(MigratorError) as ei:
            for _ in numpy_ref.run(g, x):
                pass
    msg = str(ei.value)
    assert "layer 'conv1'" in msg and "overflows" in msg and "3e+38" in msg and "\n" not in msg
    assert os.path.basename(bad) in msg
    assert not [r for r in rec if issubclass(r.category, RuntimeWarning)], [str(r.message) for r in rec]


def test_overflow_free_layers_still_run(tmp_path):
    p, m = net().save(tmp_path / "n.prototxt", tmp_path / "n.caffemodel")
    g = load_caffe(p, m)
    x = np.random.default_rng(0).normal(size=(1, 3, 12, 12)).astype(np.float32)
    outs = dict(numpy_ref.run(g, x))
    assert np.isfinite(outs["prob"][0]).all()


@pytest.mark.parametrize("dim", [-1, 0])
def test_non_positive_input_size_is_refused_at_the_input(tmp_path, dim):
    """Found by fuzzing: 'dim: -1' left every size unknown and surfaced as "unsupported
    layer type: 'pool1' (type Pooling)" for a supported layer."""
    p, m = net().save(tmp_path / "n.prototxt", tmp_path / "n.caffemodel")
    Path(p).write_text(Path(p).read_text().replace("dim: 12", f"dim: {dim}", 1))
    with pytest.raises(MigratorError) as ei:
        load_caffe(p, m)
    msg = str(ei.value)
    assert "layer 'data'" in msg and "not a positive size" in msg and "pool1" not in msg


def test_forged_huge_input_size_is_refused_before_allocating(tmp_path):
    nb = NetBuilder("big", seed=0)
    nb.input("data", (1, 1, 100000, 100000))
    nb.relu("relu1", "data")
    p, m = nb.save(tmp_path / "b.prototxt", tmp_path / "b.caffemodel")
    with pytest.raises(MigratorError) as ei:
        load_caffe(p, m)
    assert "layer 'data'" in str(ei.value) and "1e+10 values" in str(ei.value)


def test_supported_type_refused_for_a_setting_says_why():
    err = UnsupportedLayerError([("pool1", "Pooling: stochastic pooling")], file="n.prototxt")
    assert str(err) == "n.prototxt: layer 'pool1': cannot convert: 'pool1' (type Pooling: stochastic pooling)"
    plain = UnsupportedLayerError([("odd", "Odd")], file="n.prototxt")
    assert "unsupported layer type: 'odd' (type Odd)" in str(plain)


def test_cli_names_the_reason_for_a_supported_type(tmp_path):
    p, m = net(pool_mode="stochastic").save(tmp_path / "s.prototxt", tmp_path / "s.caffemodel")
    plan = flow.plan_model(load_caffe(p, m))
    assert [u.source for u in plan.unsupported] == ["pool1"]
    r = subprocess.run([sys.executable, "-m", "migrator", "convert", p, m, "-o",
                        str(tmp_path / "o.keras")], capture_output=True, text=True, timeout=300,
                       check=False)
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert "'pool1' (type Pooling: " in line and "stochastic" in line.lower()
    assert "cannot convert" in line and "unsupported layer type" not in line
    assert not (tmp_path / "o.keras").exists()


def test_cli_prints_warnings_in_one_line_once():
    from migrator import cli
    saved = warnings.showwarning
    try:
        import contextlib
        import io
        buf = io.StringIO()
        with contextlib.redirect_stderr(buf), warnings.catch_warnings():
            cli._one_line_warnings()
            warnings.simplefilter("always")
            for _ in range(3):
                with np.errstate(over="warn"):
                    np.float32(3e38) * np.float32(10)
        lines = buf.getvalue().splitlines()
        assert len(lines) == 1 and lines[0].startswith("migrator: warning: overflow"), lines
        assert "RuntimeWarning" in lines[0]
    finally:
        warnings.showwarning = saved
