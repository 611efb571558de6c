"""The reference's worker threads: element-wise passes and GEMM blocks shared out over the cores.

numpy releases the GIL inside its loops, so disjoint pieces of one array can be processed by
several Python threads at once.  :func:`parallel` hands pieces out *as threads come free*
(the calling thread works too and never waits for a worker that has not started), so a busy
machine that schedules only one of the threads costs nothing but that thread's share, unlike
a static split where every step waits for its slowest thread.

BLAS: while a kernel runs (:func:`kernel_threads`) numpy's BLAS is held to one thread and the
kernels cut their GEMMs into blocks for :func:`parallel` instead, so BLAS threads and these
threads never compete for the same cores.  Holding BLAS to one thread uses threadpoolctl
when it is installed, else OpenBLAS's own ``*_set_num_threads`` entry (the library numpy
loaded); when neither is found BLAS keeps its threads and GEMMs are not cut
(:func:`gemm_pieces` is 1).

``MIGRATOR_REFERENCE_THREADS`` sets the number of threads (1: everything on the calling
thread, BLAS untouched).
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Callable, Iterator

import numpy as np

#: arrays smaller than this many bytes are processed in one piece on the calling thread
PARALLEL_MIN_BYTES = 4 << 20
#: element-wise work is cut into up to this many pieces per thread (balance on a busy machine)
PIECES_PER_THREAD = 4

_POOL: dict = {}
_CPUS: dict = {}
_WORKER = threading.local()


def threads() -> int:
    """How many threads the kernels use: the CPUs this process may run on
    (``MIGRATOR_REFERENCE_THREADS`` overrides; 1 turns the pool off)."""
    env = os.environ.get("MIGRATOR_REFERENCE_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    if "cpus" not in _CPUS:
        try:
            _CPUS["cpus"] = max(1, len(os.sched_getaffinity(0)))
        except (AttributeError, OSError):
            _CPUS["cpus"] = max(1, os.cpu_count() or 1)
    return _CPUS["cpus"]


def pieces_for(nbytes: int) -> int:
    """Into how many pieces to cut work over ``nbytes`` bytes: up to
    :data:`PIECES_PER_THREAD` per thread, none smaller than a quarter of
    :data:`PARALLEL_MIN_BYTES`; 1 for small work or a single thread."""
    n = threads()
    if n <= 1 or nbytes < PARALLEL_MIN_BYTES:
        return 1
    return int(max(2, min(n * PIECES_PER_THREAD, nbytes // max(PARALLEL_MIN_BYTES // 4, 1))))


def split(n: int, parts: int) -> list[slice]:
    """``range(n)`` cut into at most ``parts`` non-empty, nearly equal slices."""
    parts = max(1, min(parts, n))
    return [slice(a * n // parts, (a + 1) * n // parts) for a in range(parts)]


def tiles(shape: tuple, itemsize: int = 4) -> list[tuple]:
    """Index tuples cutting a C-ordered array of ``shape`` into pieces (see
    :func:`pieces_for`) along its leading axes; ``[()]`` (the whole array) for a small array
    or a single thread."""
    total = int(itemsize)
    for d in shape:
        total *= int(d)
    parts = pieces_for(total)
    if parts <= 1 or not shape or shape[0] == 0:
        return [()]
    if shape[0] >= parts or len(shape) == 1 or shape[1] == 0:
        return [(s,) for s in split(shape[0], parts)]
    per = -(-parts // shape[0])                   # pieces of axis 1 per index of axis 0
    return [(n, s) for n in range(shape[0]) for s in split(shape[1], per)]


def tile_of(p, idx: tuple, ndim: int):
    """The part of ``p`` (a scalar, or an array broadcastable against an ``ndim``-d array) that
    lines up with the tile ``idx`` of that array (see :func:`tiles`)."""
    if not idx or np.ndim(p) == 0:
        return p
    p = np.asarray(p)
    if p.ndim < ndim:
        p = p.reshape((1,) * (ndim - p.ndim) + p.shape)
    return p[tuple((0 if isinstance(i, int) else slice(None)) if p.shape[k] == 1 else i
                   for k, i in enumerate(idx))]


#: per-channel parameters are spread over a whole sample (see :func:`sample_plane`) when a sample
#: has at most this many positions per channel
PLANE_MAX_POSITIONS = 4096


def sample_plane(p, shape: tuple):
    """``p`` (a scalar, or an array broadcast against ``shape``, e.g. ``(1, C, 1, 1)``) spread
    over one sample: a contiguous ``(1,) + shape[1:]`` array when ``p`` varies along axis 1 only
    and a sample has few positions per channel, else ``p`` itself.  Same values; numpy's
    element-wise loops run about 1.5-3x faster over a contiguous operand than over a short
    stride-0 one (measured on (C, 784) float32: subtract 33 vs 21 us), and the plane costs one
    sample's worth of work for a whole batch (open-nsfw at batch 16: 2-6 % less CPU time)."""
    if np.ndim(p) == 0 or len(shape) < 3:
        return p
    p = np.asarray(p)
    if p.ndim != len(shape) or p.shape[0] != 1 or any(d != 1 for d in p.shape[2:]):
        return p
    positions = 1
    for d in shape[2:]:
        positions *= int(d)
    if positions > PLANE_MAX_POSITIONS or shape[0] < 4:
        return p
    return np.ascontiguousarray(np.broadcast_to(p, (1,) + tuple(shape[1:])))


def parallel(fn: Callable, items: list) -> list:
    """``[fn(item) for item in items]``, the items shared out to the worker threads as they
    come free.  The calling thread works too and waits only for pieces already taken; a worker
    that starts late finds nothing left and holds no reference to ``fn`` or the items (their
    arrays are freed when the caller is done with them).  The first exception is raised once
    every piece taken has finished."""
    items = list(items)
    if len(items) <= 1 or threads() <= 1 or getattr(_WORKER, "busy", False):
        return [fn(it) for it in items]
    results: list = [None] * len(items)
    job = {"fn": fn, "items": items, "results": results, "next": 0, "running": 0, "error": None,
           "cond": threading.Condition(), "errstate": np.geterr()}   # the caller's, in every thread
    pool = _pool()
    for _ in range(min(threads() - 1, len(items) - 1)):
        pool.submit(_in_worker, job)
    _work(job)
    cond = job["cond"]
    with cond:
        while job["running"]:
            cond.wait()
        error = job["error"]
        job.update(fn=None, items=None, results=None, error=None)   # a late worker finds nothing
    if error is not None:
        raise error
    return results


def _work(job: dict) -> None:
    """Take pieces of ``job`` until none is left (or one failed)."""
    cond = job["cond"]
    while True:
        with cond:
            items, k = job["items"], job["next"]
            if items is None or k >= len(items) or job["error"] is not None:
                return
            fn, results, errstate = job["fn"], job["results"], job["errstate"]
            job["next"] = k + 1
            job["running"] += 1
        try:
            with np.errstate(**errstate):
                results[k] = fn(items[k])
        except BaseException as e:  # noqa: BLE001  (re-raised in the calling thread)
            with cond:
                job["error"] = job["error"] or e
        finally:
            del fn, items, results
            with cond:
                job["running"] -= 1
                cond.notify_all()


def ufunc_tiles(f, out: np.ndarray, *args) -> np.ndarray:
    """``f(*args, out=out)`` for a numpy ufunc ``f`` (``args`` broadcast against ``out``),
    computed piece by piece on the worker threads; returns ``out``."""
    pieces = tiles(out.shape, out.dtype.itemsize)
    if len(pieces) == 1:
        f(*args, out=out)
        return out
    parallel(lambda idx: f(*(tile_of(a, idx, out.ndim) for a in args), out=out[idx]), pieces)
    return out


def _in_worker(job: dict) -> None:
    _WORKER.busy = True
    _work(job)


def _pool():
    from concurrent.futures import ThreadPoolExecutor
    n = max(1, threads() - 1)
    pool = _POOL.get(n)
    if pool is None:
        pool = _POOL[n] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="migrator-reference")
    return pool


# -- BLAS threads ------------------------------------------------------------------------------
_BLAS: dict = {}
_BLAS_LOCK = threading.RLock()
_HELD: dict = {"count": 0, "before": None, "held": False}
_KERNEL_DEPTH = threading.local()


def gemm_pieces(blocks: int) -> int:
    """Into how many pieces to cut a GEMM over ``blocks`` independent blocks (images, rows):
    one per block up to :data:`PIECES_PER_THREAD` per thread while :func:`kernel_threads`
    holds BLAS to one thread; 1 (BLAS threads itself) otherwise."""
    if threads() <= 1 or not getattr(_KERNEL_DEPTH, "blas_held", False):
        return 1
    return max(1, min(blocks, threads() * PIECES_PER_THREAD))


@contextlib.contextmanager
def kernel_threads() -> Iterator[None]:
    """Around a kernel call: BLAS held to one thread (GEMMs are cut into blocks for the
    worker threads instead); the BLAS setting is process-wide, so the first of several
    threads running kernels at once holds it and the last one restores it."""
    if getattr(_KERNEL_DEPTH, "depth", 0) or threads() <= 1:
        _KERNEL_DEPTH.depth = getattr(_KERNEL_DEPTH, "depth", 0) + 1
        try:
            yield
        finally:
            _KERNEL_DEPTH.depth -= 1
        return
    with _BLAS_LOCK:
        if _HELD["count"] == 0:
            before = _get_blas_threads()
            _HELD["before"] = before
            _HELD["held"] = before is not None and _set_blas_threads(1)
        _HELD["count"] += 1
        held = _HELD["held"]
    _KERNEL_DEPTH.depth, _KERNEL_DEPTH.blas_held = 1, held
    try:
        yield
    finally:
        _KERNEL_DEPTH.depth, _KERNEL_DEPTH.blas_held = 0, False
        with _BLAS_LOCK:
            _HELD["count"] -= 1
            if _HELD["count"] == 0 and _HELD["held"]:
                _set_blas_threads(_HELD["before"])
                _HELD["held"] = False


@contextlib.contextmanager
def blas_own_threads() -> Iterator[None]:
    """Inside :func:`kernel_threads`, for one GEMM that cannot be cut into independent blocks
    (one image): BLAS gets its own threads back meanwhile (its result does not depend on
    them)."""
    with _BLAS_LOCK:
        held = _HELD["held"] and getattr(_KERNEL_DEPTH, "blas_held", False)
        if held:
            _set_blas_threads(_HELD["before"])
    try:
        yield
    finally:
        if held:
            with _BLAS_LOCK:
                if _HELD["held"]:
                    _set_blas_threads(1)


def blas_info() -> dict:
    """``{'library', 'threads', 'control'}``: numpy's BLAS as seen by this module (for the
    benchmarks' report)."""
    api = _blas_api()
    return {"library": api.get("library"), "threads": _get_blas_threads(), "control": api.get("control")}


def _get_blas_threads() -> int | None:
    api = _blas_api()
    try:
        if "get" in api:
            return int(api["get"]())
    except Exception:  # noqa: BLE001
        return None
    return None


def _set_blas_threads(n: int) -> bool:
    api = _blas_api()
    try:
        if "set" in api:
            api["set"](int(n))
            return True
    except Exception:  # noqa: BLE001
        return False
    return False


def _blas_api() -> dict:
    """How to read / set numpy's BLAS thread count: threadpoolctl when installed, else the
    OpenBLAS that numpy loaded (found in /proc/self/maps), else nothing."""
    with _BLAS_LOCK:
        if "api" in _BLAS:
            return _BLAS["api"]
        api: dict = {}
        try:
            from threadpoolctl import ThreadpoolController
            ctl = ThreadpoolController().select(user_api="blas")
            if ctl.lib_controllers:
                lib = ctl.lib_controllers[0]
                api = {"library": f"{lib.internal_api} {lib.version}", "control": "threadpoolctl",
                       "get": lambda: lib.num_threads, "set": lib.set_num_threads}
        except Exception:  # noqa: BLE001  (not installed, or no BLAS it knows)
            api = {}
        if not api:
            api = _openblas_api()
        _BLAS["api"] = api
        return api


def _openblas_api() -> dict:
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line})
    except OSError:
        return {}
    for path in paths:
        try:
            lib = ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0) | ctypes.RTLD_GLOBAL)
        except OSError:
            continue
        for prefix, suffix in (("scipy_openblas", "64_"), ("openblas", "64_"), ("openblas", "")):
            get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            set_ = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
            if get is not None and set_ is not None:
                get.restype = ctypes.c_int
                set_.argtypes = [ctypes.c_int]
                set_.restype = None
                return {"library": os.path.basename(path), "control": "ctypes", "get": get, "set": set_}
    return {}
