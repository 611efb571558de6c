"""Caffe mean files (``--mean mean.binaryproto``) and the preprocessing baked into the exported
model (``migrator convert --bake-preprocessing``).

Independent references: the BlobProto bytes are encoded by hand here (protobuf wire format:
field 1-4 varints num/channels/height/width, field 5 float data packed or not, field 7 the
BlobShape), never with Migrator's schema; the expected network input is written here from
Caffe's ``transform_param`` at test time (centre crop at ``(size - crop) // 2`` of the image
and of the mean, BGR, ``(x - mean) * scale``).  Real Caffe's own mean file and Transformer
are compared in ``tests/legacy/test_caffe_mean.py``.
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from migrator.core import flow
from migrator.core.errors import MigratorError
from migrator.core.importers.caffe import load_caffe
from migrator.core.importers.caffe.mean_file import read_mean_file
from migrator.core.inputs import ImagePreprocessing, InputSpec, make_input, parse_mean
from migrator.testing.caffe_net import NetBuilder

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
F32 = np.float32


# ---- the protobuf wire format, by hand ---------------------------------------------------
def _varint(v: int) -> bytes:
    out = b""
    v &= (1 << 64) - 1
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def blobproto_bytes(a: np.ndarray, *, packed=True, shape_field=False, dims=None) -> bytes:
    """A Caffe BlobProto holding ``a`` as Caffe writes it (4-d num/channels/height/width, or a
    BlobShape when ``shape_field``)."""
    dims = list(a.shape) if dims is None else list(dims)
    out = b""
    if shape_field:
        packed_dims = b"".join(_varint(d) for d in dims)
        shape = _key(1, 2) + _varint(len(packed_dims)) + packed_dims
        out += _key(7, 2) + _varint(len(shape)) + shape
    else:
        d4 = [1] * (4 - len(dims)) + dims
        for f, v in zip((1, 2, 3, 4), d4):
            out += _key(f, 0) + _varint(v)
    vals = np.asarray(a, "<f4").ravel()
    if packed:
        data = vals.tobytes()
        out += _key(5, 2) + _varint(len(data)) + data
    else:
        out += b"".join(_key(5, 5) + struct.pack("<f", float(v)) for v in vals)
    return out


@pytest.mark.parametrize("packed,shape_field", [(True, False), (False, False), (True, True)])
def test_binaryproto_is_read_as_caffe_writes_it(tmp_path, packed, shape_field):
    mean = np.random.default_rng(0).uniform(50, 150, (3, 6, 7)).astype(F32)
    p = tmp_path / "mean.binaryproto"
    p.write_bytes(blobproto_bytes(mean[None], packed=packed, shape_field=shape_field))
    got = read_mean_file(str(p))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, mean)
    m, path = parse_mean(str(p))
    np.testing.assert_array_equal(m, mean)
    assert path == str(p)


def test_numbers_and_npy_means(tmp_path):
    assert parse_mean("104, 117,123") == ([104.0, 117.0, 123.0], None)
    assert parse_mean("") == (None, None)
    np.save(tmp_path / "m.npy", np.array([1.0, 2.0, 3.0], F32))
    m, path = parse_mean(str(tmp_path / "m.npy"))
    np.testing.assert_array_equal(m, [1, 2, 3])


def _bad(tmp_path, data: bytes, name="mean.binaryproto"):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


@pytest.mark.parametrize("make,words", [
    (lambda: b"", ["empty"]),
    (lambda: b"\xff\xff\xff\xff\xff\xff\xff", ["cannot parse"]),
    (lambda: blobproto_bytes(np.zeros((1, 3, 4, 4), F32))[:-5], ["cannot parse"]),
    (lambda: blobproto_bytes(np.zeros((1, 3, 4, 4), F32), dims=[1, 3, 4, 5]), ["60 values", "48"]),
    (lambda: blobproto_bytes(np.zeros((1, 3, 4, 4), F32), dims=[1, 3, 100000, 100000]),
     ["more than Migrator reads"]),
    (lambda: blobproto_bytes(np.zeros((1, 3, 4, 4), F32), dims=[2, 3, 2, 4]), ["(C, H, W)"]),
    (lambda: blobproto_bytes(np.zeros((1, 3, 4, 4), F32), dims=[1, 0, 4, 4]), ["not a mean image"]),
    (lambda: blobproto_bytes(np.full((1, 3, 2, 2), np.nan, F32)), ["NaN"]),
])
def test_bad_mean_files_are_one_line_errors(tmp_path, make, words):
    p = _bad(tmp_path, make())
    with pytest.raises(MigratorError) as ei:
        parse_mean(p)
    msg = str(ei.value)
    assert "\n" not in msg and p in msg, msg
    for w in words:
        assert w in msg, msg


def test_missing_and_oversized_mean_files(tmp_path, monkeypatch):
    with pytest.raises(MigratorError, match="no such file"):
        parse_mean(str(tmp_path / "none.binaryproto"))
    from migrator.core.importers.caffe import mean_file
    monkeypatch.setattr(mean_file, "MAX_MEAN_FILE_BYTES", 100)
    p = _bad(tmp_path, blobproto_bytes(np.zeros((1, 3, 8, 8), F32)))
    with pytest.raises(MigratorError, match="MiB") as ei:
        parse_mean(p)
    assert p in str(ei.value)
    with pytest.raises(MigratorError, match="numbers or a mean file"):
        parse_mean("104,abc")


# ---- preprocessing as transform_param does it --------------------------------------------
def _graph(tmp_path, hw=(8, 8)):
    nb = NetBuilder("t", seed=1)
    nb.input("data", (1, 3) + tuple(hw))
    nb.conv("c1", "data", 4, 3, pad=1)
    nb.relu("r1", "c1", top="c1")
    nb.ip("fc", "c1", 5)
    p, m = nb.save(tmp_path / "t.prototxt", tmp_path / "t.caffemodel")
    return p, m


def _image(path, hw, seed=0):
    a = np.random.default_rng(seed).integers(0, 256, tuple(hw) + (3,), dtype=np.uint8)
    Image.fromarray(a).save(path)
    return a


def test_mean_image_and_image_centre_cropped_like_transform_param(tmp_path):
    """A 10x10 image and mean for an 8x8 net: both cropped at (1, 1), BGR, minus, times 0.5."""
    p, m = _graph(tmp_path)
    g = load_caffe(str(p), str(m))
    img = _image(tmp_path / "im.png", (10, 10))
    mean = np.random.default_rng(1).uniform(80, 140, (3, 10, 10)).astype(F32)
    (tmp_path / "mean.binaryproto").write_bytes(blobproto_bytes(mean[None]))
    mv, mf = parse_mean(str(tmp_path / "mean.binaryproto"))
    pp = ImagePreprocessing(channel_order="BGR", mean=mv, scale=0.5, mean_file=mf)
    x, desc = make_input(g, InputSpec(kind="image", path=str(tmp_path / "im.png"), preprocessing=pp))
    want = (img[1:9, 1:9, ::-1].transpose(2, 0, 1).astype(F32) - mean[:, 1:9, 1:9]) * F32(0.5)
    np.testing.assert_array_equal(x[0], want)
    assert desc["preprocessing"]["mean_file"] == str(tmp_path / "mean.binaryproto")

    # an odd margin: 11x13 mean and image -> offsets (1, 2)
    img = _image(tmp_path / "im2.png", (11, 13), seed=2)
    mean = np.random.default_rng(3).uniform(80, 140, (3, 11, 13)).astype(F32)
    pp = ImagePreprocessing(channel_order="RGB", mean=mean, scale=1.0)
    x, _ = make_input(g, InputSpec(kind="image", path=str(tmp_path / "im2.png"), preprocessing=pp))
    want = img[1:9, 2:10].transpose(2, 0, 1).astype(F32) - mean[:, 1:9, 2:10]
    np.testing.assert_array_equal(x[0], want)


def test_resize_then_crop_and_a_mean_of_the_input_size(tmp_path):
    p, m = _graph(tmp_path)
    g = load_caffe(str(p), str(m))
    _image(tmp_path / "big.png", (20, 24))
    mean = np.full((3, 8, 8), 100.0, F32)
    pp = ImagePreprocessing(channel_order="BGR", mean=mean, resize=(10, 12))
    x, _ = make_input(g, InputSpec(kind="image", path=str(tmp_path / "big.png"), preprocessing=pp))
    rs = np.asarray(Image.open(tmp_path / "big.png").convert("RGB").resize((12, 10), Image.BILINEAR), F32)
    want = rs[1:9, 2:10, ::-1].transpose(2, 0, 1) - 100.0
    np.testing.assert_array_equal(x[0], want)
    with pytest.raises(MigratorError, match="smaller than the network input"):
        make_input(g, InputSpec(kind="image", path=str(tmp_path / "big.png"),
                                preprocessing=ImagePreprocessing(resize=(6, 6))))


# ---- the preprocessing baked into the exported model -------------------------------------
@pytest.mark.slow
def test_baked_preprocessing_loads_without_migrator_and_takes_raw_pixels(tmp_path):
    """convert --bake-preprocessing: the saved .keras (plain Keras, fresh process) fed the RGB
    crop gives what the network gives on the preprocessed input (transform_param's formula
    written here); the report says the preprocessing is baked."""
    p, m = _graph(tmp_path)
    img = _image(tmp_path / "im.png", (10, 10), seed=4)
    mean = np.random.default_rng(5).uniform(80, 140, (3, 10, 10)).astype(F32)
    (tmp_path / "mean.binaryproto").write_bytes(blobproto_bytes(mean[None]))
    out = tmp_path / "baked.keras"
    env = dict(os.environ, PYTHONPATH=REPO)
    r = subprocess.run([sys.executable, "-m", "migrator", "convert", str(p), str(m), "-o", str(out),
                        "--mean", str(tmp_path / "mean.binaryproto"), "--scale", "0.25",
                        "--bake-preprocessing"], capture_output=True, text=True, cwd=REPO, env=env,
                       timeout=600, check=False)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rep = json.loads((tmp_path / "baked.report.json").read_text())
    pre = rep["extra"]["preprocessing"]
    assert pre["baked"] and pre["channel_swap"] == "RGB -> BGR" and pre["scale"] == 0.25
    assert pre["mean_file"] == str(tmp_path / "mean.binaryproto")
    assert "Preprocessing baked into the exported model" in (tmp_path / "baked.report.md").read_text()
    assert all(a["passed"] for a in rep["artifacts"])

    # the network on the input written here from transform_param, vs the baked file on pixels
    x = ((img[1:9, 1:9, ::-1].transpose(2, 0, 1).astype(F32) - mean[:, 1:9, 1:9]) * F32(0.25))[None]
    g = flow.open_model([p, m])
    model = flow.build_model(flow.plan_model(g))
    want = np.asarray(model(np.transpose(x, (0, 2, 3, 1))))
    np.save(tmp_path / "pixels.npy", img[None, 1:9, 1:9].astype(F32))
    np.save(tmp_path / "want.npy", want)
    code = ("import sys, numpy as np, keras\n"
            f"m = keras.saving.load_model({str(out)!r}, compile=False, safe_mode=True)\n"
            f"got = np.asarray(m(np.load({str(tmp_path / 'pixels.npy')!r})))\n"
            f"np.testing.assert_allclose(got, np.load({str(tmp_path / 'want.npy')!r}), rtol=1e-5, atol=1e-5)\n"
            "assert m.input_shape == (None, 8, 8, 3), m.input_shape\n"
            "assert not [k for k in sys.modules if k.startswith('migrator')]\n"
            "print('ok')\n")
    env2 = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                       env=dict(env2, TF_CPP_MIN_LOG_LEVEL="3"), timeout=300, check=False)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]


@pytest.mark.slow
def test_preprocessing_options_without_baking_or_for_h5_are_refused(tmp_path):
    p, m = _graph(tmp_path)
    env = dict(os.environ, PYTHONPATH=REPO)
    base = [sys.executable, "-m", "migrator", "convert", str(p), str(m)]
    r = subprocess.run(base + ["-o", str(tmp_path / "a.keras"), "--mean", "1,2,3"], capture_output=True,
                       text=True, cwd=REPO, env=env, timeout=600, check=False)
    assert r.returncode == 2 and "--bake-preprocessing" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(base + ["-o", str(tmp_path / "a.h5"), "--mean", "1,2,3", "--bake-preprocessing"],
                       capture_output=True, text=True, cwd=REPO, env=env, timeout=600, check=False)
    assert r.returncode == 2 and "HDF5" in r.stderr and "Traceback" not in r.stderr
    assert not os.path.exists(tmp_path / "a.h5") and not os.path.exists(tmp_path / "a.keras")
    bad = _bad(tmp_path, b"\x08")
    r = subprocess.run(base + ["-o", str(tmp_path / "b.keras"), "--mean", bad, "--bake-preprocessing"],
                       capture_output=True, text=True, cwd=REPO, env=env, timeout=600, check=False)
    assert r.returncode == 2 and bad in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
