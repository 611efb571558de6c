"""Input sets (issue 12.1): image folders / list files / arrays with a sample axis, read in
batches, in a deterministic order, each image preprocessed exactly like a single --image."""
from __future__ import annotations

import os
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from migrator.core import flow, inputs
from migrator.core.errors import MigratorError
from migrator.core.inputs import ImagePreprocessing, InputSpec, image_files, is_set
from migrator.testing.caffe_net import NetBuilder


def small_net(folder, hw=(16, 16), channels=3, seed=1):
    nb = NetBuilder("s", seed=seed)
    nb.input("data", (1, channels) + tuple(hw))
    nb.conv("c1", "data", 4, 3, pad=1)
    nb.relu("r1", "c1", top="c1")
    nb.pool("p1", "c1", "max", 2, stride=2)
    nb.ip("fc", "p1", 10)
    nb.softmax("prob", "fc")
    return list(nb.save(os.path.join(folder, "s.prototxt"), os.path.join(folder, "s.caffemodel")))


def make_images(folder, n, size=(20, 24), seed=0, names=None):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        name = names[i] if names else f"img{i:03d}.png"
        p = os.path.join(folder, name)
        Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8)).save(p)
        out.append(p)
    return out


@pytest.fixture()
def graph(tmp_path):
    return flow.open_model(small_net(str(tmp_path)))


def test_folder_order_is_sorted_and_limited(tmp_path):
    d = tmp_path / "imgs"
    make_images(str(d), 5, names=["b.png", "a.jpg", "c.PNG", "10.bmp", "2.png"])
    (d / "notes.txt").write_text("not an image")
    (d / "sub").mkdir()
    files = image_files(str(d))
    assert [os.path.basename(f) for f in files] == ["10.bmp", "2.png", "a.jpg", "b.png", "c.PNG"]
    assert [os.path.basename(f) for f in image_files(str(d), limit=2)] == ["10.bmp", "2.png"]


def test_list_file_keeps_its_order_relative_to_itself(tmp_path):
    make_images(str(tmp_path / "x"), 3)
    lst = tmp_path / "val.txt"
    lst.write_text("# validation\nx/img002.png\n\nx/img000.png\n")
    assert [os.path.relpath(f, tmp_path) for f in image_files(str(lst))] == \
        [os.path.join("x", "img002.png"), os.path.join("x", "img000.png")]


@pytest.mark.parametrize("setup,msg", [
    (lambda p: None, "no such folder"),
    (lambda p: os.makedirs(p), "no image files"),
])
def test_bad_sets_are_one_line_errors(tmp_path, setup, msg):
    p = str(tmp_path / "missing")
    setup(p)
    with pytest.raises(MigratorError, match=msg):
        image_files(p)


def test_images_preprocessed_exactly_like_a_single_image(tmp_path, graph):
    files = make_images(str(tmp_path / "im"), 5)
    pp = ImagePreprocessing(channel_order="BGR", mean=[104.0, 117.0, 123.0], scale=0.5)
    spec = InputSpec(kind="images", path=str(tmp_path / "im"), batch_size=2, preprocessing=pp)
    assert is_set(spec)
    iset = inputs.open_input_set(graph, spec)
    batches = list(iset.batches())
    assert [len(b) for b in batches] == [2, 2, 1] and [b.start for b in batches] == [0, 2, 4]
    xs = np.concatenate([b.x for b in batches])
    for i, f in enumerate(files):
        one, _ = inputs.make_input(graph, InputSpec(kind="image", path=f, preprocessing=pp))
        np.testing.assert_array_equal(xs[i:i + 1], one)
    # independent check of the preprocessing: BGR order, mean, scale by hand
    raw = np.asarray(Image.open(files[3]).convert("RGB").resize((16, 16), Image.BILINEAR), np.float32)
    want = (raw[:, :, ::-1].transpose(2, 0, 1) - np.array([104, 117, 123], np.float32)[:, None, None]) * 0.5
    np.testing.assert_allclose(xs[3], want, rtol=0, atol=1e-5)
    x3, name3 = iset.sample(3)
    np.testing.assert_array_equal(x3, xs[3:4])
    assert name3 == "img003.png"
    d = iset.describe()
    assert d["samples"] == 5 and d["order"] == "sorted by file name"


def test_npy_set_is_memory_mapped_and_batched(tmp_path, graph):
    a = np.random.default_rng(0).standard_normal((40, 3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "set.npy", a)
    iset = inputs.open_input_set(graph, InputSpec(kind="arrays", path=str(tmp_path / "set.npy"),
                                                        batch_size=8, limit=20))
    assert len(iset) == 20
    got = list(iset.batches())
    assert [len(b) for b in got] == [8, 8, 4]
    np.testing.assert_array_equal(np.concatenate([b.x for b in got]), a[:20])
    assert got[1].names[0] == "set.npy[8]"
    # the file is opened memory-mapped: reading one batch does not read the set
    big = np.zeros((400, 3, 64, 64), np.float32)          # 19.7 MB
    np.save(tmp_path / "big.npy", big)
    os.makedirs(tmp_path / "g2")
    g2 = flow.open_model(small_net(str(tmp_path / "g2"), hw=(64, 64)))
    tracemalloc.start()
    try:
        it = inputs.open_input_set(g2, InputSpec(kind="arrays", path=str(tmp_path / "big.npy"),
                                                       batch_size=4))
        for _b in it.batches():
            pass
        _cur, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * big[:4].nbytes + (1 << 20), peak       # a batch or so, not 19.7 MB


def test_npz_set_and_errors(tmp_path, graph):
    a = np.random.default_rng(1).standard_normal((6, 3, 16, 16)).astype(np.float32)
    np.savez(tmp_path / "s.npz", data=a)
    iset = inputs.open_input_set(graph, InputSpec(kind="arrays", path=str(tmp_path / "s.npz"),
                                                        batch_size=4))
    np.testing.assert_array_equal(np.concatenate([b.x for b in iset.batches()]), a)
    np.save(tmp_path / "one.npy", a[0])
    with pytest.raises(MigratorError, match="leading sample axis"):
        inputs.open_input_set(graph, InputSpec(kind="arrays", path=str(tmp_path / "one.npy")))
    np.save(tmp_path / "bad.npy", a[:, :, :8])
    with pytest.raises(MigratorError, match="the model wants"):
        inputs.open_input_set(graph, InputSpec(kind="arrays", path=str(tmp_path / "bad.npy")))


def test_image_batches_stream_one_batch_at_a_time(tmp_path):
    """Peak numpy memory while iterating 48 images of 128x128 is about one batch, not the set."""
    g = flow.open_model(small_net(str(tmp_path), hw=(128, 128)))
    make_images(str(tmp_path / "im"), 48, size=(128, 128))
    spec = InputSpec(kind="images", path=str(tmp_path / "im"), batch_size=4)
    one_batch = 4 * 3 * 128 * 128 * 4
    tracemalloc.start()
    try:
        n = 0
        for b in inputs.open_input_set(g, spec).batches():
            n += len(b)
        _cur, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == 48
    assert peak < 4 * one_batch, (peak, one_batch)       # the set would be 12x one batch
