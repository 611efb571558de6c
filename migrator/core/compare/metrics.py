"""Per-layer, per-channel comparison metrics and tolerances.

For every source layer that has a Keras counterpart we compare the reference output
(source layout, NCHW) with the Keras output (channels-last), after transposing the
reference into the Keras layout.  Figures, per layer and per channel:

* ``max_abs``  = max |keras - ref|
* ``mean_abs`` = mean |keras - ref|
* ``max_rel``  = max_abs / scale, where scale = max |ref| of the *layer* (the
  reference's scale; a tiny floor avoids dividing by zero)

A layer passes when ``max_abs <= atol + rtol * scale`` (defaults below; per-layer
overridable).  ``needed_rtol`` is the smallest rtol that would pass with the given atol
(Polygraphy's "minimum required tolerance").

A layer that misses that tolerance gets a second look (:mod:`.isolate`): its Keras
layer(s) run on the reference's *own* inputs (``isolated``: is the mapping itself
right?), and the built-in reference runs again in float64 to measure what float32 itself
costs on this input (``budget64`` = max |ref32 - ref64|) next to Keras's chained drift
(``drift64`` = max |keras - ref64|).  It then passes (``basis='float32'``) when it
reproduces the reference in isolation AND ``drift64 <= FLOAT32_FACTOR * budget64 + atol``:
Keras drifts no more than a float32 implementation of the source itself does.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-4
_TINY = 1e-30
# Keras's chained drift from the float64 reference may be this many times the float32
# reference's own drift (measured on correct deep nets, tests/core/test_verdict.py and
# benchmarks/bench_core.py: the ratio stays below ~2.5; seeded defects give 10x-10^6x).
FLOAT32_FACTOR = 4.0


@dataclass
class Tolerance:
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL

    def to_dict(self):
        return {"atol": self.atol, "rtol": self.rtol}


@dataclass
class Tolerances:
    default: Tolerance = field(default_factory=Tolerance)
    per_layer: dict[str, Tolerance] = field(default_factory=dict)

    def for_layer(self, name: str) -> Tolerance:
        return self.per_layer.get(name, self.default)

    def to_dict(self):
        return {"default": self.default.to_dict(),
                "per_layer": {k: v.to_dict() for k, v in self.per_layer.items()}}


@dataclass
class LayerResult:
    source: str
    source_type: str
    keras: str | None
    layout: str
    shape: tuple | None                  # source-layout shape of the compared tensor
    status: str                          # 'pass' | 'fail' | 'fused' | 'not-compared'
    max_abs: float = float("nan")
    mean_abs: float = float("nan")
    max_rel: float = float("nan")
    scale: float = float("nan")
    tolerance: Tolerance | None = None
    needed_rtol: float = float("nan")
    channel_max_abs: np.ndarray | None = None    # (C,)
    channel_mean_abs: np.ndarray | None = None   # (C,)
    channel_ref_absmax: np.ndarray | None = None  # (C,)
    worst_channel: int | None = None
    worst_index: tuple | None = None     # NCHW index of the worst element
    note: str = ""
    isolated: dict | None = None         # failing layers: metrics on the reference's own inputs
    drift64: float = float("nan")        # max |keras - ref64| (chained Keras vs float64 reference)
    budget64: float = float("nan")       # max |numpy32 - numpy64| (what float32 itself costs here)
    anchor64: float = float("nan")       # max |runtime - numpy64| (does the chosen runtime confirm it?)
    basis: str = ""                      # why it passed/failed: 'tolerance' | 'float32' | ''
    samples: dict | None = field(default=None, repr=False)   # per-sample arrays (not serialised)
    worst_sample: int | None = None      # input sets: the sample with the worst max_abs
    sample_name: str | None = None       # ... and its name (file) when known
    outputs: list | None = None          # multi-output nodes: every output's figures (output 0 first)
    whole: bool = False                  # axis 0 is not the batch (a batch-moving reshape): one tensor

    @property
    def isolated_max_abs(self) -> float:
        v = (self.isolated or {}).get("max_abs")
        return float("nan") if v is None else float(v)

    @property
    def drift_ratio(self) -> float:
        """drift64 / budget64 (nan when not measured)."""
        if not (np.isfinite(self.drift64) and np.isfinite(self.budget64)):
            return float("nan")
        return self.drift64 / max(self.budget64, _TINY)

    @property
    def passed(self) -> bool:
        return self.status in ("pass", "fused", "not-compared")

    def to_dict(self) -> dict[str, Any]:
        def f(v):
            return None if v is None or (isinstance(v, float) and not np.isfinite(v)) else float(v)
        d = {"source": self.source, "source_type": self.source_type, "keras": self.keras,
             "layout": self.layout, "shape": list(self.shape) if self.shape else None,
             "status": self.status, "max_abs": f(self.max_abs), "mean_abs": f(self.mean_abs),
             "max_rel": f(self.max_rel), "scale": f(self.scale),
             "tolerance": self.tolerance.to_dict() if self.tolerance else None,
             "needed_rtol": f(self.needed_rtol),
             "worst_channel": self.worst_channel,
             "worst_index": list(self.worst_index) if self.worst_index else None,
             "note": self.note, "basis": self.basis or None,
             "isolated_max_abs": f(self.isolated_max_abs), "drift64": f(self.drift64),
             "budget64": f(self.budget64), "anchor64": f(self.anchor64),
             "drift_ratio": f(self.drift_ratio)}
        if self.whole:
            d["whole"] = True
        if self.worst_sample is not None:
            d["worst_sample"] = self.worst_sample
            d["worst_sample_name"] = self.sample_name
        if self.isolated is not None:
            d["isolated"] = {k: (f(v) if isinstance(v, float) else v) for k, v in self.isolated.items()}
        if self.outputs is not None:
            d["outputs"] = [{k: (f(v) if isinstance(v, float) else v) for k, v in o.items()} for o in self.outputs]
        if self.channel_max_abs is not None:
            d["channels"] = {"max_abs": [float(x) for x in self.channel_max_abs],
                             "mean_abs": [float(x) for x in self.channel_mean_abs],
                             "ref_absmax": [float(x) for x in self.channel_ref_absmax]}
        return d


#: Keras layout tags of tensors kept in the source's own order: sequences (N, T, F)
SOURCE_ORDER_LAYOUTS = frozenset({"NTF", "TNF"})


def to_source_layout(keras_out: np.ndarray, source_rank: int, layout: str | None = None) -> np.ndarray:
    """Keras array -> source layout.  Channels-last (rank >= 3 moves the last axis to 1),
    unless ``layout`` (the mapping's Keras layout tag) says the tensor is in the source order
    already (a sequence, ``'NTF'``)."""
    if layout in SOURCE_ORDER_LAYOUTS or keras_out.ndim != source_rank or source_rank <= 2:
        return keras_out
    perm = (0, source_rank - 1) + tuple(range(1, source_rank - 1))
    return np.transpose(keras_out, perm)


def to_keras_layout(src: np.ndarray, layout: str | None = None) -> np.ndarray:
    """Source array -> the Keras layout: channels-last, unless ``layout`` (the Keras layout tag
    of that input) keeps the source order (a sequence (N, T, F), ``'NTF'``)."""
    if src.ndim <= 2 or layout in SOURCE_ORDER_LAYOUTS:
        return src
    perm = (0,) + tuple(range(2, src.ndim)) + (1,)
    return np.ascontiguousarray(np.transpose(src, perm))


#: arrays of at most this many bytes are reduced whole, in a few numpy passes (they stay in
#: the cache; tiles would only add steps -- measured: tiles win from about 256 KB on)
WHOLE_MAX_BYTES = 1 << 18
#: an array pair of at least this many bytes (each) is reduced on the worker threads
#: (:func:`migrator.core.reference.workers.parallel`), in tiles twice as large (fewer Python
#: steps contending for the GIL); smaller ones on the calling thread (measured on 2 cores:
#: threads lose below about 4 MB)
PARALLEL_MIN_BYTES = 4 << 20
#: elements of |got - ref| held at once (a 512 KB float32 tile: it and the inputs' pieces it
#: is made of stay in the core's cache)
TILE_ELEMS = 1 << 17
#: runs of consecutive tiles per worker thread
PIECES_PER_THREAD = 2
#: channels per tile at least: 256 bytes of each position of a channels-last float32 array,
#: whole cache lines read (measured: 32 to 64 channels read fastest, 16 and fewer slower)
CHANNEL_BLOCK = 64
#: a tile over all positions of a channel block holds at most this many tiles' elements
#: (larger: the positions are cut into blocks too)
SPATIAL_MAX_TILES = 8
#: take OpenCV's transpose, absdiff and row reductions when cv2 is installed (False: numpy
#: only; the same figures)
USE_OPENCV = True


def compare_arrays(ref: np.ndarray, got_source_layout: np.ndarray, tol: Tolerance,
                   whole: bool = False) -> dict[str, Any]:
    """Metrics of ``got`` against ``ref``, both in source layout (channel axis 1).
    ``whole``: axis 0 is not the batch (a reshape moved or mixed it): the per-sample figures
    are those of the whole tensor, one "sample".

    Differences are taken in float32 (the difference of two nearby float32 values is exact,
    Sterbenz); sums for the means are accumulated in float64.  The arrays are read once, tile
    by tile (:func:`_reduce_tiles`): each tile's |got - ref| stays in the cache and is reduced
    there to per-(sample, channel) maxima and sums; large arrays' tiles are shared out to the
    worker threads.  The worst element is then searched for in one channel of one sample."""
    if ref.shape != got_source_layout.shape:
        raise ValueError(f"shape mismatch: reference {ref.shape} vs Keras {got_source_layout.shape}")
    ref32 = np.asarray(ref, dtype=np.float32)
    got32 = np.asarray(got_source_layout, dtype=np.float32)
    if ref32.size == 0:
        c = ref.shape[1] if ref.ndim >= 2 else 1
        z = np.zeros(c)
        return {"max_abs": 0.0, "mean_abs": 0.0, "max_rel": 0.0, "scale": 0.0, "channel_max_abs": z,
                "channel_mean_abs": z, "channel_ref_absmax": z, "worst_index": None,
                "worst_channel": None, "passed": True, "needed_rtol": 0.0, "nonfinite": False}
    if ref.ndim >= 2:
        c = ref.shape[1]
        if ref32.size * ref32.itemsize <= WHOLE_MAX_BYTES:
            nc_max, nc_sum, nc_ref = _reduce_whole(ref32, got32)
        else:
            nc_max, nc_sum, nc_ref = _reduce_tiles(ref32, got32)
        nonfinite = not bool(np.isfinite(nc_max).all())
        nc_max = nc_max.astype(np.float64)
        ch_max = nc_max.max(axis=0)
        s_max = nc_max.max(axis=1)
        ch_mean = nc_sum.sum(axis=0) / (ref32.size // c)
        ch_ref = nc_ref.max(axis=0)
        s_scale = nc_ref.max(axis=1)
        max_abs = float(ch_max.max())
        mean_abs = float(ch_mean.mean())
        scale = float(ch_ref.max())
        # the worst element: first in (sample, position) order inside the worst channel, found
        # in the first sample that holds that channel's maximum
        worst_channel = int(np.argmax(ch_max))
        i = int(np.argmax(nc_max[:, worst_channel] == ch_max[worst_channel]))
        sub = np.asarray(np.abs(np.subtract(got32[i, worst_channel, ...], ref32[i, worst_channel, ...])))
        if nonfinite:
            np.copyto(sub, np.inf, where=np.isnan(sub))
        rest = np.unravel_index(int(np.argmax(sub)), sub.shape)
        worst_index = (i, worst_channel) + tuple(int(k) for k in rest)
    else:
        diff = np.abs(np.subtract(got32, ref32))
        nonfinite = not bool(np.isfinite(diff).all())
        if nonfinite:
            diff[~np.isfinite(diff)] = np.inf
        max_abs = float(diff.max())
        mean_abs = float(diff.mean(dtype=np.float64))
        scale = float(np.abs(ref32).max())
        ch_max, ch_mean, ch_ref = np.array([max_abs]), np.array([mean_abs]), np.array([scale])
        s_max, s_scale = np.array([max_abs]), np.array([scale])
        worst_index = tuple(int(k) for k in np.unravel_index(int(np.argmax(diff)), diff.shape))
        worst_channel = 0
    # the verdict is per sample (each judged against its own scale): a batch or an input set
    # gives the same verdict as comparing its samples one by one
    if whole:
        s_max, s_scale = np.array([max_abs]), np.array([scale])
    s_denom = np.maximum(s_scale, _TINY)
    s_rel = s_max / s_denom
    s_passed = np.isfinite(s_max) & (s_max <= tol.atol + tol.rtol * s_scale)
    s_needed = np.maximum(0.0, (s_max - tol.atol) / s_denom)
    max_rel = float(s_rel.max())
    passed = (not nonfinite) and bool(s_passed.all())
    needed = float(s_needed.max())
    return {"max_abs": max_abs, "mean_abs": mean_abs, "max_rel": max_rel, "scale": scale,
            "channel_max_abs": ch_max, "channel_mean_abs": ch_mean, "channel_ref_absmax": ch_ref,
            "worst_index": worst_index, "worst_channel": worst_channel, "passed": passed,
            "needed_rtol": needed, "nonfinite": nonfinite,
            "sample_max_abs": s_max, "sample_scale": s_scale, "sample_passed": s_passed,
            "sample_max_rel": s_rel, "sample_needed_rtol": s_needed}


_CV2: dict = {}


def opencv_module():
    """cv2 when installed and :data:`USE_OPENCV` (its transpose, absdiff and row reductions
    are several times faster than numpy's; the figures are the same), else None."""
    if not USE_OPENCV:
        return None
    if "cv2" not in _CV2:
        try:
            import cv2
            _CV2["cv2"] = cv2 if hasattr(cv2, "transpose") and hasattr(cv2, "reduce") else None
        except Exception:  # noqa: BLE001  (not installed, or a broken build: numpy does it)
            _CV2["cv2"] = None
    return _CV2["cv2"]


def _transpose(src: np.ndarray, dst: np.ndarray, cv) -> None:
    """``dst[...] = src.T`` for 2-D arrays (``dst`` C-contiguous)."""
    if cv is not None:
        got = cv.transpose(src, dst)
        if got is not dst:            # OpenCV allocated its own (it should not): keep ours
            np.copyto(dst, got)
    else:
        np.copyto(dst, src.T)


def _absdiff(x: np.ndarray, y: np.ndarray, out: np.ndarray, cv) -> np.ndarray:
    """``out[...] = |x - y|`` in float32 (OpenCV's absdiff is the same |x - y|, NaN and
    infinities included, in one pass)."""
    if cv is not None and x.flags.c_contiguous and y.flags.c_contiguous:
        o2 = out.reshape(1, -1)       # all three C-contiguous: one row (OpenCV works by rows)
        got = cv.absdiff(x.reshape(1, -1), y.reshape(1, -1), o2)
        if got is not o2:             # OpenCV allocated its own (it should not): keep ours
            np.copyto(o2, got)
        return out
    np.subtract(x, y, out=out)
    return np.abs(out, out=out)


def _maxima(d: np.ndarray, cv) -> np.ndarray:
    """Maxima along the rows (last axis) of the C-contiguous float32 3-D ``d``: by OpenCV when
    installed (several times faster on short rows); its NaN handling is not numpy's, so a
    NaN must be found otherwise (:func:`_nan_as_inf`: by the sums)."""
    if d.shape[-1] == 1:
        return d[..., 0].copy()
    if cv is None:
        return d.max(axis=-1)                          # NaN propagates
    rows = d.reshape(-1, d.shape[-1])
    return cv.reduce(rows, 1, cv.REDUCE_MAX).reshape(d.shape[:-1])


def _sums(d: np.ndarray, cv) -> np.ndarray:
    """Float64 sums along the rows (last axis) of the C-contiguous float32 3-D ``d``: every
    term added in float64."""
    if d.shape[-1] == 1:
        return d[..., 0].astype(np.float64)
    if cv is None:
        return d.sum(axis=-1, dtype=np.float64)
    rows = d.reshape(-1, d.shape[-1])
    return cv.reduce(rows, 1, cv.REDUCE_SUM, dtype=cv.CV_64F).reshape(d.shape[:-1])


def _reduce_whole(ref: np.ndarray, got: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_reduce_tiles`'s figures for a small array pair: |got - ref| in one temporary
    (source layout), numpy's reductions along its rows."""
    n, c = ref.shape[0], ref.shape[1]
    if ref.size == n * c:                              # (N, C): nothing to reduce per channel
        d = np.abs(np.subtract(got.reshape(n, c), ref.reshape(n, c)))
        return _nan_as_inf(d, d.astype(np.float64), np.abs(ref.reshape(n, c)), ref.reshape(n, c, 1))
    # the channels-first view of a channels-last Keras array with many channels (from 64:
    # measured): the difference in the Keras layout, reduced along its rows of channels
    last = ref.ndim >= 3 and c >= 64 and np.moveaxis(got, 1, -1).flags.c_contiguous \
        and not got.flags.c_contiguous
    if last:
        d = np.subtract(np.moveaxis(got, 1, -1), np.moveaxis(ref, 1, -1))
        d3, ax = np.abs(d, out=d).reshape(n, -1, c), 1
    else:
        d = np.empty(ref.shape, np.float32)
        np.subtract(got, ref, out=d)
        d3, ax = np.abs(d, out=d).reshape(n, c, -1), 2
    nc_max = d3.max(axis=ax)                           # NaN propagates
    nc_sum = d3.sum(axis=ax, dtype=np.float64)
    nc_ref = np.abs(ref).reshape(n, c, -1).max(axis=2)
    return _nan_as_inf(nc_max, nc_sum, nc_ref, ref.reshape(n, c, -1))


def _nan_as_inf(nc_max, nc_sum, nc_ref, r3):
    """A NaN difference counts as an infinite one (its sum too: the other terms are finite or
    inf).  Where one is, the sum is NaN (OpenCV's maxima need not say so), and only there can
    the reference hold a NaN: its max |ref| is taken again by numpy (NaN propagates)."""
    bad = np.isnan(nc_sum) | np.isnan(nc_max)
    if bad.any():
        nc_max[bad] = np.inf
        nc_sum[bad] = np.inf
        nc_ref[bad] = np.abs(r3[bad]).max(axis=-1)
    return nc_max, nc_sum, nc_ref.astype(np.float64)


_SCRATCH = threading.local()


def _scratch(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Two float32 work buffers of at least ``size`` elements, kept per thread (a fresh
    allocation of a tile-sized buffer costs page faults each time) up to the largest tile's
    size (one huge (N, C) sample, a tile of its own, gets buffers of its own)."""
    bufs = getattr(_SCRATCH, "bufs", None)
    if bufs is None or bufs[0].size < size:
        bufs = (np.empty(size, np.float32), np.empty(size, np.float32))
        if size <= (SPATIAL_MAX_TILES + 1) * TILE_ELEMS:
            _SCRATCH.bufs = bufs
    return bufs


def _reduce_tiles(ref: np.ndarray, got: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per (sample, channel) of two float32 arrays in source layout (channel axis 1): max
    |got - ref| (float32; infinite where a NaN was met), the sum of |got - ref| (float64;
    infinite there too) and max |ref| (float64; NaN where the reference has one).

    ``ref`` and ``got`` are viewed as (N, C, S); ``got``, when it is the channels-first view of
    a channels-last array, as (N, S, C).  They are cut into tiles of about
    :data:`TILE_ELEMS` elements: a block of channels of one sample over all its positions
    (one contiguous run of the reference, a strided run of whole cache lines of the Keras
    array: few memory streams), or groups of whole samples when those are small; a huge
    spatial extent is cut too.  The Keras tile is transposed into a buffer (OpenCV's blocked
    transpose when installed), |got - ref| taken into a reused buffer and reduced along its
    rows at once: each input is read from memory once, no array-sized temporary is made.
    Large arrays' tiles are shared out to the worker threads, a run of consecutive tiles per
    piece; each piece returns its partial figures, combined here in order (the float64 sums
    thus depend on the tiling, in their last bits)."""
    from ..reference.workers import parallel, split, threads

    n, c = ref.shape[0], ref.shape[1]
    s = ref.size // (n * c)
    r3 = ref.reshape(n, c, s)                  # a view when ref is C-contiguous (else a copy)
    gk = np.moveaxis(got, 1, -1)
    channels_last = got.ndim >= 3 and gk.flags.c_contiguous and not got.flags.c_contiguous
    g3 = gk.reshape(n, s, c) if channels_last else got.reshape(n, c, s)
    cv = opencv_module()
    threaded = ref.size * ref.itemsize >= PARALLEL_MIN_BYTES and threads() > 1
    tile = TILE_ELEMS * (2 if threaded else 1)
    if c * s <= tile:                          # whole samples, several a tile
        k = max(1, tile // (c * s))
        tiles = [(i, min(n, i + k), 0, c, 0, s) for i in range(0, n, k)]
    else:                                      # blocks of channels x positions
        w = min(c, max(CHANNEL_BLOCK, tile // s // CHANNEL_BLOCK * CHANNEL_BLOCK))
        blocks = split(s, -(-w * s // (SPATIAL_MAX_TILES * TILE_ELEMS)))
        tiles = [(i, i + 1, c0, min(c, c0 + w), b.start, b.stop)
                 for i in range(n) for c0 in range(0, c, w) for b in blocks]
    pieces = [tiles[p] for p in split(len(tiles), threads() * PIECES_PER_THREAD if threaded else 1)]

    def run(piece):
        i0, i1 = piece[0][0], piece[-1][1]
        m = np.zeros((i1 - i0, c), np.float32)
        sm = np.zeros((i1 - i0, c))
        ra = np.zeros((i1 - i0, c), np.float32)
        dbuf, tbuf = _scratch(max((b - a) * (c1 - c0) * (t1 - t0) for a, b, c0, c1, t0, t1 in piece))
        for a, b, c0, c1, t0, t1 in piece:
            shape = (b - a, c1 - c0, t1 - t0)
            size = shape[0] * shape[1] * shape[2]
            t = tbuf[:size].reshape(shape)
            rt = r3[a:b, c0:c1, t0:t1]
            if channels_last and cv is not None:   # the Keras tile (positions, channels) transposed
                for j in range(b - a):
                    _transpose(g3[a + j, t0:t1, c0:c1], t[j], cv)
                gt = t
            elif channels_last:            # numpy: the strided view read once, by the subtraction
                gt = g3[a:b, t0:t1, c0:c1].transpose(0, 2, 1)
            else:
                gt = g3[a:b, c0:c1, t0:t1]
            d = _absdiff(gt, rt, dbuf[:size].reshape(shape), cv)
            np.abs(rt, out=t)
            rows, cols = slice(a - i0, b - i0), slice(c0, c1)
            np.maximum(m[rows, cols], _maxima(d, cv), out=m[rows, cols])
            sm[rows, cols] += _sums(d, cv)
            np.maximum(ra[rows, cols], _maxima(t, cv), out=ra[rows, cols])
        return i0, m, sm, ra

    results = parallel(run, pieces)             # one piece: run on this thread
    if len(results) == 1:
        _, nc_max, nc_sum, nc_ref = results[0]
    else:
        nc_max = np.zeros((n, c), np.float32)
        nc_sum = np.zeros((n, c))
        nc_ref = np.zeros((n, c), np.float32)
        for i0, m, sm, ra in results:
            rows = slice(i0, i0 + len(m))
            np.maximum(nc_max[rows], m, out=nc_max[rows])
            nc_sum[rows] += sm
            np.maximum(nc_ref[rows], ra, out=nc_ref[rows])
    return _nan_as_inf(nc_max, nc_sum, nc_ref, r3)


def topk_agreement(ref: np.ndarray, got: np.ndarray, k: int = 5) -> dict[str, Any]:
    """For classifier outputs (N, classes): do the top-k class sets / top-1 agree?"""
    ref2 = ref.reshape(ref.shape[0], -1)
    got2 = got.reshape(got.shape[0], -1)
    k = min(k, ref2.shape[1])
    r = np.argsort(-ref2, axis=1)[:, :k]
    g = np.argsort(-got2, axis=1)[:, :k]
    match = r[:, 0] == g[:, 0]
    overlaps = [len(set(a) & set(b)) / k for a, b in zip(r, g)]
    return {"k": k, "top1_agreement": float(np.mean(match)), "topk_overlap": float(np.mean(overlaps)),
            "reference_top": r[0].tolist(), "keras_top": g[0].tolist(), "n": int(ref2.shape[0]),
            "per_sample": {"top1_match": [bool(v) for v in match], "topk_overlap": overlaps,
                           "reference_top1": [int(v) for v in r[:, 0]],
                           "keras_top1": [int(v) for v in g[:, 0]]}}


@dataclass
class ComparisonResult:
    layers: list[LayerResult]
    runtime: dict[str, Any]                 # {'name':..., 'framework':..., 'versions': {...}}
    device: str                             # where Keras ran
    input: dict[str, Any]                   # description of the input used
    tolerances: Tolerances
    topk: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    cancelled: bool = False
    float32_factor: float = FLOAT32_FACTOR
    precision: str = "failing"              # float64 second look: 'failing' | 'all' | 'off'
    budget_note: str | None = None          # why no float64 budget could be measured
    n_samples: int = 1                      # input sets: how many samples were compared
    sample_names: list[str] | None = None   # input sets: a name per sample (file names)
    top1_mismatches: list[dict] | None = None   # input sets: samples whose top-1 class differs
    set_size: int | None = None             # input sets: samples in the set (n_samples: compared)

    @property
    def passed_by_budget(self) -> list[LayerResult]:
        """Layers over the plain tolerance that pass as float32 accumulation (exact on the
        reference's own inputs, drift within FLOAT32_FACTOR x float32's own drift)."""
        return [r for r in self.layers if r.status == "pass" and r.basis == "float32"]

    @property
    def compared(self) -> list[LayerResult]:
        return [r for r in self.layers if r.status in ("pass", "fail")]

    @property
    def first_divergent(self) -> LayerResult | None:
        for r in self.layers:
            if r.status == "fail":
                return r
        return None

    @property
    def passed(self) -> bool:
        return (not self.cancelled) and bool(self.compared) and all(r.passed for r in self.layers)

    @property
    def root_cause(self) -> LayerResult | None:
        """The first failing layer that also fails when fed the reference's own inputs: a
        layer whose mapping is wrong (not one that only inherited error from upstream)."""
        for r in self.layers:
            if r.status == "fail" and r.isolated is not None and not r.isolated.get("passed", True):
                return r
        return None

    @property
    def divergence(self) -> str | None:
        """None when passed; 'mapping' when some layer is wrong in isolation; 'drift' when
        every failing layer passes in isolation but drifts more than FLOAT32_FACTOR x what
        float32 itself costs (a small error the isolated check cannot resolve, e.g. a
        slightly wrong epsilon); 'unconfirmed' when a failing layer would pass on the float32
        budget but the chosen reference runtime does not confirm the float64 anchor (Migrator's
        own numpy code and the runtime disagree there); 'accumulated' when every failing layer passes in isolation
        and no float64 budget could be measured; 'unknown' when isolation could not run."""
        fails = [r for r in self.layers if r.status == "fail"]
        if not fails:
            return None
        if self.root_cause is not None:
            return "mapping"
        if any(r.basis == "unconfirmed" for r in fails):
            return "unconfirmed"
        if all(r.isolated is not None for r in fails):
            if any(np.isfinite(r.budget64) for r in fails):
                return "drift"
            return "accumulated"
        return "unknown"

    @property
    def coverage_note(self) -> str | None:
        """For an input set stopped before its end: how many samples the results cover."""
        if self.set_size is None or self.n_samples >= self.set_size:
            return None
        unit = "images" if (self.input or {}).get("kind") == "images" else "samples"
        return (f"stopped after {self.n_samples} of {self.set_size} {unit}; results cover "
                f"{'that one' if self.n_samples == 1 else 'those ' + str(self.n_samples)}")

    def layer(self, source: str) -> LayerResult:
        for r in self.layers:
            if r.source == source:
                return r
        raise KeyError(source)

    @property
    def needed_rtol(self) -> float:
        vals = [r.needed_rtol for r in self.compared if np.isfinite(r.needed_rtol)]
        return max(vals) if vals else 0.0

    def to_dict(self) -> dict[str, Any]:
        fd = self.first_divergent
        rc = self.root_cause
        return {"passed": self.passed, "cancelled": self.cancelled,
                "first_divergent": fd.source if fd else None,
                "root_cause": rc.source if rc else None, "divergence": self.divergence,
                "needed_rtol": self.needed_rtol,
                "runtime": self.runtime, "device": self.device, "input": self.input,
                "tolerances": self.tolerances.to_dict(), "topk": self.topk,
                "timings": self.timings, "float32_factor": self.float32_factor,
                "precision": self.precision, "budget_note": self.budget_note,
                "passed_by_float32_budget": [r.source for r in self.passed_by_budget],
                "n_samples": self.n_samples, "sample_names": self.sample_names,
                "top1_mismatches": self.top1_mismatches, "set_size": self.set_size,
                "coverage_note": self.coverage_note,
                "counts": {s: sum(1 for r in self.layers if r.status == s)
                           for s in ("pass", "fail", "fused", "not-compared")}}


def input_layouts(plan) -> dict[str, str]:
    """Source input name -> the Keras layout tag of its ``keras.Input``."""
    return {m.source: m.layout for m in plan.mappings
            if any(s.class_name == "Input" for s in m.layers)}


def inputs_to_keras(plan, x):
    """The comparison input in the source layout (an array, or a dict keyed by source input
    name) in each Keras input's layout (channels-last, or the source order for sequences)."""
    lays = input_layouts(plan)
    if isinstance(x, dict):
        return {k: to_keras_layout(v, lays.get(k)) for k, v in x.items()}
    return to_keras_layout(x, next(iter(lays.values()), None) if len(lays) == 1 else None)
