"""Plugins (migrator/core/plugins.py): a layer type Migrator does not know, added by a user's
Python file.  The example plugin docs/examples/priorbox_plugin.py (SSD's PriorBox) converts a
prototxt that uses it; its output is checked against a naive formula written HERE from the
SSD fork's prior_box_layer.cpp (not the plugin's kernel), the Keras model too, and the one
flow's comparison passes.  Plugin errors are one line naming the plugin file.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from migrator.core.errors import MigratorError
from migrator.core.flow import Flow, FlowOptions, open_model
from migrator.core.plugins import load_plugin, parse_message, unload_plugin
from migrator.testing.caffe_net import NetBuilder

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PRIORBOX = os.path.join(REPO, "docs", "examples", "priorbox_plugin.py")

PRIOR_LAYERS = '''
layer {
  name: "p1" type: "PriorBox" bottom: "conv1" bottom: "data" top: "p1"
  prior_box_param { min_size: 8.0 max_size: 16.0 aspect_ratio: 2.0 flip: true clip: false
                    variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 }
}
layer {
  name: "p2" type: "PriorBox" bottom: "conv2" bottom: "data" top: "p2"
  prior_box_param { min_size: 12.0 aspect_ratio: 2.0 aspect_ratio: 3.0 aspect_ratio: 2.0
                    flip: true clip: true variance: 0.1 step: 8 offset: 0.25 }
}
layer { name: "priors" type: "Concat" bottom: "p1" bottom: "p2" top: "priors"
        concat_param { axis: 2 } }
'''


def naive_priorbox(fh, fw, ih, iw, mins, maxs, ars, flip, clip, var, step=0.0, offset=0.5):
    """SSD prior_box_layer.cpp, written out: per cell (row-major), per min size: the square
    min box, the sqrt(min*max) box, then one box per extra ratio (1 first, duplicates skipped,
    1/ar after ar when flip); xmin, ymin, xmax, ymax over the image size."""
    ratios = [1.0]
    for a in ars:
        if min(abs(a - r) for r in ratios) < 1e-6:
            continue
        ratios += [a, 1.0 / a] if flip else [a]
    sh = step or ih / fh
    sw = step or iw / fw
    rows = []
    for y in range(fh):
        for x in range(fw):
            cx, cy = (x + offset) * sw, (y + offset) * sh
            for k, m in enumerate(mins):
                whs = [(m, m)] + ([(math.sqrt(m * maxs[k]),) * 2] if maxs else [])
                whs += [(m * math.sqrt(r), m / math.sqrt(r)) for r in ratios[1:]]
                for bw, bh in whs:
                    rows.append([(cx - bw / 2) / iw, (cy - bh / 2) / ih,
                                 (cx + bw / 2) / iw, (cy + bh / 2) / ih])
    boxes = np.array(rows)
    if clip:
        boxes = boxes.clip(0, 1)
    v = np.broadcast_to(np.array(var if len(var) == 4 else var * 4), boxes.shape)
    return np.stack([boxes.ravel(), v.ravel()])[None]


@pytest.fixture
def priorbox():
    load_plugin(PRIORBOX)
    yield PRIORBOX
    unload_plugin(PRIORBOX)


@pytest.fixture(scope="module")
def ssd_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("ssd")
    nb = NetBuilder("ssd_tiny", seed=2)
    nb.input("data", (1, 3, 32, 24))
    nb.conv("conv1", "data", 4, 3, pad=1, stride=4)          # 8 x 6
    nb.relu("relu1", "conv1", top="conv1")
    nb.conv("conv2", "conv1", 4, 3, pad=1, stride=2)         # 4 x 3
    proto, model = nb.save(d / "ssd.prototxt", d / "ssd.caffemodel")
    with open(proto, "a") as f:
        f.write(PRIOR_LAYERS)
    return str(proto), str(model)


def _want():
    p1 = naive_priorbox(8, 6, 32, 24, [8.0], [16.0], [2.0], True, False, [0.1, 0.1, 0.2, 0.2])
    p2 = naive_priorbox(4, 3, 32, 24, [12.0], [], [2.0, 3.0, 2.0], True, True, [0.1],
                        step=8, offset=0.25)
    return p1, p2


def test_without_the_plugin_the_type_stops_the_import(ssd_files):
    with pytest.raises(MigratorError) as ei:
        open_model(list(ssd_files))
    assert "prior_box_param" in str(ei.value) and "\n" not in str(ei.value)


def test_priorbox_plugin_matches_the_naive_formula_and_passes_the_comparison(ssd_files, priorbox):
    from migrator.core.keras_build.builder import build_keras
    from migrator.core.mapping.planner import make_plan
    from migrator.core.reference import numpy_ref
    from tests.lasagne import keras_outputs_by_source

    g = open_model(list(ssd_files))
    assert [n.op for n in g.nodes if n.name in ("p1", "p2")] == ["PriorBox", "PriorBox"]
    p1, p2 = _want()
    assert p1.shape == (1, 2, 8 * 6 * 4 * 4) and p2.shape == (1, 2, 4 * 3 * 5 * 4)
    x = np.random.default_rng(0).normal(size=(1, 3, 32, 24)).astype(np.float32)
    ref = {k: v[0] for k, v in numpy_ref.run_all(g, x).items()}
    for name, want in (("p1", p1), ("p2", p2), ("priors", np.concatenate([p1, p2], axis=2))):
        assert ref[name].shape == want.shape, name
        assert np.abs(ref[name] - want).max() < 1e-6, name
    plan = make_plan(g)
    model = build_keras(plan)
    keras_out = keras_outputs_by_source(model, plan, x, ref)
    for name, want in (("p1", p1), ("p2", p2)):
        assert np.abs(keras_out[name] - want).max() < 1e-6, name
    res = Flow(FlowOptions(paths=list(ssd_files))).compare()
    assert res.passed


@pytest.mark.slow
def test_the_cli_converts_with_plugin_and_the_model_loads_without_it(ssd_files, tmp_path):
    out = tmp_path / "ssd.keras"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run([sys.executable, "-m", "migrator", "convert", *ssd_files, "-o", str(out),
                        "--plugin", PRIORBOX], capture_output=True, text=True, timeout=600,
                       env=env, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    want = np.concatenate(_want(), axis=2)           # (1, 2, 1008): the naive formula
    np.save(tmp_path / "want.npy", want)
    code = textwrap.dedent(f'''
        import numpy as np, keras
        m = keras.saving.load_model({str(out)!r}, safe_mode=True)   # no plugin, no Migrator
        y = np.asarray(m(np.zeros((1, 32, 24, 3), np.float32)))
        want = np.load({str(tmp_path / "want.npy")!r})
        print(y.shape, float(np.abs(np.transpose(y, (0, 2, 1)) - want).max()))
    ''')
    r2 = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                        env=env, cwd=str(tmp_path))
    assert r2.returncode == 0, r2.stderr[-2000:]
    shape, err = r2.stdout.strip().rsplit(" ", 1)
    assert shape == "(1, 1008, 2)" and float(err) < 1e-6, r2.stdout


def _plugin(tmp_path, name, body):
    p = tmp_path / name
    p.write_text(textwrap.dedent(body))
    return str(p)


def test_a_duplicate_registration_names_the_plugin_file(tmp_path, priorbox):
    dup = _plugin(tmp_path, "dup.py", f'''
        import runpy
        ns = runpy.run_path({PRIORBOX!r})
        register = ns["register"]
    ''')
    with pytest.raises(MigratorError) as ei:
        load_plugin(dup)
    msg = str(ei.value)
    assert msg.startswith(dup) and "'PriorBox' is already registered" in msg and PRIORBOX in msg
    assert "\n" not in msg


def test_a_built_in_op_name_is_refused(tmp_path):
    p = _plugin(tmp_path, "conv.py", '''
        def register(api):
            api.add_layer_type("Conv", family="conv", doc="", shape=None, kernel=None, keras=None)
    ''')
    with pytest.raises(MigratorError, match="'Conv' is already registered"):
        load_plugin(p)


def test_a_failing_plugin_is_one_line_naming_file_and_line(tmp_path):
    p = _plugin(tmp_path, "broken.py", '''
        def register(api):
            x = 1
            raise RuntimeError("no luck\\n today")
    ''')
    with pytest.raises(MigratorError) as ei:
        load_plugin(p)
    msg = str(ei.value)
    assert msg.startswith(p) and "line 4" in msg and "RuntimeError: no luck today" in msg
    assert "\n" not in msg
    q = _plugin(tmp_path, "noreg.py", "X = 1\n")
    with pytest.raises(MigratorError, match="no function register"):
        load_plugin(q)


def test_a_failed_plugin_leaves_nothing_registered(tmp_path):
    from migrator.core.ops import OP_SPECS
    from migrator.core.shapes.registry import SHAPE_RULES
    p = _plugin(tmp_path, "half.py", '''
        def register(api):
            api.add_layer_type("HalfOp", family="layout", doc="d", shape=lambda n, s, c: s,
                               kernel=lambda n, xs: xs, keras=lambda xs, a, n: xs[0])
            raise ValueError("second thoughts")
    ''')
    with pytest.raises(MigratorError, match="second thoughts"):
        load_plugin(p)
    assert "HalfOp" not in OP_SPECS and "HalfOp" not in SHAPE_RULES


def test_the_cli_reports_a_bad_plugin_in_one_line(ssd_files, tmp_path):
    p = _plugin(tmp_path, "bad.py", "def register(api):\n    1 / 0\n")
    r = subprocess.run([sys.executable, "-m", "migrator", "inspect", *ssd_files, "--plugin", p],
                       capture_output=True, text=True, timeout=300, cwd=REPO,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and p in lines[0], r.stderr
    assert "ZeroDivisionError" in lines[0]


def test_the_python_layer_is_refused_by_name_pointing_to_plugins(tmp_path):
    nb = NetBuilder("py", seed=0)
    nb.input("data", (1, 3, 4, 4))
    nb.layer("mine", "Python", ["data"], ["mine"], out_shape=(1, 3, 4, 4))
    proto, model = nb.save(tmp_path / "py.prototxt", tmp_path / "py.caffemodel")
    g = open_model([str(proto), str(model)])
    node = next(n for n in g.nodes if n.name == "mine")
    assert node.op == "Custom" and "--plugin" in node.attrs["refused"]


def test_parse_message_reads_the_protobuf_text_format():
    got = parse_message('{ min_size: 30 max_size: 60.5 aspect_ratio: [2, 3] flip: true '
                        'name: "a b" mode: FAST sub { k: 1 } sub < k: 2 > }')
    assert got == {"min_size": [30], "max_size": [60.5], "aspect_ratio": [2, 3], "flip": [True],
                   "name": ["a b"], "mode": ["FAST"], "sub": [{"k": [1]}, {"k": [2]}]}


def test_a_plugin_can_take_over_the_python_layer(tmp_path):
    nb = NetBuilder("py2", seed=0)
    nb.input("data", (1, 3, 4, 4))
    nb.layer("mine", "Python", ["data"], ["mine"], out_shape=(1, 3, 4, 4),
             params={"python_param": {"module": "mylayers", "layer": "Scale",
                                      "param_str": "3.5"}})
    proto, model = nb.save(tmp_path / "py.prototxt", tmp_path / "py.caffemodel")
    p = _plugin(tmp_path, "scale.py", '''
        def attrs(params, layer):
            assert params["layer"] == ["Scale"], params
            return {"k": float(params["param_str"][0])}

        def register(api):
            api.add_layer_type("UserScale", family="activation", doc="y = k * x",
                               shape=lambda node, s, ctx: s,
                               kernel=lambda node, xs: [xs[0] * node.attrs["k"]],
                               keras=lambda xs, a, name: xs[0] * a["k"],
                               caffe_type="Python", caffe_params="python_param",
                               caffe_attrs=attrs)
    ''')
    load_plugin(p)
    try:
        from migrator.core.reference import numpy_ref
        g = open_model([str(proto), str(model)])
        node = next(n for n in g.nodes if n.name == "mine")
        assert node.op == "UserScale" and node.attrs == {"k": 3.5}
        x = np.random.default_rng(0).normal(size=(1, 3, 4, 4)).astype(np.float32)
        assert np.allclose(numpy_ref.run_all(g, x)["mine"][0], 3.5 * x)
        assert Flow(FlowOptions(paths=[str(proto), str(model)])).compare().passed
    finally:
        unload_plugin(p)


@pytest.mark.slow
def test_batch_gives_the_plugin_to_every_model(ssd_files, tmp_path):
    import json
    import shutil
    src = tmp_path / "models" / "ssd"
    src.mkdir(parents=True)
    for f in ssd_files:
        shutil.copy(f, src)
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "migrator", "batch", str(tmp_path / "models"), "-o",
                        str(out), "--plugin", PRIORBOX], capture_output=True, text=True,
                       timeout=900, cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert r.returncode == 0, r.stderr[-2000:]
    models = json.loads((out / "index.json").read_text())["models"]
    assert [m["status"] for m in models] == ["verified"], models
