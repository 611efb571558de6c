"""The builder child process never outlives Migrator (issue 11): time limit, cancel (the
core's ``cancel`` callable and the GUI's progress callback raising Cancelled), SIGTERM /
SIGINT / SIGHUP to the CLI (even when started with SIGINT ignored, as a shell's background
job is), and SIGKILL of the parent (PR_SET_PDEATHSIG)."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from migrator.core.errors import Cancelled, MigratorError
from migrator.core.importers.lasagne import describe_builder
from migrator.testing import lasagne_models as M

LOOP = M.HEADER + '''
import os  # the builder's own import
open(os.environ.get("PIDFILE", "child.pid"), "w").write(str(os.getpid()))

def build_model():
    while True:
        pass
'''

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="process checks use /proc and Linux signals")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def _wait_pidfile(path, timeout=60.0) -> int:
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        text = path.read_text().strip() if path.exists() else ""
        if text:
            return int(text)
        time.sleep(0.05)
    raise AssertionError("the builder never started")


def _gone(pid: int, timeout=5.0) -> bool:
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def loop_builder(tmp_path, monkeypatch):
    pidfile = tmp_path / "child.pid"
    monkeypatch.setenv("PIDFILE", str(pidfile))
    return M.write_script(str(tmp_path), LOOP), pidfile


def test_time_limit_kills_the_child(loop_builder):
    b, pidfile = loop_builder
    t = time.monotonic()
    with pytest.raises(MigratorError) as ei:
        describe_builder(b, timeout=3)
    assert "did not finish within 3 s" in str(ei.value) and time.monotonic() - t < 20
    assert _gone(_wait_pidfile(pidfile))


def test_cancel_callable_kills_the_child(loop_builder):
    b, pidfile = loop_builder
    with pytest.raises(Cancelled):
        describe_builder(b, cancel=lambda: pidfile.exists() and bool(pidfile.read_text()))
    assert _gone(_wait_pidfile(pidfile))


def test_gui_cancel_through_the_progress_callback_kills_the_child(loop_builder):
    """The GUI worker's progress callback raises Cancelled once the user cancels."""
    b, pidfile = loop_builder
    seen = []

    def progress(f, msg):
        seen.append(msg)
        if pidfile.exists() and pidfile.read_text():
            raise Cancelled()
    with pytest.raises(Cancelled):
        describe_builder(b, progress=progress)
    assert _gone(_wait_pidfile(pidfile))
    assert any("running the builder script" in m for m in seen)


def _cli(tmp_path, b, *, ignore_sigint=False):
    params = tmp_path / "p.npz"
    import numpy as np
    np.savez(str(params), np.zeros(3, np.float32))
    # as a shell starts a background job: SIGINT ignored before migrator's main runs
    boot = ("import runpy, signal, sys; "
            + ("signal.signal(signal.SIGINT, signal.SIG_IGN); " if ignore_sigint else "")
            + "sys.argv = ['migrator'] + sys.argv[1:]; "
            "runpy.run_module('migrator', run_name='__main__')")
    return subprocess.Popen([sys.executable, "-c", boot, "inspect", b, str(params)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=str(tmp_path))


@pytest.mark.parametrize("sig,code,ignore_sigint", [
    (signal.SIGTERM, 143, False), (signal.SIGINT, 130, True), (signal.SIGHUP, 129, False)])
def test_signals_to_the_cli_stop_it_and_its_child(tmp_path, loop_builder, sig, code,
                                                  ignore_sigint):
    b, pidfile = loop_builder
    p = _cli(tmp_path, b, ignore_sigint=ignore_sigint)
    child = _wait_pidfile(pidfile)
    t = time.monotonic()
    p.send_signal(sig)
    _, err = p.communicate(timeout=30)
    assert time.monotonic() - t < 10, "the CLI ignored the signal"
    assert p.returncode == code, (p.returncode, err)
    assert "Traceback" not in err and len([ln for ln in err.splitlines() if ln.strip()]) == 1, err
    assert _gone(child), "the builder child outlived the CLI"


def test_sigkill_of_the_parent_takes_the_child_along(tmp_path, loop_builder):
    b, pidfile = loop_builder
    p = _cli(tmp_path, b)
    child = _wait_pidfile(pidfile)
    p.kill()
    p.communicate(timeout=30)
    assert _gone(child), "PR_SET_PDEATHSIG did not stop the orphaned builder"
