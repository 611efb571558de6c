"""``migrator-gui``: start the desktop app.

    migrator-gui [MODEL...] [--mapping FILE] [--demo caffe|lasagne]
    migrator-gui --screenshot OUT.png [MODEL...]

With no model the Caffe demo opens.  ``--screenshot`` opens the model (the demo when none
is given), runs the comparison, selects the first batch-norm layer, saves a PNG of the
main window and exits 0 (1 if anything failed).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

log = logging.getLogger("migrator.gui")
_T0 = time.monotonic()

ROOT = Path(__file__).resolve().parent.parent.parent
#: the package migrator.resources (the checkout's top-level resources/, shipped in the wheel)
RESOURCES = Path(__file__).resolve().parent.parent / "resources"


def demo_dir() -> Path:
    """resources/demo in a source checkout; a user cache folder when that is read-only."""
    d = RESOURCES / "demo"
    try:
        d.mkdir(parents=True, exist_ok=True)
        probe = d / ".write-test"
        probe.write_text("")
        probe.unlink()
        return d
    except OSError:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return Path(base) / "migrator" / "demo"


def ensure_demos() -> dict[str, list[str]]:
    """Generate the bundled demos when missing (called from a worker)."""
    try:
        from ..resources.make_demos import ensure_demos as _ensure
    except ImportError:
        from ..core.errors import MigratorError
        raise MigratorError("the demo generator (resources/make_demos.py) is not part of this "
                            "installation; open a model with File > Open", file=str(RESOURCES)) from None
    return _ensure(demo_dir())


def parse_args(argv):
    p = argparse.ArgumentParser(prog="migrator-gui", description="Migrator desktop app")
    p.add_argument("models", nargs="*", help="model files (Caffe: .prototxt .caffemodel; "
                                            "Lasagne: builder.py params.pkl|.npz)")
    p.add_argument("--mapping", help="mapping file (overrides) to apply")
    p.add_argument("--demo", choices=("caffe", "lasagne"), help="open a bundled demo")
    p.add_argument("--screenshot", metavar="OUT.png", help="save a screenshot of the main window and exit")
    p.add_argument("--theme", choices=("auto", "light", "dark"), help="colour theme")
    p.add_argument("--size", default="1500x950", help="window size for --screenshot (WxH)")
    p.add_argument("--inspect", metavar="KEY", help="--screenshot: select this parameter row in the "
                                                   "mapping inspector (e.g. moving_variance)")
    p.add_argument("--channel", type=int, help="--screenshot: show this channel's values")
    p.add_argument("--tab", choices=("channels", "layers", "values"),
                   help="--screenshot: the error-plot tab to show")
    p.add_argument("--images", metavar="DIR", help="--screenshot: choose this image folder as the "
                                                  "comparison input (after a first run on the default)")
    p.add_argument("--running", action="store_true",
                   help="--screenshot: take it while a comparison (on --images) is under way")
    p.add_argument("--settings", help=argparse.SUPPRESS)   # INI file instead of the user's settings
    return p.parse_args(argv)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from PySide6.QtWidgets import QApplication

    from . import theme
    from .main_window import MainWindow
    from .settings import Settings

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setOrganizationName("Migrator")
    app.setApplicationName("Migrator")
    app.setApplicationDisplayName("Migrator")
    app.setWindowIcon(theme.app_icon())
    settings = Settings(args.settings) if args.settings else Settings()
    theme.apply_theme(args.theme or settings.get("theme"))
    win = MainWindow(settings)

    if args.screenshot:
        return _screenshot(app, win, args)

    win.show()
    # the model opens (importing TensorFlow in a worker) once the window is on screen
    if args.models:
        win.after_first_paint(lambda: win.open_paths(args.models, mapping_path=args.mapping))
    else:
        win.after_first_paint(lambda: win.open_demo(args.demo or "caffe", mapping_path=args.mapping))
    win.after_first_paint(lambda: log.info("window shown %.2f s after start",
                                           win.first_paint_s - _T0))
    return app.exec()


def _shrink_png(path: str) -> None:
    """256-colour palette PNG: UI screenshots stay sharp at a third of the size."""
    try:
        from PIL import Image
        with Image.open(path) as im:
            # fast octree keeps small accents (a 2 px amber legend mark became red with median cut)
            q = im.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE)
        q.save(path, optimize=True)
    except Exception as e:  # noqa: BLE001 - the unshrunk PNG is fine too
        log.warning("could not shrink %s: %s", path, e)


def _screenshot(app, win, args) -> int:
    from PySide6.QtCore import QTimer

    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        w, h = 1500, 950
    win.resize(w, h)
    win.show()
    win.default_layout()      # reproducible shots: ignore a saved layout
    state = {"rc": 1}

    def fail(msg):
        print(f"migrator-gui: {msg}", file=sys.stderr)
        state["rc"] = 1
        app.exit(1)

    def grab():
        pm = win.grab()
        out = os.path.abspath(args.screenshot)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        if not pm.save(out):
            fail(f"cannot write {out}")
            return
        if out.lower().endswith(".png"):
            _shrink_png(out)
        print(out)
        state["rc"] = 0
        app.exit(0)

    def shoot():
        win.default_layout()      # again: the trees share the width by their fitted columns
        win.plot_tabs.setCurrentWidget(win.channel_plot)
        bn = win.doc.next_batchnorm(None)
        if bn is not None:
            win.select_source(bn)
        if args.inspect:
            win.inspector.select_key(args.inspect)
        app.processEvents()
        if args.inspect:       # again: the layout settled, the row is scrolled into view
            win.inspector.select_key(args.inspect)
            app.processEvents()
        if args.tab:
            win.plot_tabs.setCurrentIndex(("channels", "layers", "values").index(args.tab))
            app.processEvents()
        if args.channel is not None:
            win.channel_values_ready.connect(lambda: QTimer.singleShot(300, grab))
            win.show_channel(args.channel)
            return
        if args.images:
            QTimer.singleShot(200, choose_images)
            return
        QTimer.singleShot(400, grab)

    def grab_running(f: float, _msg: str = "") -> None:
        # in the progress slot itself: the window is drawn as it is now, mid-run
        if f >= 0.3 and state.get("running") is None:
            state["running"] = f
            win.default_layout()
            app.processEvents()
            grab()

    def choose_images() -> None:
        c = win.compare
        c.kind.setCurrentIndex(c.kind.findData("images"))
        c.path.setText(os.path.abspath(args.images))
        app.processEvents()
        if not args.running:
            QTimer.singleShot(300, grab)
            return
        win.comparing.input_changed_while_running = False
        job_progress = win.comparison_progress

        def progress(f, msg):
            job_progress(f, msg)
            grab_running(f, msg)
        win.comparison_progress = progress
        win.comparison_done.connect(lambda: state.get("running") is None and grab())
        win.run_comparison()

    def compared():
        if win.doc.result is None:
            fail(win.last_error or "the comparison did not finish")
            return
        if args.images:
            win.comparison_done.disconnect(compared)     # the run on the images is shot itself
        QTimer.singleShot(100, shoot)

    def opened():
        win.comparison_done.connect(compared)
        win.run_comparison()

    win.opened.connect(opened)
    win.load_failed.connect(lambda m: fail(m))
    QTimer.singleShot(180_000, lambda: fail("timed out"))
    if args.models:
        QTimer.singleShot(0, lambda: win.open_paths(args.models, mapping_path=args.mapping))
    else:
        QTimer.singleShot(0, lambda: win.open_demo(args.demo or "caffe", mapping_path=args.mapping))
    app.exec()
    rc = state["rc"]
    win.save_layout = lambda: None     # a screenshot run must not change the user's layout
    win.close()
    return rc


if __name__ == "__main__":
    sys.exit(main())
