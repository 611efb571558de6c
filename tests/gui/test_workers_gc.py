"""Cyclic garbage collection on the GUI thread, between worker jobs (migrator.gui.workers).

A collection on the GUI thread while the worker built a Keras model segfaulted tests/gui
(PySide6 6.11.3, deterministically at one test); a collection on the worker thread finalized a
closed window's Qt objects there and deadlocked with the GUI thread. While a window is open,
automatic collection is off; the GUI thread collects from a timer, never while a job runs."""
from __future__ import annotations

import gc
import threading

import pytest

from migrator.core.errors import Cancelled, MigratorError


class _Cycle:
    def __init__(self):
        self.me = self


def test_a_window_turns_automatic_collection_off_until_it_closes(qtbot, tmp_path):
    from migrator.gui import workers
    from migrator.gui.main_window import MainWindow
    from migrator.gui.settings import Settings
    assert gc.isenabled()
    a = MainWindow(Settings(str(tmp_path / "a.ini")))
    b = MainWindow(Settings(str(tmp_path / "b.ini")))
    assert not gc.isenabled()
    a.close()
    assert not gc.isenabled()            # b is still open
    b.close()
    assert gc.isenabled() and not workers._COLLECTOR


@pytest.mark.parametrize("ending", ["finished", "failed", "crashed", "cancelled"])
def test_no_collection_while_a_job_runs_and_none_on_the_worker_after(qtbot, ending):
    from migrator.gui import workers
    col = workers.acquire_collector()
    try:
        assert not gc.isenabled()
        release, started = threading.Event(), threading.Event()
        seen = {}

        def work(progress=None, cancel=None):
            started.set()
            release.wait(20)
            seen["enabled"] = gc.isenabled()
            if ending == "failed":
                raise MigratorError("a user mistake")
            if ending == "crashed":
                raise RuntimeError("an internal error")
            if ending == "cancelled":
                raise Cancelled()
            return 1

        job = workers.run_job(work, name="gc-test", on_error=lambda m, d: None)
        assert started.wait(20)
        for _ in range(2000):
            _Cycle()
        assert col.check() is None            # a job runs: nothing collected on the GUI thread
        release.set()
        with qtbot.waitSignal(job.done, timeout=30_000):
            pass
        assert workers.wait_idle(30_000)
        assert seen == {"enabled": False}      # the worker never collects automatically
        assert not gc.isenabled()
        for _ in range(2000):
            _Cycle()
        assert col.check() >= 2000 - 10        # between jobs the GUI thread collects the cycles
    finally:
        workers.release_collector()
    assert gc.isenabled()


def test_the_timer_collects_on_the_gui_thread(qtbot):
    from migrator.gui import workers
    workers.acquire_collector()
    threads = []
    try:
        gc.callbacks.append(lambda phase, info: threads.append(threading.current_thread().name))
        for _ in range(3000):
            _Cycle()
        qtbot.waitUntil(lambda: gc.get_count()[0] < 100, timeout=5_000)
    finally:
        gc.callbacks.pop()
        workers.release_collector()
    assert threads and set(threads) == {threading.main_thread().name}


def test_a_library_collection_on_a_worker_is_left_to_the_gui_thread(qtbot):
    """TensorFlow's TFLite converter calls gc.collect() itself (after loading the SavedModel):
    on the export worker that finalized objects concurrently with the GUI thread and segfaulted
    it. While a window is open such a call on a worker thread collects nothing; the GUI
    thread's collections (its timer, or gc.collect() there) still work; the last window closing
    gives gc.collect back."""
    from migrator.gui import workers
    real = gc.collect
    col = workers.acquire_collector()
    col.timer.stop()             # no timer collection between the job's end and the checks below
    try:
        seen = {}

        def work(progress=None, cancel=None):
            for _ in range(500):
                _Cycle()
            seen["worker collected"] = gc.collect()
            return 1

        job = workers.run_job(work, name="gc-library", on_error=lambda m, d: None)
        with qtbot.waitSignal(job.done, timeout=30_000):
            pass
        assert workers.wait_idle(30_000)
        assert seen == {"worker collected": 0}
        assert gc.collect() >= 500 - 10             # on the GUI thread it collects
        for _ in range(2000):
            _Cycle()
        assert col.check() >= 2000 - 10
    finally:
        col.timer.start()
        workers.release_collector()
    assert gc.collect is real and gc.isenabled()
