"""No automatic garbage collection while a worker job runs core code: a GUI-thread collection
in the middle of a Keras build on the worker segfaulted the process (tests/gui, PySide6 6.11.3,
deterministically at one test without the pause). Collection resumes when the last job ends,
also when a job fails or is cancelled."""
from __future__ import annotations

import gc

import pytest

from migrator.core.errors import Cancelled, MigratorError


@pytest.mark.parametrize("ending", ["finished", "failed", "crashed", "cancelled"])
def test_collection_paused_during_a_job_and_resumed_after(qtbot, ending):
    from migrator.gui.workers import run_job, wait_idle
    assert gc.isenabled()
    seen = []

    def work(progress=None, cancel=None):
        seen.append(gc.isenabled())
        if ending == "failed":
            raise MigratorError("a user mistake")
        if ending == "crashed":
            raise RuntimeError("an internal error")
        if ending == "cancelled":
            raise Cancelled()
        return 1

    job = run_job(work, name="gc-test", on_error=lambda m, d: None)
    with qtbot.waitSignal(job.done, timeout=30_000):
        pass
    assert wait_idle(30_000)
    assert seen == [False]
    assert gc.isenabled()


def test_two_pools_resume_only_after_both(qtbot):
    import threading

    from migrator.gui.workers import run_job, wait_idle
    release, started = threading.Event(), threading.Event()
    states = {}

    def heavy(progress=None, cancel=None):
        started.set()
        release.wait(20)
        states["heavy"] = gc.isenabled()

    def light(progress=None, cancel=None):
        states["light"] = gc.isenabled()

    j1 = run_job(heavy, name="h")
    assert started.wait(20)
    j2 = run_job(light, name="l", pool_kind="light")
    with qtbot.waitSignal(j2.done, timeout=30_000):
        pass
    assert not gc.isenabled()          # the heavy job still runs
    release.set()
    with qtbot.waitSignal(j1.done, timeout=30_000):
        pass
    assert wait_idle(30_000)
    assert states == {"heavy": False, "light": False} and gc.isenabled()
