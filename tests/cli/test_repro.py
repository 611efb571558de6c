"""`--repro DIR`: a failed verification writes the failing layer alone (Keras file, reference
inputs/outputs, source definition, a short script) that reproduces the error without Migrator."""
import json
import os
import re
import subprocess
import sys

import numpy as np

from tests.cli.test_cli import ENV, one_line_error, run, small_net

BROKEN = '{"version":1,"layers":{"bn1":{"epsilon":0.5,"variance":"raw"}}}'
# run a file with plain Python + numpy + Keras: `import migrator` fails there
NO_MIGRATOR = "import runpy, sys; sys.modules['migrator'] = None; runpy.run_path(sys.argv[1], run_name='__main__')"


def run_repro(d):
    env = {k: v for k, v in ENV.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-c", NO_MIGRATOR, str(d / "repro.py")], capture_output=True,
                       text=True, env=env, cwd=str(d.parent), timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"max abs error (\S+)\s+max rel error (\S+)", r.stdout)
    assert m, r.stdout
    return float(m.group(1)), float(m.group(2)), r.stdout


def test_failed_compare_writes_a_repro_that_runs_without_migrator(tmp_path):
    proto, model = small_net(tmp_path)
    (tmp_path / "m.json").write_text(BROKEN)
    d = tmp_path / "repro"
    r = run("compare", proto, model, "--mapping", tmp_path / "m.json", "--repro", d,
            "--report", tmp_path / "r.json")
    assert r.returncode == 3, r.stdout + r.stderr
    assert f"repro: {d}" in r.stdout
    assert sorted(os.listdir(d)) == ["README.txt", "expected.npz", "inputs.npz", "layer.keras",
                                     "params.npz", "repro.py", "source.json"]
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")], "temp folder left behind"
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["verification"]["root_cause"] == "scale1"
    layer = {e["source"]: e for e in rep["layers"]}["scale1"]

    max_abs, max_rel, out = run_repro(d)
    assert "OVER the tolerance" in out
    assert max_rel > 1000 * 1e-4 and max_abs > 1000 * 1e-5
    reported = layer["isolated"]["max_abs"]
    assert abs(max_abs - reported) <= 1e-6 * reported, (max_abs, reported)

    src = json.loads((d / "source.json").read_text())
    assert src["layer"] == "scale1" and src["keras_layers"] == ["bn1"]
    nodes = {n["name"]: n for n in src["nodes"]}
    assert set(nodes) == {"scale1", "bn1"} and nodes["bn1"]["op"] == "BatchNorm"
    rows = {row["key"]: row for row in nodes["bn1"]["mapping"]["rows"]}
    assert rows["epsilon"]["overridden"] and rows["epsilon"]["formula"]
    params = np.load(d / "params.npz")
    for name, node in nodes.items():
        for p, info in node["params"].items():
            assert list(params[info["npz_key"]].shape) == info["shape"], (name, p)
    x, y = np.load(d / "inputs.npz"), np.load(d / "expected.npz")
    assert x["in0"].shape == (1, 9, 10, 6) and x["in0_source"].shape == (1, 6, 9, 10)
    assert np.array_equal(y["out"], y["out_source"].transpose(0, 2, 3, 1))
    assert "1.41" in (d / "README.txt").read_text()

    # an existing non-empty folder is refused (one-line error), and kept
    before = (d / "repro.py").read_text()
    r = run("compare", proto, model, "--mapping", tmp_path / "m.json", "--repro", d)
    one_line_error(r, "repro")
    assert (d / "repro.py").read_text() == before


def test_convert_repro_only_when_verification_fails(tmp_path):
    proto, model = small_net(tmp_path)
    (tmp_path / "m.json").write_text(BROKEN)
    r = run("convert", proto, model, "--mapping", tmp_path / "m.json", "-o", tmp_path / "bad.keras",
            "--repro", tmp_path / "bad")
    assert r.returncode == 3, r.stdout + r.stderr
    assert not (tmp_path / "bad.keras").exists() and (tmp_path / "bad" / "layer.keras").is_file()
    r = run("convert", proto, model, "-o", tmp_path / "ok.keras", "--repro", tmp_path / "ok")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "repro:" not in r.stdout and not (tmp_path / "ok").exists()
    assert (tmp_path / "ok.keras").is_file()
