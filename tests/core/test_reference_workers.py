"""The reference's fast paths against formulas written here: whole-batch GEMM convolution (every
path: per-image 1x1, gathered per-image, gathered block + pass back to NCHW, one image, chunked
im2col) with its pieces shared over worker threads, pooling without a padded copy, the cut
element-wise kernels, the work-buffer sessions and the thread pool itself."""
from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest

from migrator.core.reference import numpy_ref, workers
from migrator.core.reference.kernels import KERNELS, conv, pool2d
from migrator.core.reference.kernels.registry import scratch, scratch_session
from tests.core.naive_ops import caffe_pool


def naive_conv(x, w, b=None, stride=(1, 1), pad=(0, 0), dilation=(1, 1), group=1):
    """y[n, o, i, j] = sum_{c, a, e} xpad[n, g*Cg + c, i*s + a*d, j*s + e*d] * w[o, c, a, e] + b[o],
    in float64, one kernel offset at a time (no im2col, no GEMM)."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    N, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    Ho = (H + 2 * pad[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    Wo = (W + 2 * pad[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    y = np.zeros((N, O, Ho, Wo))
    Og = O // group
    for g in range(group):
        for a in range(kh):
            for e in range(kw):
                r, c = a * dilation[0], e * dilation[1]
                patch = xp[:, g * Cg:(g + 1) * Cg, r:r + stride[0] * (Ho - 1) + 1:stride[0],
                           c:c + stride[1] * (Wo - 1) + 1:stride[1]]
                y[:, g * Og:(g + 1) * Og] += np.einsum("nchw,oc->nohw", patch, w[g * Og:(g + 1) * Og, :, a, e])
    if b is not None:
        y += b.reshape(1, O, 1, 1) if b.ndim == 1 else b[None]
    return y


@pytest.fixture(params=["1", "2", "3"], ids=lambda t: f"threads{t}")
def threaded(request, monkeypatch):
    """Every piece of work parallel (no size threshold), with 1, 2 or 3 threads."""
    monkeypatch.setenv("MIGRATOR_REFERENCE_THREADS", request.param)
    monkeypatch.setattr(workers, "PARALLEL_MIN_BYTES", 0)
    return int(request.param)


# (N, C, H, W), (O, kh, kw), stride, pad, dilation, group: one case per conv2d path
CONV_CASES = [
    ((3, 4, 12, 12), (6, 1, 1), (1, 1), (0, 0), (1, 1), 1),      # 1x1, per image (P >= 128)
    ((3, 4, 5, 6), (6, 1, 1), (1, 1), (0, 0), (1, 1), 2),        # 1x1, small images: gathered block
    ((1, 4, 9, 7), (32, 1, 1), (1, 1), (0, 0), (1, 1), 1),       # 1x1, one image: output-channel blocks
    ((3, 4, 48, 50), (5, 3, 3), (1, 1), (1, 1), (1, 1), 1),      # gathered, per image (P >= 2048)
    ((4, 4, 11, 13), (6, 3, 3), (2, 1), (1, 2), (1, 1), 2),      # gathered block, strided, padded
    ((2, 3, 17, 15), (4, 7, 7), (2, 2), (3, 3), (1, 1), 1),      # conv_1-like
    ((2, 4, 12, 12), (6, 3, 2), (1, 1), (2, 1), (2, 3), 1),      # dilated
    ((1, 6, 10, 9), (33, 3, 3), (1, 1), (1, 1), (1, 1), 3),      # one image, gathered, groups
    ((5, 4, 8, 8), (6, 1, 1), (2, 2), (0, 0), (1, 1), 1),        # 1x1 stride 2: gathered
]


@pytest.mark.parametrize("case", CONV_CASES, ids=[f"c{i}" for i in range(len(CONV_CASES))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [None, "tied", "untied"])
def test_conv2d_paths_match_the_formula(threaded, case, dtype, bias):
    (N, C, H, W), (O, kh, kw), s, p, d, g = case
    rng = np.random.default_rng(7)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((O, C // g, kh, kw)).astype(dtype)
    want0 = naive_conv(x, w, None, s, p, d, g)
    b = None if bias is None else rng.standard_normal((O,) if bias == "tied" else want0.shape[1:]).astype(dtype)
    want = naive_conv(x, w, b, s, p, d, g)
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}
    with scratch_session(), workers.kernel_threads():
        got = conv.conv2d(x, w, s, p, d, g, bias=b)
        again = conv.conv2d(x, w, s, p, d, g, bias=b)       # reused work buffers give the same
    assert got.dtype == dtype and got.shape == want.shape and got.flags.c_contiguous
    np.testing.assert_allclose(got, want, **tol)
    np.testing.assert_array_equal(again, got)
    np.testing.assert_allclose(conv.conv2d(x, w, s, p, d, g, bias=b), want, **tol)   # outside a session


def test_conv2d_chunked_im2col(threaded, monkeypatch):
    """An im2col larger than IM2COL_MAX_ELEMENTS is built a few images at a time."""
    monkeypatch.setattr(conv, "IM2COL_MAX_ELEMENTS", 3 * 4 * 9 * 100)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((7, 4, 10, 10)).astype(np.float32)
    w = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    with scratch_session(), workers.kernel_threads():
        got = conv.conv2d(x, w, (1, 1), (1, 1), bias=b)
    np.testing.assert_allclose(got, naive_conv(x, w, b, pad=(1, 1)), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", ["max", "ave"])
def test_pool2d_matches_caffe_loops(threaded, mode):
    rng = np.random.default_rng(5)
    n = 0
    for (H, W), k, s, p in itertools.product([(7, 8), (13, 6)], [2, 3], [1, 2, 3], [0, 1]):
        if p >= k or (mode == "ave" and s > k):       # (AVE over an empty window: not this test's)
            continue
        x = rng.standard_normal((3, 5, H, W)).astype(np.float32)
        want = caffe_pool(x, mode, (k, k), (s, s), (p, p))
        got = pool2d(x, "max" if mode == "max" else "avg", (k, k), (s, s), (p, p), "caffe_ceil", "caffe")
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        n += 1
    assert n == (24 if mode == "max" else 20)


def test_max_pool_empty_window_and_non_finite(threaded):
    """Caffe ceil mode with stride > kernel leaves windows wholly past the input: -FLT_MAX; a
    NaN in a window gives NaN; -inf inside the input stays -inf unless the window reaches out."""
    x = np.zeros((1, 2, 5, 5), np.float32)
    x[0, 0] = -np.inf
    x[0, 1, 0, 0] = np.nan
    y = pool2d(x, "max", (1, 1), (3, 3), (0, 0), "caffe_ceil")
    assert y.shape == (1, 2, 3, 3)                             # windows at 0, 3 and 6 (past the input)
    assert y[0, 0, 0, 0] == -np.inf and y[0, 0, 1, 1] == -np.inf
    assert y[0, 0, 2, 2] == y[0, 1, 0, 2] == np.finfo(np.float32).min
    y = pool2d(x, "max", (2, 2), (3, 3), (1, 1), "caffe_ceil")
    assert y[0, 0, 0, 0] == np.finfo(np.float32).min           # the window reaches the padding
    assert np.isnan(y[0, 1, 0, 0]) and y[0, 1, 1, 1] == 0


@pytest.mark.parametrize("n", [3, 5])
def test_element_wise_kernels_in_pieces(threaded, n):
    """BatchNorm (Caffe and Lasagne forms), Scale, ReLU and Eltwise cut into pieces give the
    formulas' float32 values exactly (the same operations, element by element); with 5 samples
    the per-channel parameters are spread over a sample first (workers.sample_plane)."""
    from migrator.core.ir import Node, Param
    rng = np.random.default_rng(11)
    x = rng.standard_normal((n, 6, 5, 7)).astype(np.float32)
    m, v = rng.standard_normal(6).astype(np.float32), rng.uniform(0.5, 2, 6).astype(np.float32)
    bn = Node("bn", "BatchNorm", inputs=["x"], attrs={"form": "caffe", "eps": 1e-5},
              params={"mean": Param("m", m), "variance": Param("v", v), "scale_factor": Param("scale_factor", np.ones(1, np.float32))})
    want = (x - m.reshape(1, -1, 1, 1)) / np.sqrt(v.reshape(1, -1, 1, 1) + np.float32(1e-5))
    np.testing.assert_array_equal(KERNELS["BatchNorm"](bn, [x])[0], want)
    g, b = rng.standard_normal(6).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    sc = Node("sc", "Scale", inputs=["x"], attrs={"axis": 1, "num_axes": 1},
              params={"scale": Param("g", g), "bias": Param("b", b)})
    np.testing.assert_array_equal(KERNELS["Scale"](sc, [x])[0], x * g.reshape(1, -1, 1, 1) + b.reshape(1, -1, 1, 1))
    istd = (1 / np.sqrt(v + 1e-4)).astype(np.float32)
    la = Node("la", "BatchNorm", inputs=["x"], attrs={"form": "lasagne", "axes": "auto"},
              params={"mean": Param("m", m), "inv_std": Param("istd", istd), "gamma": Param("g", g), "beta": Param("b", b)})

    def r(a):
        return a.reshape(1, -1, 1, 1)
    np.testing.assert_array_equal(KERNELS["BatchNorm"](la, [x])[0], (x - r(m)) * (r(g) * r(istd)) + r(b))
    relu = Node("relu", "Activation", inputs=["x"], attrs={"kind": "relu", "negative_slope": 0.0})
    np.testing.assert_array_equal(KERNELS["Activation"](relu, [x])[0], np.maximum(x, 0))
    y = rng.standard_normal(x.shape).astype(np.float32)
    elt = Node("elt", "Eltwise", inputs=["x", "y"], attrs={"operation": "sum"})
    np.testing.assert_array_equal(KERNELS["Eltwise"](elt, [x, y, x])[0], x + y + x)


def test_parallel_order_errors_and_nesting(threaded):
    assert workers.parallel(lambda k: k * k, range(20)) == [k * k for k in range(20)]
    inner = workers.parallel(lambda k: workers.parallel(lambda j: (k, j), range(3)), range(4))
    assert inner == [[(k, j) for j in range(3)] for k in range(4)]

    def boom(k):
        if k == 7:
            raise ValueError("piece 7")
        return k
    with pytest.raises(ValueError, match="piece 7"):
        workers.parallel(boom, range(12))
    assert workers.parallel(lambda k: k, range(5)) == list(range(5))    # the pool still works


def test_tiles_cover_the_array_once(threaded):
    for shape in [(16, 3, 8, 8), (1, 9, 4), (2, 5), (40,), (3, 1, 2)]:
        hits = np.zeros(shape, int)
        for idx in workers.tiles(shape, 4):
            hits[idx] += 1
        assert (hits == 1).all(), shape


def test_kernel_threads_restore_blas_threads():
    before = workers.blas_info()["threads"]
    if before is None:
        pytest.skip("numpy's BLAS thread count is not readable here")
    with workers.kernel_threads():
        if workers.threads() > 1:
            assert workers.blas_info()["threads"] == 1
    assert workers.blas_info()["threads"] == before
    errors = []

    def run():
        try:
            for _ in range(20):
                with workers.kernel_threads():
                    pass
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    ts = [threading.Thread(target=run) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors and workers.blas_info()["threads"] == before


def test_scratch_sessions_reuse_and_release(monkeypatch):
    from migrator.core.reference.kernels import registry
    monkeypatch.setattr(registry, "SCRATCH_KEEP_MIN_BYTES", 0)
    a = scratch("t", (4, 5), np.float32)
    b = scratch("t", (4, 5), np.float32)
    assert not np.shares_memory(a, b)                   # outside a session: fresh arrays
    with scratch_session():
        a = scratch("t", (4, 5), np.float32)
        b = scratch("t", (2, 3), np.float32)
        c = scratch("t", (4, 5), np.float64)
        assert np.shares_memory(a, b) and not np.shares_memory(a, c)
        with scratch_session():                          # nested (streams side by side)
            assert np.shares_memory(scratch("t", (4, 5), np.float32), a)
        assert np.shares_memory(scratch("t", (4, 5), np.float32), a)
    assert not np.shares_memory(scratch("t", (4, 5), np.float32), a)


def test_finite_check_survives_an_overflowing_sum():
    """Finite outputs whose sum overflows float32 are not an overflow of the layer."""
    from migrator.core.ir import Graph, Node, Param
    big = np.full((1, 2, 4, 4), 3e38, np.float32)
    g = Graph("caffe", [Node("data", "Input", attrs={"shape": (None, 2, 4, 4)}),
                        Node("sc", "Scale", inputs=["data"], attrs={"axis": 1, "num_axes": 1},
                             params={"scale": Param("scale", np.ones(2, np.float32))})])
    out = numpy_ref.run_all(g, big)["sc"][0]
    np.testing.assert_array_equal(out, big)


def test_pieces_run_under_the_callers_numpy_error_state():
    """A piece on a worker thread follows the caller's np.errstate (a kernel's "ignore
    overflow" holds in every thread: no RuntimeWarning from a worker)."""
    import warnings
    x = np.full((64, 1 << 15), 3e38, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="ignore"):
            outs = workers.parallel(lambda s: float(np.sum(x[s] * np.float32(10))), workers.split(64, 8))
    assert all(np.isinf(v) for v in outs)
    with np.errstate(over="raise"), pytest.raises(FloatingPointError):
        workers.parallel(lambda s: x[s] * np.float32(10), workers.split(64, 8))


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan, 2e19, -3e38])
def test_finite_check_finds_every_non_finite_value(threaded, bad):
    """The overflow check's one-pass test (a sum of squares per piece) on large arrays: an inf,
    -inf or NaN anywhere is found; huge finite values (whose squares overflow) are not an
    overflow; non-contiguous arrays are tested too."""
    from migrator.core.reference.numpy_ref import all_finite
    rng = np.random.default_rng(2)
    for dtype in (np.float32, np.float64):
        a = rng.standard_normal((6, 5, 64, 70)).astype(dtype)
        assert all_finite(a) and all_finite(a[:, ::2])
        for where in [(0, 0, 0, 0), (5, 4, 63, 69), (3, 2, 17, 9)]:
            b = a.copy()
            b[where] = bad
            assert all_finite(b) == bool(np.isfinite(b).all()), (dtype, where)
            assert all_finite(b[:, ::-1]) == bool(np.isfinite(b).all())


def test_sample_plane_spreads_only_per_channel_parameters():
    p = np.arange(6, dtype=np.float32).reshape(1, 6, 1, 1)
    plane = workers.sample_plane(p, (5, 6, 4, 3))
    assert plane.shape == (1, 6, 4, 3) and plane.flags.c_contiguous
    np.testing.assert_array_equal(plane, np.broadcast_to(p, (1, 6, 4, 3)))
    assert workers.sample_plane(p, (2, 6, 4, 3)) is p                   # few samples: not worth it
    assert workers.sample_plane(p, (5, 6, 100, 100)).shape == (1, 6, 1, 1)   # many positions
    q = np.ones((5, 6, 1, 1), np.float32)                                # varies along the batch
    assert workers.sample_plane(q, (5, 6, 4, 3)) is q
    assert workers.sample_plane(np.float32(2), (5, 6, 4, 3)) == 2
