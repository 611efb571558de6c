"""Caffe mean files and image preprocessing against real Caffe (Debian's python3-caffe in the
chroot): ``caffe.io.array_to_blobproto`` writes the ``mean.binaryproto`` Migrator reads, and
``caffe.io.Transformer`` (``set_transpose``, ``set_channel_swap``, ``set_raw_scale``,
``set_mean`` with the array from ``caffe.io.blobproto_to_array``, ``set_input_scale``)
preprocesses the centre crop that ``transform_param { crop_size mean_file }`` takes at test
time.  Migrator's ``--mean FILE.binaryproto`` input must equal it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

import numpy as np
import pytest
from PIL import Image

from migrator.core.importers.caffe import load_caffe
from migrator.core.inputs import ImagePreprocessing, InputSpec, make_input, parse_mean
from migrator.testing.caffe_net import NetBuilder
from tests.legacy import caffe_root

pytestmark = [pytest.mark.caffe,
              pytest.mark.skipif(caffe_root()[0] is None, reason=caffe_root()[1] or "no caffe root")]

# Runs inside the chroot.  caffe.io.load_image's imread(as_grey=...) fails with the chroot's
# imageio, so the image is loaded as load_image does it: skimage.img_as_float(imread(...)), float32.
CAFFE_SCRIPT = r'''
import json, sys
import numpy as np, caffe, skimage, skimage.io
from caffe.proto import caffe_pb2
d = sys.argv[1]
job = json.load(open(d + "/job.json"))
rng = np.random.RandomState(job["seed"])
C, Hm, Wm = job["mean_shape"]
mean = rng.uniform(60, 140, (1, C, Hm, Wm)).astype(np.float32)
open(d + "/mean.binaryproto", "wb").write(caffe.io.array_to_blobproto(mean).SerializeToString())
blob = caffe_pb2.BlobProto()
blob.ParseFromString(open(d + "/mean.binaryproto", "rb").read())
m = caffe.io.blobproto_to_array(blob)[0]
h, w = job["input"]
top, left = (Hm - h) // 2, (Wm - w) // 2          # transform_param's TEST-phase crop offsets
out = {}
for how in ("load_image", "pixels"):
    if how == "load_image":
        img = skimage.img_as_float(skimage.io.imread(d + "/im.png")).astype(np.float32)
        raw_scale = 255.0
    else:
        img = skimage.io.imread(d + "/im.png").astype(np.float32)
        raw_scale = None
    t = caffe.io.Transformer({"data": (1, C, h, w)})
    t.set_transpose("data", (2, 0, 1))
    t.set_channel_swap("data", (2, 1, 0))
    if raw_scale:
        t.set_raw_scale("data", raw_scale)
    t.set_mean("data", m[:, top:top + h, left:left + w])
    t.set_input_scale("data", job["scale"])
    np.save(d + "/" + how + ".npy", t.preprocess("data", img[top:top + h, left:left + w]))
print("ok")
'''


@pytest.fixture(scope="module")
def real_caffe_preprocessing():
    """Real Caffe writes a 3x32x32 mean.binaryproto and preprocesses a 32x32 image for a 28x28
    input (crop offsets 2, 2), input_scale 0.5."""
    root = caffe_root()[0]
    work = tempfile.mkdtemp(prefix="migrator-mean-", dir=os.path.join(root, "tmp"))
    try:
        inside = "/tmp/" + os.path.basename(work)
        rng = np.random.default_rng(7)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(os.path.join(work, "im.png"))
        with open(os.path.join(work, "job.json"), "w") as f:
            json.dump({"seed": 3, "mean_shape": [3, 32, 32], "input": [28, 28], "scale": 0.5}, f)
        with open(os.path.join(work, "s.py"), "w") as f:
            f.write(CAFFE_SCRIPT)
        r = subprocess.run(["chroot", root, "python3", inside + "/s.py", inside], capture_output=True,
                           text=True, timeout=300, check=False, env=dict(os.environ, HOME="/tmp"))
        assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]
        keep = tempfile.mkdtemp(prefix="migrator-mean-out-")
        for name in ("mean.binaryproto", "im.png", "load_image.npy", "pixels.npy"):
            shutil.copy(os.path.join(work, name), keep)
        yield keep
        shutil.rmtree(keep, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _net(tmp_path):
    nb = NetBuilder("m")
    nb.input("data", (1, 3, 28, 28))
    nb.conv("c", "data", 2, 3)
    p, m = nb.save(tmp_path / "m.prototxt", tmp_path / "m.caffemodel")
    return load_caffe(str(p), str(m))


def test_mean_file_written_by_caffe_is_read_as_caffe_reads_it(real_caffe_preprocessing):
    d = real_caffe_preprocessing
    mean, path = parse_mean(os.path.join(d, "mean.binaryproto"))
    assert path and mean.shape == (3, 32, 32) and mean.dtype == np.float32
    # the same seed and draw as the script: RandomState(3).uniform(60, 140, (1, 3, 32, 32))
    want = np.random.RandomState(3).uniform(60, 140, (1, 3, 32, 32)).astype(np.float32)[0]
    np.testing.assert_array_equal(mean, want)


def test_mean_file_preprocessing_equals_caffe_transformer(real_caffe_preprocessing, tmp_path):
    """The image is the mean's size (32x32, as Caffe's data is made at the mean's size): Migrator
    centre-crops it and the mean to 28x28, swaps to BGR, subtracts, scales -- exactly Caffe's
    Transformer on the [0, 255] pixels; within 1 ulp of load_image + raw_scale 255 (whose
    x / 255 * 255 itself rounds)."""
    d = real_caffe_preprocessing
    g = _net(tmp_path)
    mean, mean_file = parse_mean(os.path.join(d, "mean.binaryproto"))
    pp = ImagePreprocessing(channel_order="BGR", mean=mean, scale=0.5, mean_file=mean_file)
    x, desc = make_input(g, InputSpec(kind="image", path=os.path.join(d, "im.png"), preprocessing=pp))
    assert x.shape == (1, 3, 28, 28)
    np.testing.assert_array_equal(x[0], np.load(os.path.join(d, "pixels.npy")))
    np.testing.assert_allclose(x[0], np.load(os.path.join(d, "load_image.npy")), rtol=0, atol=4e-6)
    assert desc["preprocessing"]["mean_file"] == os.path.abspath(mean_file)
    assert desc["preprocessing"]["mean"]["shape"] == [3, 32, 32]
