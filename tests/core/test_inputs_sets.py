"""Set-level comparison (issue 12.1/12.2): per layer the worst over the set and which sample,
per-channel worst, top-1 agreement / top-5 overlap over N, the samples whose top-1 differs;
equal to a per-sample loop; memory bounded by the batch; progress per image; cancel."""
from __future__ import annotations

import os
import tracemalloc

import numpy as np
import pytest

from migrator.core import flow, inputs
from migrator.core.errors import Cancelled, MigratorError
from migrator.core.inputs import InputSpec
from tests.core.test_inputs import make_images, small_net


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("sets")
    g = flow.open_model(small_net(str(d)))
    plan = flow.plan_model(g)
    model = flow.build_model(plan)
    files = make_images(str(d / "im"), 11)
    return d, g, plan, model, files


def _per_sample_loop(g, plan, model, files):
    out = []
    for f in files:
        x, _ = inputs.make_input(g, InputSpec(kind="image", path=f))
        out.append(flow.compare(g, plan, model, x))
    return out


def test_set_equals_a_per_sample_loop(setup):
    """Batch 1: the same arithmetic as a loop of single comparisons, so the set-level
    figures must equal the fold computed here by hand (max, argmax, means, per channel)."""
    d, g, plan, model, files = setup
    res = flow.compare_set(g, plan, model, InputSpec(kind="images", path=str(d / "im"), batch_size=1))
    singles = _per_sample_loop(g, plan, model, files)
    assert res.n_samples == 11 and res.sample_names == [os.path.basename(f) for f in files]
    assert res.passed == all(s.passed for s in singles)
    for r in res.compared:
        per = [s.layer(r.source) for s in singles]
        mx = np.array([p.max_abs for p in per])
        assert r.max_abs == mx.max(), r.source
        assert r.worst_sample == int(mx.argmax()) and r.sample_name == res.sample_names[r.worst_sample]
        assert r.status == ("pass" if all(p.status == "pass" for p in per) else "fail")
        assert r.mean_abs == pytest.approx(np.mean([p.mean_abs for p in per]), rel=1e-12)
        np.testing.assert_array_equal(r.channel_max_abs, np.max([p.channel_max_abs for p in per], axis=0))
        np.testing.assert_allclose(r.channel_mean_abs, np.mean([p.channel_mean_abs for p in per], axis=0),
                                   rtol=1e-12)
        np.testing.assert_array_equal(r.channel_ref_absmax, np.max([p.channel_ref_absmax for p in per], axis=0))
        assert r.scale == max(p.scale for p in per)
        assert r.max_rel == max(p.max_rel for p in per)
        assert r.needed_rtol == max(p.needed_rtol for p in per)
        assert r.shape[0] == 11
    ref_top1 = [s.topk["reference_top"][0] for s in singles]
    ker_top1 = [s.topk["keras_top"][0] for s in singles]
    assert res.topk["n"] == 11
    assert res.topk["top1_agreement"] == np.mean([a == b for a, b in zip(ref_top1, ker_top1)])
    assert res.topk["topk_overlap"] == pytest.approx(np.mean([s.topk["topk_overlap"] for s in singles]))


def test_batched_set_agrees_with_batch_one(setup):
    """Batch 4: the same verdict; figures equal up to float32 rounding (within tolerance)."""
    d, g, plan, model, _files = setup
    spec = InputSpec(kind="images", path=str(d / "im"))
    one = flow.compare_set(g, plan, model, spec, batch_size=1)
    four = flow.compare_set(g, plan, model, spec, batch_size=4)
    assert one.passed == four.passed and four.n_samples == 11
    for a, b in zip(one.compared, four.compared):
        tol = b.tolerance.atol + b.tolerance.rtol * b.scale
        assert abs(a.max_abs - b.max_abs) <= tol, a.source
        assert a.scale == pytest.approx(b.scale, rel=1e-5)
    assert one.topk["top1_agreement"] == four.topk["top1_agreement"]


def test_top1_mismatches_are_named_by_file(setup, monkeypatch):
    """A Keras side whose final output is perturbed on two samples: the set result lists
    exactly those files (the per-sample top-1 from the independent argmax)."""
    from migrator.core.compare import feeds
    d, g, plan, model, files = setup
    flip = {2, 7}
    state = {"start": 0}
    origs = {cls: cls.next for cls in (feeds.KerasFeed, feeds.CompiledKerasFeed)}

    def next_(self):
        item = origs[type(self)](self)
        if item is not None and item[0] == plan.mapping("prob").keras_output:
            arr = np.array(item[1])
            for i in range(arr.shape[0]):
                if state["start"] + i in flip:
                    arr[i] = arr[i][::-1]          # reversed class order: top-1 changes
            state["start"] += arr.shape[0]
            return item[0], arr
        return item

    for cls in origs:
        monkeypatch.setattr(cls, "next", next_)
    res = flow.compare_set(g, plan, model, InputSpec(kind="images", path=str(d / "im"), batch_size=3),
                               precision="off")
    assert not res.passed
    assert [m["index"] for m in res.top1_mismatches] == sorted(flip)
    assert [m["name"] for m in res.top1_mismatches] == [os.path.basename(files[i]) for i in sorted(flip)]
    assert res.topk["top1_agreement"] == pytest.approx(9 / 11)
    prob = res.layer("prob")
    assert prob.status == "fail" and prob.worst_sample in flip
    d2 = res.to_dict()
    assert d2["n_samples"] == 11 and len(d2["top1_mismatches"]) == 2


def test_progress_names_each_image_and_cancel_stops(setup):
    d, g, plan, model, files = setup
    msgs = []
    flow.compare_set(g, plan, model, InputSpec(kind="images", path=str(d / "im"), batch_size=1),
                         progress=lambda f, m: msgs.append((f, m)))
    fr = [f for f, _ in msgs]
    assert fr == sorted(fr) and fr[-1] == 1.0
    for f in files:
        assert any(os.path.basename(f) in m for _, m in msgs), f
    assert any(m == "11 of 11 samples compared" for _, m in msgs)
    # cancel after the 3rd image: the result says cancelled and does not pass
    seen = {"n": 0}

    def progress(f, m):
        if m.endswith("samples compared"):
            seen["n"] = int(m.split()[0])

    res = flow.compare_set(g, plan, model, InputSpec(kind="images", path=str(d / "im"), batch_size=1),
                               progress=progress, cancel=lambda: seen["n"] >= 3)
    assert res.cancelled and not res.passed and res.n_samples == 3
    with pytest.raises(Cancelled):
        flow.compare_set(g, plan, model, InputSpec(kind="images", path=str(d / "im")),
                             cancel=lambda: True)


def test_memory_is_bounded_by_the_batch_not_the_set(tmp_path):
    """numpy peak while comparing 16 vs 128 samples of 64x64 with batch 4: about the same."""
    g = flow.open_model(small_net(str(tmp_path), hw=(64, 64)))
    plan = flow.plan_model(g)
    model = flow.build_model(plan)
    a = np.random.default_rng(0).standard_normal((128, 3, 64, 64)).astype(np.float32)
    np.save(tmp_path / "set.npy", a)
    peaks = {}
    for n in (16, 128):
        spec = InputSpec(kind="arrays", path=str(tmp_path / "set.npy"), batch_size=4, limit=n)
        flow.compare_set(g, plan, model, spec)          # warm-up (TF graph caches)
        tracemalloc.start()
        try:
            res = flow.compare_set(g, plan, model, spec)
            peaks[n] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert res.passed and res.n_samples == n
    set_bytes = a.nbytes
    assert peaks[128] < 1.5 * peaks[16] + (1 << 20), peaks
    assert peaks[128] < set_bytes / 2, (peaks, set_bytes)


def test_single_inputs_are_a_set_of_one(setup):
    _d, g, plan, model, files = setup
    x, _ = inputs.make_input(g, InputSpec(kind="image", path=files[0]))
    one = flow.compare(g, plan, model, x)
    res = flow.compare_set(g, plan, model, InputSpec(kind="image", path=files[0]))
    assert res.n_samples == 1 and res.passed == one.passed
    for a, b in zip(res.compared, one.compared):
        assert a.max_abs == b.max_abs and a.status == b.status


def test_document_api_for_an_image_folder(setup):
    """The call the GUI worker makes: document.compare_model with an 'images' spec."""
    from migrator.core import document
    d, g, plan, model, files = setup
    out = document.compare_model(g, plan, model, InputSpec(kind="images", path=str(d / "im"), batch_size=4))
    res, iset = out["result"], out["input_set"]
    assert res.n_samples == len(iset) == 11 and out["input_desc"]["kind"] == "images"
    x, name = iset.sample(out["sample_index"])
    np.testing.assert_array_equal(out["x"], x)
    assert name in res.sample_names


def _same_figures(a, b, verdict=True):
    assert a.n_samples == b.n_samples and (a.passed == b.passed or not verdict)
    for x, y in zip(a.compared, b.compared):
        assert x.source == y.source and x.status == y.status
        assert x.max_abs == y.max_abs and x.worst_sample == y.worst_sample, x.source
        assert x.mean_abs == y.mean_abs and x.scale == y.scale and x.needed_rtol == y.needed_rtol
        np.testing.assert_array_equal(x.channel_max_abs, y.channel_max_abs)
        np.testing.assert_array_equal(x.channel_mean_abs, y.channel_mean_abs)
    assert a.topk == b.topk and a.top1_mismatches == b.top1_mismatches


def test_pipelined_set_equals_the_in_line_loop_and_decodes_ahead(setup, monkeypatch):
    """Batches read on the background thread (one ahead) give exactly the figures of the
    same batches read in line; the images are decoded on that thread."""
    from migrator.core.compare.sets import run_set_comparison
    d, g, plan, model, files = setup
    spec = InputSpec(kind="images", path=str(d / "im"), batch_size=4)
    threads = set()
    orig = inputs.preprocess_image

    def spy(*a, **k):
        import threading
        threads.add(threading.current_thread().name)
        return orig(*a, **k)
    monkeypatch.setattr(inputs, "preprocess_image", spy)
    piped = run_set_comparison(g, plan, model, inputs.open_input_set(g, spec))
    assert threads == {"migrator-decode"}
    threads.clear()
    in_line = run_set_comparison(g, plan, model, inputs.open_input_set(g, spec), prefetch=0)
    assert threads and "migrator-decode" not in threads
    _same_figures(piped, in_line)
    assert piped.n_samples == 11 and piped.set_size == 11 and piped.coverage_note is None
    assert "decode_wait_s" in piped.timings


def test_one_trace_of_the_compiled_keras_call_for_every_batch_size(setup):
    """11 images in batches of 4 (the last one 3): the compiled Keras call is traced once."""
    from migrator.core.compare.feeds import compiled_trace_count
    d, g, plan, model, _files = setup
    flow.compare_set(g, plan, model, InputSpec(kind="images", path=str(d / "im"), batch_size=4),
                     precision="off")
    flow.compare_set(g, plan, model, InputSpec(kind="images", path=str(d / "im"), batch_size=5),
                     precision="off")
    assert compiled_trace_count(model) == 1


@pytest.mark.parametrize("inside", [False, True])
def test_a_stopped_set_keeps_the_batches_done(setup, inside):
    """Stopped after 2 batches of 4 (between batches, or inside the 3rd, which is dropped):
    the result covers 8 of the 11 images, with the figures of a run on those 8 alone."""
    d, g, plan, model, _files = setup
    state = {"stop": False}

    def progress(f, m):
        if (not inside and m == "8 of 11 samples compared") or (inside and m.startswith("samples 9-11")
                                                                 and "comparing" in m):
            state["stop"] = True

    res = flow.compare_set(g, plan, model, InputSpec(kind="images", path=str(d / "im"), batch_size=4),
                           progress=progress, cancel=lambda: state["stop"])
    assert res.cancelled and not res.passed
    assert res.n_samples == 8 and res.set_size == 11 and len(res.sample_names) == 8
    assert res.coverage_note == "stopped after 8 of 11 images; results cover those 8"
    assert res.to_dict()["coverage_note"] == res.coverage_note
    eight = flow.compare_set(g, plan, model, InputSpec(kind="images", path=str(d / "im"), batch_size=4,
                                                       limit=8))
    assert eight.passed           # the stopped run's layers pass as these do; no verdict for the set
    _same_figures(res, eight, verdict=False)
    assert all(r.shape[0] == 8 for r in res.compared)


def test_an_unreadable_image_stops_the_pipelined_set_with_its_name(setup, tmp_path):
    import threading
    d, g, plan, model, _files = setup
    folder = tmp_path / "bad"
    make_images(str(folder), 9)
    (folder / "img006.png").write_bytes(b"not an image")
    with pytest.raises(MigratorError) as e:
        flow.compare_set(g, plan, model, InputSpec(kind="images", path=str(folder), batch_size=2))
    assert "img006.png" in str(e.value)
    assert not any(t.name == "migrator-decode" and t.is_alive() for t in threading.enumerate())


def test_rate_and_time_left():
    from migrator.core.compare.sets import RATE_SEP, Rate, split_rate
    now = {"t": 100.0}
    r = Rate(1000, "images", clock=lambda: now["t"])
    assert r.text() == "" and r.eta_s is None
    now["t"] = 110.0
    r.update(40)                      # 40 images in 10 s: 4/s, 960 left: 240 s
    assert r.rate == 4.0 and r.eta_s == 240.0
    assert r.text() == "4.00 images/s, about 4 min left"
    now["t"] = 345.0
    r.update(980)
    assert r.text() == "4.00 images/s, about 5 s left"      # 980 in 245 s, 20 left
    assert split_rate("samples 1-4 of 9 (a … d): comparing c1" + RATE_SEP + "2.00 images/s") == \
        ("samples 1-4 of 9 (a … d): comparing c1", "2.00 images/s")
    assert split_rate("3 of 9 samples compared") == ("3 of 9 samples compared", "")
