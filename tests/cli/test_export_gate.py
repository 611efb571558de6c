"""The export gate: an artifact is kept only when it matches the reference, never because it
matches the in-memory Keras model.  A wrongly weighted artifact (one Dense x 1.001, planted between
verification and export) is refused with exit 3 and nothing is written; --accept-mismatch is the
one explicit way past, and the report records it."""
import json
import subprocess
import sys

from .test_cli import ENV, REPO, small_net

PLANT = r"""
import sys
import numpy as np
import migrator.core.export as E
orig = E.export

def planted(model, *a, **k):
    for layer in model.layers:
        if type(layer).__name__ == "Dense":
            w = layer.get_weights()
            w[0] = w[0] * np.float32(1.001)
            layer.set_weights(w)
            break
    return orig(model, *a, **k)

E.export = planted
from migrator.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _convert(*args):
    return subprocess.run([sys.executable, "-c", PLANT, "convert", *map(str, args)], capture_output=True,
                          text=True, env=ENV, cwd=REPO, timeout=600, check=False)


def test_wrongly_weighted_artifact_is_refused(tmp_path):
    proto, model = small_net(tmp_path)
    out = tmp_path / "net.keras"
    r = _convert(proto, model, "-o", out)
    assert r.returncode == 3, r.stdout[-2000:] + r.stderr[-2000:]
    assert "does not match the reference" in r.stderr and "nothing was written" in r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.caffemodel", "net.prototxt"]


def test_accept_mismatch_keeps_it_and_says_so(tmp_path):
    proto, model = small_net(tmp_path)
    out = tmp_path / "net.keras"
    r = _convert(proto, model, "-o", out, "--accept-mismatch")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rep = json.loads((tmp_path / "net.report.json").read_text())
    art = rep["artifacts"][0]
    assert art["accepted_mismatch"] and art["compared_with"] == "reference"
    assert art["vs_reference"][0]["passed"] is False and art["migrator_importable"] is False
    assert rep["accepted_mismatch"] is True
    assert "vs reference" in r.stdout
