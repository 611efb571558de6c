"""Models with several inputs: seeded random inputs for all, or an .npz keyed by input name."""
import json

import numpy as np

from migrator.testing.caffe_net import NetBuilder

from .test_cli import one_line_error, run


def _two_inputs(tmp_path):
    nb = NetBuilder("two", seed=2)
    nb.input("a", (1, 3, 9, 11))
    nb.input("b", (1, 3, 9, 11))
    nb.conv("ca", "a", 4, 3, pad=1)
    nb.conv("cb", "b", 4, 3, pad=1)
    nb.eltwise("sum", ["ca", "cb"], operation="sum", coeffs=[0.5, 2.0])
    nb.ip("fc", "sum", 3)
    return nb.save(tmp_path / "two.prototxt", tmp_path / "two.caffemodel")


def test_two_inputs_random_and_npz(tmp_path):
    proto, model = _two_inputs(tmp_path)
    r = run("convert", proto, model, "-o", tmp_path / "two.keras")
    assert r.returncode == 0, r.stdout + r.stderr
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "x.npz", a=rng.standard_normal((1, 3, 9, 11)), b=rng.standard_normal((1, 3, 9, 11)))
    r = run("compare", proto, model, "--input", tmp_path / "x.npz", "--runtime", "opencv",
            "--report", tmp_path / "r.json")
    assert r.returncode == 0, r.stdout + r.stderr
    d = json.loads((tmp_path / "r.json").read_text())
    assert d["verification"]["input"]["shape"] == {"a": [1, 3, 9, 11], "b": [1, 3, 9, 11]}
    # the Keras model takes both inputs, channels-last
    code = ("import sys, keras, migrator.core.keras_build.custom_layers\n"
            "m = keras.saving.load_model(sys.argv[1]); print([tuple(i.shape) for i in m.inputs])\n")
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "two.keras")], capture_output=True,
                         text=True)
    assert "(None, 9, 11, 3), (None, 9, 11, 3)" in out.stdout, out.stderr[-2000:]


def test_npz_missing_input_exit_2(tmp_path):
    proto, model = _two_inputs(tmp_path)
    np.savez(tmp_path / "x.npz", a=np.zeros((1, 3, 9, 11)))
    one_line_error(run("compare", proto, model, "--input", tmp_path / "x.npz"), "x.npz", "missing b")
