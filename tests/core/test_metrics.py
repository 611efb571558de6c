"""Comparison metrics against hand-computed values."""
import numpy as np
import pytest

from migrator.core.compare.metrics import (
    Tolerance,
    compare_arrays,
    to_keras_layout,
    to_source_layout,
    topk_agreement,
)


def test_layout_round_trip():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    k = to_keras_layout(x)
    assert k.shape == (2, 4, 5, 3)
    assert k[1, 2, 3, 0] == x[1, 0, 2, 3]
    np.testing.assert_array_equal(to_source_layout(k, 4), x)
    v = np.ones((2, 7), np.float32)
    assert to_keras_layout(v) is v


def test_per_channel_figures_by_hand():
    ref = np.zeros((1, 3, 2, 2), np.float32)
    ref[0, 0] = 10.0          # layer scale = 10
    got = ref.copy()
    got[0, 1, 1, 0] = 0.5     # channel 1 off by 0.5 in one element
    got[0, 2, 0, 0] = -0.25   # channel 2 off by 0.25
    m = compare_arrays(ref, got, Tolerance(atol=0.0, rtol=0.1))
    assert m["max_abs"] == 0.5
    assert m["scale"] == 10.0
    assert m["max_rel"] == pytest.approx(0.05)
    np.testing.assert_allclose(m["channel_max_abs"], [0.0, 0.5, 0.25])
    np.testing.assert_allclose(m["channel_mean_abs"], [0.0, 0.125, 0.0625])
    assert m["worst_index"] == (0, 1, 1, 0) and m["worst_channel"] == 1
    assert m["passed"]                       # 0.5 <= 0 + 0.1 * 10
    assert m["needed_rtol"] == pytest.approx(0.05)
    assert not compare_arrays(ref, got, Tolerance(atol=0.0, rtol=0.04))["passed"]


def test_nonfinite_fails():
    ref = np.ones((1, 2), np.float32)
    got = ref.copy()
    got[0, 1] = np.nan
    m = compare_arrays(ref, got, Tolerance(atol=1e9, rtol=1e9))
    assert not m["passed"] and m["nonfinite"]


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        compare_arrays(np.zeros((1, 2)), np.zeros((1, 3)), Tolerance())


def test_topk():
    ref = np.array([[0.1, 0.5, 0.2, 0.15, 0.05]])
    got = np.array([[0.1, 0.2, 0.5, 0.15, 0.05]])
    t = topk_agreement(ref, got, k=2)
    assert t["top1_agreement"] == 0.0 and t["topk_overlap"] == 1.0


def test_a_batch_is_judged_per_sample():
    """Sample 0 is small (max |ref| 1) with an error of 1e-3; sample 1 is large (max |ref|
    1000).  Against the batch's scale 1e-3 would pass rtol 1e-4; against its own it fails."""
    ref = np.zeros((2, 1, 2, 2), np.float32)
    ref[0, 0, 0, 0] = 1.0
    ref[1, 0, 0, 0] = 1000.0
    got = ref.copy()
    got[0, 0, 1, 1] += 1e-3
    m = compare_arrays(ref, got, Tolerance(atol=0.0, rtol=1e-4))
    assert not m["passed"]
    assert list(m["sample_passed"]) == [False, True]
    assert m["sample_scale"].tolist() == [1.0, 1000.0]
    assert m["max_rel"] == pytest.approx(1e-3, rel=1e-3)           # sample 0's own
    assert m["needed_rtol"] == pytest.approx(1e-3, rel=1e-3)
    assert m["scale"] == 1000.0 and m["worst_index"][0] == 0


def test_float32_budget_rule_by_hand():
    """judge(): over the plain tolerance, exact in isolation, drift <= 4 x budget + atol, and the
    runtime confirms the float64 anchor (anchor <= anchor_factor x budget + atol)."""
    from migrator.core.compare.engine import judge
    from migrator.core.compare.metrics import FLOAT32_FACTOR, LayerResult, Tolerances

    def lr(drift, budget, iso_ok=True, plain=(False,), anchor=None):
        r = LayerResult(source="l", source_type="Conv", keras="l", layout="NHWC", shape=(1, 1),
                        status="fail", max_abs=drift, tolerance=Tolerance(atol=1e-5, rtol=1e-4))
        r.isolated = {"max_abs": 0.0, "passed": iso_ok, "sample_passed": [iso_ok] * len(plain)}
        r.samples = {"passed": np.array(plain), "drift64": np.array([drift] * len(plain)),
                     "budget64": np.array([budget] * len(plain))}
        r.drift64, r.budget64 = drift, budget
        r.anchor64 = budget if anchor is None else anchor    # the built-in runtime: numpy32 is the runtime
        r.samples["anchor64"] = np.array([r.anchor64] * len(plain))
        return r

    t = Tolerances()
    assert judge(lr(3.9e-3, 1e-3), FLOAT32_FACTOR, t) == ("pass", "float32")
    assert judge(lr(4.2e-3, 1e-3), FLOAT32_FACTOR, t) == ("fail", "drift")
    assert judge(lr(1e-3, 1e-3, iso_ok=False), FLOAT32_FACTOR, t) == ("fail", "isolated")
    assert judge(lr(1e-5, 0.0), FLOAT32_FACTOR, t) == ("pass", "float32")       # within atol
    # two samples: the one over the plain tolerance decides
    r = lr(3e-3, 1e-3, plain=(True, False))
    r.samples["drift64"] = np.array([9e-3, 3e-3])     # sample 0 passes plainly despite its drift
    assert judge(r, FLOAT32_FACTOR, t) == ("pass", "float32")
    r.samples["drift64"] = np.array([1e-4, 9e-3])
    assert judge(r, FLOAT32_FACTOR, t) == ("fail", "drift")
    nan = lr(float("nan"), 1e-3)
    assert judge(nan, FLOAT32_FACTOR, t)[0] == "fail"
    # the anchor: a runtime far from Migrator's float64 run does not confirm the budget
    assert judge(lr(3.9e-3, 1e-3, anchor=3.9e-3), FLOAT32_FACTOR, t) == ("pass", "float32")
    assert judge(lr(3.9e-3, 1e-3, anchor=4.2e-3), FLOAT32_FACTOR, t) == ("fail", "unconfirmed")
    assert judge(lr(3.9e-3, 1e-3, anchor=9e-3), FLOAT32_FACTOR, t, anchor_factor=10.0) == ("pass", "float32")
    assert judge(lr(3.9e-3, 1e-3, anchor=float("nan")), FLOAT32_FACTOR, t) == ("fail", "unconfirmed")
    assert judge(lr(4.2e-3, 1e-3, anchor=9e-3), FLOAT32_FACTOR, t) == ("fail", "drift")


def _naive(ref, got_src):
    """The figures by plain numpy on whole arrays (float64 throughout)."""
    d = np.abs(got_src.astype(np.float64) - ref.astype(np.float64))
    n, c = ref.shape[:2]
    d3 = d.reshape(n, c, -1)
    flat = int(np.argmax(np.moveaxis(d, 1, 0)[int(np.argmax(d3.max(axis=(0, 2))))]))
    return {"max_abs": d.max(), "mean_abs": d.mean(), "channel_max_abs": d3.max(axis=(0, 2)),
            "channel_mean_abs": d3.mean(axis=(0, 2)),
            "channel_ref_absmax": np.abs(ref.astype(np.float64)).reshape(n, c, -1).max(axis=(0, 2)),
            "worst_channel": int(np.argmax(d3.max(axis=(0, 2)))), "flat": flat}


@pytest.mark.parametrize("shape", [(5, 7, 6, 9), (3, 70, 5, 4), (4, 80, 11), (6, 96, 1, 1)])
def test_keras_layout_metrics_equal_plain_numpy(shape):
    """The Keras output arrives channels-last and is handed over as its channels-first view:
    the figures (taken in the Keras layout) equal plain numpy on the source-layout arrays."""
    rng = np.random.default_rng(3)
    ref = rng.standard_normal(shape).astype(np.float32)
    got_k = to_keras_layout(ref + rng.normal(0, 1e-3, shape).astype(np.float32))
    got = to_source_layout(got_k, ref.ndim)
    # the strided view, as the engine passes it (contiguous anyway when spatially 1x1)
    assert got.flags.c_contiguous == (int(np.prod(shape[2:])) == 1)
    m = compare_arrays(ref, got, Tolerance(atol=1e-2, rtol=0.0))
    want = _naive(ref, np.ascontiguousarray(got))
    assert m["max_abs"] == pytest.approx(want["max_abs"], rel=1e-6)
    assert m["mean_abs"] == pytest.approx(want["mean_abs"], rel=1e-9)
    np.testing.assert_allclose(m["channel_max_abs"], want["channel_max_abs"], rtol=1e-6)
    np.testing.assert_allclose(m["channel_mean_abs"], want["channel_mean_abs"], rtol=1e-9)
    np.testing.assert_allclose(m["channel_ref_absmax"], want["channel_ref_absmax"], rtol=0)
    c = want["worst_channel"]
    assert m["worst_channel"] == c and m["worst_index"][1] == c
    sub = np.abs(np.ascontiguousarray(got)[:, c].astype(np.float64) - ref[:, c])
    assert m["worst_index"] == (np.unravel_index(int(np.argmax(sub)), sub.shape)[0], c) + \
        tuple(int(i) for i in np.unravel_index(int(np.argmax(sub)), sub.shape)[1:])
    # the same arrays handed over contiguous: the same figures
    m2 = compare_arrays(ref, np.ascontiguousarray(got), Tolerance(atol=1e-2, rtol=0.0))
    assert m2["max_abs"] == m["max_abs"] and m2["worst_index"] == m["worst_index"]
    np.testing.assert_array_equal(m2["channel_max_abs"], m["channel_max_abs"])
    # non-finite values in the channels-last path fail and count as infinite
    bad = got_k.copy()
    bad.reshape(-1)[5] = np.nan
    m3 = compare_arrays(ref, to_source_layout(bad, ref.ndim), Tolerance())
    assert m3["nonfinite"] and not m3["passed"] and m3["max_abs"] == np.inf


def test_batch_by_batch_fold_equals_the_whole_set_by_plain_numpy():
    """An input set compared in batches of 4 and folded (SetFolder) gives the figures plain
    numpy computes on the whole concatenated arrays: worst, which sample, per channel,
    means, per-sample verdicts."""
    from migrator.core.compare.metrics import ComparisonResult, LayerResult, Tolerances
    from migrator.core.compare.sets import SetFolder
    rng = np.random.default_rng(7)
    n, shape = 11, (5, 4, 6)
    ref = rng.standard_normal((n,) + shape).astype(np.float32) * 3
    got = ref + rng.normal(0, 1e-4, ref.shape).astype(np.float32)
    got[6, 2, 1, 3] += 0.5                      # the worst element: sample 6, channel 2
    tol = Tolerance(atol=1e-3, rtol=0.0)
    names = [f"s{i}" for i in range(n)]
    folder = SetFolder(names)
    for lo in range(0, n, 4):
        hi = min(n, lo + 4)
        m = compare_arrays(ref[lo:hi], to_source_layout(to_keras_layout(got[lo:hi]), 4), tol)
        lr = LayerResult(source="conv", source_type="Convolution", keras="conv", layout="NHWC",
                         shape=(hi - lo,) + shape, status="pass" if m["passed"] else "fail",
                         max_abs=m["max_abs"], mean_abs=m["mean_abs"], max_rel=m["max_rel"],
                         scale=m["scale"], needed_rtol=m["needed_rtol"],
                         channel_max_abs=m["channel_max_abs"], channel_mean_abs=m["channel_mean_abs"],
                         channel_ref_absmax=m["channel_ref_absmax"], worst_channel=m["worst_channel"],
                         worst_index=m["worst_index"], tolerance=tol)
        folder.add(ComparisonResult(layers=[lr], runtime={}, device="cpu", input={},
                                    tolerances=Tolerances()), lo, hi - lo)
    r = folder.result().layer("conv")
    want = _naive(ref, got)
    assert r.max_abs == pytest.approx(want["max_abs"], rel=1e-6)
    assert r.worst_sample == 6 and r.sample_name == "s6" and r.worst_index[:2] == (6, 2)
    assert r.mean_abs == pytest.approx(want["mean_abs"], rel=1e-9)
    np.testing.assert_allclose(r.channel_max_abs, want["channel_max_abs"], rtol=1e-6)
    np.testing.assert_allclose(r.channel_mean_abs, want["channel_mean_abs"], rtol=1e-9)
    np.testing.assert_array_equal(r.channel_ref_absmax, want["channel_ref_absmax"])
    scale = np.abs(ref.astype(np.float64)).reshape(n, -1).max(axis=1)
    smax = np.abs(got.astype(np.float64) - ref).reshape(n, -1).max(axis=1)
    assert r.max_rel == pytest.approx((smax / scale).max(), rel=1e-6)
    assert r.status == "fail" and r.shape == (n,) + shape


# -- compare_arrays against a plain formula on whole arrays, every figure -----------------------

def _plain(ref, got, tol, whole=False):
    """Every figure of compare_arrays written out on whole arrays: |got - ref| in float32 (the
    stated precision of a difference), everything after it in float64; a non-finite difference
    counts as infinite; the worst element is the first (C order over sample and position)
    holding the worst channel's maximum."""
    d = np.abs(np.ascontiguousarray(got, dtype=np.float32) - np.ascontiguousarray(ref, dtype=np.float32))
    nonfinite = not np.isfinite(d).all()
    d = d.astype(np.float64)
    d[~np.isfinite(d)] = np.inf
    a = np.abs(ref.astype(np.float64))
    n, c = ref.shape[0], ref.shape[1]
    dnc, anc = d.reshape(n, c, -1), a.reshape(n, c, -1)
    ch_max, s_max = dnc.max(axis=(0, 2)), dnc.max(axis=(1, 2))
    ch_ref, s_scale = anc.max(axis=(0, 2)), anc.max(axis=(1, 2))
    wc = int(np.argmax(ch_max))
    first = np.argwhere(np.moveaxis(d, 1, 0)[wc] == ch_max[wc])[0]
    if whole:
        s_max, s_scale = np.array([d.max()]), np.array([a.max()])
    denom = np.maximum(s_scale, 1e-30)
    s_passed = np.isfinite(s_max) & (s_max <= tol.atol + tol.rtol * s_scale)
    needed = np.maximum(0.0, (s_max - tol.atol) / denom)
    return {"max_abs": d.max(), "mean_abs": d.mean(), "scale": a.max(), "channel_max_abs": ch_max,
            "channel_mean_abs": dnc.mean(axis=(0, 2)), "channel_ref_absmax": ch_ref,
            "worst_channel": wc, "worst_index": (int(first[0]), wc) + tuple(int(i) for i in first[1:]),
            "nonfinite": nonfinite, "passed": (not nonfinite) and bool(s_passed.all()),
            "sample_max_abs": s_max, "sample_scale": s_scale, "sample_passed": s_passed,
            "sample_max_rel": s_max / denom, "max_rel": (s_max / denom).max(),
            "sample_needed_rtol": needed, "needed_rtol": needed.max()}


def _assert_figures(m, want):
    for k, v in want.items():
        if k in ("mean_abs", "channel_mean_abs"):      # float64 sums in another order
            np.testing.assert_allclose(m[k], v, rtol=1e-9, atol=0, err_msg=k)
        elif isinstance(v, np.ndarray):
            np.testing.assert_array_equal(np.asarray(m[k]), v, err_msg=k)
        elif isinstance(v, float) and np.isnan(v):
            assert np.isnan(m[k]), k
        else:
            assert m[k] == v, (k, m[k], v)


def _pair(rng, shape, keras_view, ties=False):
    """A reference and a Keras-like output near it: the channels-first view of a channels-last
    array (as the engine hands it over) or a contiguous array."""
    if ties:       # multiples of 1/4: exact differences, many equal maxima
        ref = rng.integers(-8, 9, shape).astype(np.float32) / 4
        got = ref + rng.integers(-2, 3, shape).astype(np.float32) / 4
    else:
        ref = (rng.standard_normal(shape) * rng.uniform(0.1, 10.0)).astype(np.float32)
        got = ref + rng.normal(0, 1e-3, shape).astype(np.float32)
    if keras_view and len(shape) >= 3:
        got = to_source_layout(np.ascontiguousarray(np.moveaxis(got, 1, -1)), len(shape))
    return ref, got


_SHAPES = [(4, 7, 6, 9), (3, 70, 5, 4), (2, 130, 3, 5), (4, 80, 11), (6, 96, 1, 1), (5, 1, 6, 7),
           (3, 3, 10, 12), (2, 64, 2, 3, 4), (3, 5, 2, 3, 4), (7, 13), (1, 200), (9, 1), (2, 66, 33),
           (2, 5, 20, 12), (3, 7, 300), (2, 20, 15, 16)]      # the last three: spatial blocks too


@pytest.fixture(params=[("opencv", 16), ("opencv", 3), ("numpy", 16), ("numpy", 3), ("whole", 16)],
                ids=["opencv-tiles", "opencv-narrow-tiles", "numpy-tiles", "numpy-narrow-tiles", "whole-arrays"])
def kernels(request, monkeypatch):
    """Both kernels (OpenCV's transpose/absdiff/row reductions, numpy's), tiles small enough
    that these small arrays are cut up (blocks of channels, spatial blocks, groups of
    samples), shared out over threads; and the whole-array path of small arrays."""
    from migrator.core.compare import metrics
    kernel, block = request.param
    if kernel == "opencv":
        pytest.importorskip("cv2")
    monkeypatch.setattr(metrics, "WHOLE_MAX_BYTES", 2**62 if kernel == "whole" else 0)
    monkeypatch.setattr(metrics, "USE_OPENCV", kernel == "opencv")
    monkeypatch.setattr(metrics, "CHANNEL_BLOCK", block)
    monkeypatch.setattr(metrics, "TILE_ELEMS", 37)
    monkeypatch.setattr(metrics, "PARALLEL_MIN_BYTES", 0)
    return kernel


@pytest.mark.parametrize("shape", _SHAPES)
@pytest.mark.parametrize("keras_view", [True, False])
def test_every_figure_equals_the_plain_formula(kernels, shape, keras_view):
    rng = np.random.default_rng(sum(shape) + keras_view)
    ref, got = _pair(rng, shape, keras_view)
    tol = Tolerance(atol=1e-3, rtol=1e-4)
    for whole in (False, True):
        _assert_figures(compare_arrays(ref, got, tol, whole=whole), _plain(ref, got, tol, whole))
    tight = Tolerance(atol=0.0, rtol=1e-7)             # the verdicts fail too
    _assert_figures(compare_arrays(ref, got, tight), _plain(ref, got, tight))


@pytest.mark.parametrize("shape", [(4, 70, 5, 4), (5, 3, 6, 7), (3, 9, 8), (2, 64, 2, 3, 4), (6, 11)])
@pytest.mark.parametrize("seed", range(4))
def test_ties_pick_the_first_worst_element(kernels, shape, seed):
    """Many equal maxima (in several samples and channels): the first channel holding the
    largest and, in it, the first element in C order, as the plain formula."""
    rng = np.random.default_rng(seed)
    ref, got = _pair(rng, shape, keras_view=seed % 2 == 0, ties=True)
    tol = Tolerance(atol=0.1, rtol=0.0)
    _assert_figures(compare_arrays(ref, got, tol), _plain(ref, got, tol))


@pytest.mark.parametrize("shape", [(4, 70, 5, 4), (3, 5, 6, 7), (2, 66, 33), (3, 64, 2, 3, 4), (5, 9), (2, 1, 4, 4),
                                   (2, 20, 15, 16)])
@pytest.mark.parametrize("seed", range(6))
def test_nan_and_inf_anywhere(kernels, shape, seed):
    """NaN and inf in either array, at random places and in the channel that would otherwise
    be the worst: non-finite, max_abs inf, failed, the sums infinite, NaN in the reference's
    scale where the reference has one; every figure as the plain formula."""
    rng = np.random.default_rng(100 + seed)
    ref, got = _pair(rng, shape, keras_view=seed % 2 == 0)
    got = np.array(got, copy=True) if seed % 3 else got            # a contiguous copy or the view
    worst = int(np.argmax(np.abs(got - ref).reshape(shape[0], shape[1], -1).max(axis=(0, 2))))
    target = [(got, np.nan), (got, np.inf), (ref, np.nan), (got, -np.inf), (ref, np.inf), (got, np.nan)][seed]
    arr, val = target
    idx = tuple(int(rng.integers(0, k)) for k in shape)
    arr[idx] = val
    if seed % 2:                                                    # also inside the worst channel
        arr[(int(rng.integers(0, shape[0])), worst) + idx[2:]] = val
    tol = Tolerance(atol=1e9, rtol=1e9)
    m = compare_arrays(ref, got, tol)
    assert m["nonfinite"] and not m["passed"] and m["max_abs"] == np.inf
    _assert_figures(m, _plain(ref, got, tol))
    _assert_figures(compare_arrays(ref, got, tol, whole=True), _plain(ref, got, tol, whole=True))


@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (2, 0, 3), (2, 3, 0, 4), (0, 5)])
def test_empty_arrays(kernels, shape):
    ref = np.zeros(shape, np.float32)
    got = to_source_layout(to_keras_layout(ref), len(shape))
    m = compare_arrays(ref, got, Tolerance())
    assert m["passed"] and not m["nonfinite"] and m["max_abs"] == 0.0 and m["worst_index"] is None
    assert m["channel_max_abs"].shape == (shape[1],)


@pytest.mark.parametrize("shape,keras_view", [((16, 128, 20, 24), True), ((3, 40, 70, 60), True),
                                              ((16, 32, 40, 28), True), ((4, 200, 30, 30), False),
                                              ((2, 5000, 300), False), ((3, 300, 900), True),
                                              ((64, 5000), False)])
def test_large_arrays_on_the_default_tiles(shape, keras_view):
    """Arrays of several MB (several tiles per sample or several samples per tile, shared out
    to the worker threads) with the module's own tile size; NaN in one sample's last tile."""
    rng = np.random.default_rng(len(shape) + shape[1])
    ref, got = _pair(rng, shape, keras_view)
    tol = Tolerance(atol=1e-3, rtol=1e-4)
    _assert_figures(compare_arrays(ref, got, tol), _plain(ref, got, tol))
    got = np.array(got, copy=True)
    got[(-1, 1) + (-1,) * (got.ndim - 2)] = np.nan
    _assert_figures(compare_arrays(ref, got, tol), _plain(ref, got, tol))


def test_one_dimensional_and_other_dtypes():
    rng = np.random.default_rng(5)
    ref = rng.standard_normal(50).astype(np.float32)
    got = ref + rng.normal(0, 1e-3, 50).astype(np.float32)
    m = compare_arrays(ref, got, Tolerance(atol=1e-3, rtol=0.0))
    d = np.abs(got - ref).astype(np.float64)
    assert m["max_abs"] == d.max() and m["worst_index"] == (int(np.argmax(d)),)
    assert m["scale"] == np.abs(ref).max() and m["mean_abs"] == pytest.approx(d.mean(), rel=1e-12)
    ref4 = rng.standard_normal((2, 70, 3, 3))                    # float64 in: compared in float32
    got4 = ref4 + 1e-3
    tol = Tolerance()
    _assert_figures(compare_arrays(ref4, got4, tol), _plain(ref4.astype(np.float32), got4.astype(np.float32), tol))


@pytest.mark.parametrize("keras_view", [True, False])
def test_nan_after_inf_in_the_worst_channel(kernels, keras_view):
    """A NaN counts as infinite: with an inf before it (C order) in the same channel, the worst
    element is the inf, as the plain formula says; NaN before inf: the NaN."""
    rng = np.random.default_rng(9)
    for first, second in ((np.inf, np.nan), (np.nan, -np.inf)):
        ref, got = _pair(rng, (3, 70, 4, 5), keras_view)
        got = np.array(got, copy=True)
        got[1, 7, 1, 2], got[1, 7, 3, 0] = first, second
        got[2, 7, 0, 0] = np.nan
        m = compare_arrays(ref, got, Tolerance())
        assert m["worst_index"] == (1, 7, 1, 2)
        _assert_figures(m, _plain(ref, got, Tolerance()))


def test_numpy_kernel_without_opencv(monkeypatch):
    """cv2 missing (import fails): numpy's transpose and sums, the same figures."""
    import sys

    from migrator.core.compare import metrics
    monkeypatch.setattr(metrics, "_CV2", {})
    monkeypatch.setattr(metrics, "WHOLE_MAX_BYTES", 0)
    monkeypatch.setitem(sys.modules, "cv2", None)               # import cv2 -> ImportError
    assert metrics.opencv_module() is None
    rng = np.random.default_rng(11)
    ref, got = _pair(rng, (3, 130, 7, 9), keras_view=True)
    tol = Tolerance(atol=1e-3, rtol=0.0)
    _assert_figures(compare_arrays(ref, got, tol), _plain(ref, got, tol))
