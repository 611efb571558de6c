"""Fixtures for driving the real main window (pytest-qt, QT_QPA_PLATFORM=offscreen)."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["MIGRATOR_GUI_NO_DIALOGS"] = "1"

# the gui extra, installed by `make test`: imported, not skipped (a broken install must fail)
import pyqtgraph  # noqa: F401
import PySide6  # noqa: F401

LOAD_TIMEOUT = 120_000


@pytest.fixture(autouse=True)
def _automatic_collection_back():
    """A window turns automatic garbage collection off while it lives (migrator.gui.workers):
    give it back after each test, whatever windows a test left open."""
    yield
    from migrator.gui import workers
    workers.reset_collector()


@pytest.fixture(scope="session")
def demos(tmp_path_factory):
    from resources.make_demos import ensure_demos
    return ensure_demos(tmp_path_factory.mktemp("demo"))


class Asker:
    """Stands in for the window's yes/no questions; records them."""

    def __init__(self, answer=True):
        self.answer = answer
        self.questions: list[tuple[str, str]] = []

    def __call__(self, title, text):
        self.questions.append((title, text))
        return self.answer(title, text) if callable(self.answer) else self.answer


@pytest.fixture
def window(qtbot, tmp_path):
    from migrator.gui import workers
    from migrator.gui.main_window import MainWindow
    from migrator.gui.settings import Settings
    win = MainWindow(Settings(str(tmp_path / "settings.ini")))
    win.ask = Asker(True)
    win.resize(1400, 900)
    win.show()
    yield win
    for job in list(win.jobs.values()):
        if getattr(job, "running", False):
            job.cancel()
    workers.wait_idle(60_000)
    qtbot.wait(10)
    win.ask = Asker(True)
    win.close()
    win.deleteLater()
    qtbot.wait(10)


def close_window(qtbot, win):
    """Close a window a test made itself: cancel its jobs, wait for the workers."""
    from migrator.gui import workers
    for job in list(win.jobs.values()):
        if getattr(job, "running", False):
            job.cancel()
    workers.wait_idle(60_000)
    win.close()
    win.deleteLater()
    qtbot.wait(10)


def open_model(qtbot, win, paths, mapping=None):
    with qtbot.waitSignal(win.opened, timeout=LOAD_TIMEOUT):
        win.open_paths(paths, mapping_path=mapping)
    assert win.doc.is_open


def wait_plan(qtbot, win):
    qtbot.waitUntil(lambda: not win.doc.planning, timeout=30_000)
    qtbot.wait(1)


def run_compare(qtbot, win):
    with qtbot.waitSignal(win.comparison_done, timeout=LOAD_TIMEOUT):
        win.run_comparison()
    return win.doc.result
