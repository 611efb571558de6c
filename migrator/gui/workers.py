"""Run core calls off the GUI thread, with progress and cancel.

A :class:`Job` is a QObject living on the GUI thread.  ``Job.start(fn, *args, **kw)``
runs ``fn(*args, progress=..., cancel=..., **kw)`` on a worker thread (see :func:`pool`);
results come back as Qt signals delivered on the GUI thread:

* ``progress(float, str)`` -- throttled (at most ~25 per second)
* ``finished(object)``     -- the return value
* ``failed(str, str)``     -- one-line message, details (a traceback only for internal errors)
* ``cancelled()``

The GUI thread never runs import/plan/build/compare/save itself.
"""
from __future__ import annotations

import gc
import logging
import queue
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal, Slot

from ..core.errors import Cancelled, MigratorError

log = logging.getLogger(__name__)

class _Executor:
    """One persistent Python thread running submitted callables in order.

    Python threads rather than QThreadPool: TensorFlow imported on a QThreadPool thread
    crashes on first use in this setup (measured), while a plain Python thread is fine.
    """

    def __init__(self, name: str):
        self.name = name
        self.q: queue.Queue = queue.Queue()
        self.busy = 0
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)
        # a big stack: Keras builds/saves deep models recursively (see core.document)
        old = threading.stack_size()
        try:
            threading.stack_size(256 * 1024 * 1024)
        except (ValueError, RuntimeError):
            old = None
        try:
            self.thread = threading.Thread(target=self._loop, name=f"migrator-{name}", daemon=True)
            self.thread.start()
        finally:
            if old is not None:
                threading.stack_size(old)

    def start(self, runnable) -> None:
        with self.lock:
            self.busy += 1
        self.q.put(runnable)

    def _loop(self) -> None:
        while True:
            r = self.q.get()
            try:
                r.run()
            except BaseException:
                log.exception("worker %s crashed", self.name)
            finally:
                del r
                with self.lock:
                    self.busy -= 1
                    self.idle.notify_all()

    def waitForDone(self, timeout_ms: int = 30000) -> bool:
        deadline = time.monotonic() + timeout_ms / 1000.0
        with self.lock:
            while self.busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.idle.wait(left)
        return True


_POOLS: dict[str, _Executor] = {}


def pool(kind: str = "heavy") -> _Executor:
    """``'heavy'``: ONE thread for everything touching TensorFlow/Keras (import, build,
    compare, export, channel values) -- TensorFlow must not be imported or first used
    from two threads at once, and jobs on one model are sequential anyway.  ``'light'``:
    planning and mapping files (pure Python/numpy), so an edit re-plans even while a
    comparison runs."""
    p = _POOLS.get(kind)
    if p is None:
        p = _POOLS[kind] = _Executor(kind)
    return p


# ---- garbage collection: on the GUI thread, between jobs ------------------------------------
# A cyclic collection runs in whichever thread happens to allocate when a threshold is crossed.
# Both ways round that broke the app: a collection on the GUI thread while the worker built a
# Keras model segfaulted (TensorFlow objects finalized concurrently with TensorFlow work), and a
# collection on the worker thread finalized Qt objects of a closed window there, deadlocking with
# the GUI thread (QObject's mutex held by the worker waiting for the GIL held by the GUI thread).
# So while a window is open, automatic collection is off and the GUI thread collects from a timer
# -- only when no worker job runs.  Libraries also call gc.collect() themselves (TensorFlow's
# TFLite converter after loading the SavedModel, Keras when a variable is deleted): on a worker
# thread that is the same collection, and it segfaulted the GUI thread during a TFLite export.
# While a window is open, gc.collect() called on any other thread than the GUI thread is skipped
# (the GUI thread's timer collects that garbage between jobs).
_JOBS_LOCK = threading.Lock()
_JOBS_RUNNING = 0


def _job_started() -> None:
    global _JOBS_RUNNING
    with _JOBS_LOCK:
        _JOBS_RUNNING += 1


def _job_ended() -> None:
    global _JOBS_RUNNING
    with _JOBS_LOCK:
        _JOBS_RUNNING -= 1


def jobs_running() -> int:
    with _JOBS_LOCK:
        return _JOBS_RUNNING


class GuiThreadCollector(QObject):
    """Cyclic garbage collection on the GUI thread, between worker jobs (see above).

    ``check`` runs every ``interval_ms``: when no job runs it collects the generations whose
    counts passed Python's own thresholds (young ones often and cheaply, the oldest rarely)."""

    def __init__(self, interval_ms: int = 250, parent: QObject | None = None):
        super().__init__(parent)
        from PySide6.QtCore import QTimer
        self.threshold = gc.get_threshold()
        self.was_enabled = gc.isenabled()
        gc.disable()
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.check)
        self.timer.start()
        self.skipped = 0                 # checks skipped because a job ran (tests read it)

    def check(self) -> int | None:
        """Collect what is due; None when a job runs (nothing is collected then)."""
        if jobs_running():
            self.skipped += 1
            return None
        c0, c1, c2 = gc.get_count()
        t0, t1, t2 = self.threshold
        if c0 <= t0:
            return 0
        gen = 2 if (c1 > t1 and c2 > t2) else 1 if c1 > t1 else 0
        return _REAL_COLLECT(gen)

    def stop(self) -> None:
        self.timer.stop()
        if self.was_enabled:
            gc.enable()


_REAL_COLLECT = gc.collect


def _collect_on_gui_thread_only(generation: int = 2) -> int:
    """``gc.collect`` while a window is open: a collection asked for on another thread (a
    library's own, on a worker) is skipped -- 0 objects -- and left to the GUI thread's timer."""
    if threading.current_thread() is threading.main_thread():
        return _REAL_COLLECT(generation)
    return 0


_COLLECTOR: list[GuiThreadCollector] = []
_COLLECTOR_USERS = [0]


def acquire_collector() -> GuiThreadCollector:
    """A window opens: automatic collection off, the GUI-thread collector on (one for all), and
    gc.collect() on other threads skipped (see above)."""
    _COLLECTOR_USERS[0] += 1
    if not _COLLECTOR:
        from PySide6.QtCore import QCoreApplication
        _COLLECTOR.append(GuiThreadCollector(parent=QCoreApplication.instance()))
        gc.collect = _collect_on_gui_thread_only
    return _COLLECTOR[0]


def _stop_collector() -> None:
    _COLLECTOR.pop().stop()
    if not _COLLECTOR:
        gc.collect = _REAL_COLLECT


def reset_collector() -> None:
    """Tests: give automatic collection back whatever windows remain."""
    _COLLECTOR_USERS[0] = 0
    while _COLLECTOR:
        _stop_collector()


def release_collector() -> None:
    """A window closed; the last one gives automatic collection back."""
    _COLLECTOR_USERS[0] = max(0, _COLLECTOR_USERS[0] - 1)
    if _COLLECTOR_USERS[0] == 0 and _COLLECTOR:
        _stop_collector()


class _Runnable:
    def __init__(self, job: Job, fn, args, kwargs, pass_callbacks: bool):
        self.job, self.fn, self.args, self.kwargs = job, fn, args, kwargs
        self.pass_callbacks = pass_callbacks
        self._last = 0.0

    def _progress(self, fraction: float, message: str = "") -> None:
        now = time.perf_counter()
        if now - self._last >= 0.04 or fraction >= 1.0:
            self._last = now
            try:
                self.job._sig_progress.emit(float(fraction), str(message))
            except RuntimeError:          # the window is gone: stop the work
                raise Cancelled() from None
        if self.job.cancel_requested:
            raise Cancelled()

    def run(self) -> None:  # worker thread
        _job_started()
        try:
            self._run()
        finally:
            _job_ended()

    def _run(self) -> None:
        job = self.job
        outcome: tuple = ("cancelled",)
        try:
            kw = dict(self.kwargs)
            if self.pass_callbacks:
                kw.setdefault("progress", self._progress)
                kw.setdefault("cancel", job.is_cancel_requested)
            res = self.fn(*self.args, **kw)
            # a result covering the work done before the cancel ({'partial': True, ...}: an
            # input set stopped after some batches) is delivered as finished
            partial = isinstance(res, dict) and bool(res.get("partial"))
            outcome = ("cancelled",) if job.cancel_requested and not partial else ("finished", res)
        except Cancelled:
            outcome = ("cancelled",)
        except MigratorError as e:
            outcome = ("failed", str(e), "")
        except MemoryError:
            outcome = ("failed", "out of memory while running this step", traceback.format_exc())
        except Exception as e:  # noqa: BLE001 - an internal error: show it, keep the GUI alive
            tb = traceback.format_exc()
            log.error("internal error in a worker:\n%s", tb)
            outcome = ("failed", f"internal error: {type(e).__name__}: {e}", tb)
        try:
            if outcome[0] == "finished":
                job._sig_finished.emit(outcome[1])
            elif outcome[0] == "failed":
                job._sig_failed.emit(outcome[1], outcome[2])
            else:
                job._sig_cancelled.emit()
        except RuntimeError:              # the receiving window was closed meanwhile
            log.debug("job %s finished after its window closed", job.name)
        finally:
            self.job = self.fn = self.args = self.kwargs = None


class Job(QObject):
    progress = Signal(float, str)
    finished = Signal(object)
    failed = Signal(str, str)
    cancelled = Signal()
    done = Signal()               # after any of finished/failed/cancelled

    # internal, emitted from the worker thread, delivered queued on the GUI thread
    _sig_progress = Signal(float, str)
    _sig_finished = Signal(object)
    _sig_failed = Signal(str, str)
    _sig_cancelled = Signal()

    def __init__(self, name: str = "", parent: QObject | None = None):
        # Always give the QObject a C++ parent living on the GUI thread: the last Python
        # reference may be dropped on the worker thread, and a parentless wrapper would then
        # delete the QObject there (a crash).  Deletion happens by deleteLater() when done.
        super().__init__(parent if parent is not None else _holder())
        self.name = name
        self._cancel = threading.Event()
        self.running = False
        self.result: Any = None
        self.error: str | None = None
        q = Qt.ConnectionType.QueuedConnection
        self._sig_progress.connect(self._on_progress, q)
        self._sig_finished.connect(self._on_finished, q)
        self._sig_failed.connect(self._on_failed, q)
        self._sig_cancelled.connect(self._on_cancelled, q)

    # ---- control (GUI thread) ------------------------------------------------------
    def start(self, fn: Callable, *args, pass_callbacks: bool = True, pool_kind: str = "heavy",
              **kwargs) -> Job:
        self._cancel.clear()
        self.running = True
        self.result = self.error = None
        _JOBS.add(self)
        pool(pool_kind).start(_Runnable(self, fn, args, kwargs, pass_callbacks))
        return self

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def is_cancel_requested(self) -> bool:
        return self._cancel.is_set()

    # ---- delivery (GUI thread) --------------------------------------------------------
    @Slot(float, str)
    def _on_progress(self, f: float, msg: str) -> None:
        if self.running:
            self.progress.emit(f, msg)

    @Slot(object)
    def _on_finished(self, res) -> None:
        self.running = False
        self.result = res
        self.finished.emit(res)
        self._end()

    @Slot(str, str)
    def _on_failed(self, msg: str, details: str) -> None:
        self.running = False
        self.error = msg
        self.failed.emit(msg, details)
        self._end()

    @Slot()
    def _on_cancelled(self) -> None:
        self.running = False
        self.cancelled.emit()
        self._end()

    def _end(self) -> None:
        self.done.emit()
        _JOBS.discard(self)
        self.deleteLater()


_JOBS: set[Job] = set()      # keeps running jobs alive
_HOLDER: QObject | None = None


def _holder() -> QObject:
    global _HOLDER
    if _HOLDER is None:
        _HOLDER = QObject()
    return _HOLDER


def run_job(fn: Callable, *args, on_done: Callable[[Any], None] | None = None,
            on_error: Callable[[str, str], None] | None = None,
            on_cancel: Callable[[], None] | None = None,
            on_progress: Callable[[float, str], None] | None = None,
            name: str = "", parent: QObject | None = None, pass_callbacks: bool = True,
            pool_kind: str = "heavy", **kwargs) -> Job:
    """Start ``fn`` in the pool; callbacks are called on the GUI thread."""
    job = Job(name, parent)
    if on_done is not None:
        job.finished.connect(on_done)
    if on_error is not None:
        job.failed.connect(on_error)
    if on_cancel is not None:
        job.cancelled.connect(on_cancel)
    if on_progress is not None:
        job.progress.connect(on_progress)
    return job.start(fn, *args, pass_callbacks=pass_callbacks, pool_kind=pool_kind, **kwargs)


def threaded_executor(parent: QObject | None = None):
    """A :attr:`migrator.core.document.Document.executor` running work in the pool and
    delivering ``done``/``failed`` on the GUI thread."""

    def executor(work, done, failed):
        def on_error(msg, details):
            failed(MigratorError(msg))

        run_job(work, on_done=done, on_error=on_error, name="plan", parent=parent,
                pass_callbacks=False, pool_kind="light")

    return executor


def wait_idle(timeout_ms: int = 30000) -> bool:
    return all(p.waitForDone(timeout_ms) for p in _POOLS.values())


def run_sync(fn: Callable, *args, kind: str = "heavy", **kwargs):
    """Run ``fn`` on a worker thread and wait for it (scripts, benchmarks; not the GUI)."""
    box: dict[str, Any] = {}
    done = threading.Event()

    class _R:
        def run(self):
            _job_started()
            try:
                box["v"] = fn(*args, **kwargs)
            except BaseException as e:  # noqa: BLE001
                box["e"] = e
            finally:
                _job_ended()
                done.set()

    pool(kind).start(_R())
    done.wait()
    if "e" in box:
        raise box["e"]
    return box["v"]
