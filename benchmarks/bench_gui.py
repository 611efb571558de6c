"""GUI responsiveness on a generated 1,000-layer model (prints figures; not a test).

1. tree population: main-thread time to install an opened 1,000-layer model into the
   window (both layer trees, inspector, result views) and paint it once -- target <= 200 ms;
2. the longest GUI-thread stall while a comparison of that model runs in the worker,
   measured by a 5 ms QTimer heartbeat (includes installing the result) -- target <= 100 ms;
3. per-channel error plot update for a 2,048-channel layer (setOpts + repaint) -- target <= 50 ms.

    python -m benchmarks.bench_gui [--blocks N]
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["MIGRATOR_GUI_NO_DIALOGS"] = "1"

import numpy as np

TARGETS = {"populate_ms": 200.0, "stall_ms": 100.0, "plot_ms": 50.0}


def make_model(folder: str, blocks: int = 250) -> list[str]:
    """conv -> BatchNorm -> Scale -> ReLU, ``blocks`` times (4 layers each) + input."""
    from migrator.testing.caffe_net import NetBuilder
    nb = NetBuilder("bench_1000", seed=1)
    nb.input("data", (1, 8, 12, 12))
    prev = "data"
    for i in range(blocks):
        nb.conv(f"conv{i}", prev, 8, 3, pad=1)
        nb.bn(f"bn{i}", f"conv{i}", top=f"conv{i}")
        nb.scale(f"scale{i}", f"conv{i}", top=f"conv{i}")
        nb.relu(f"relu{i}", f"conv{i}", top=f"conv{i}")
        prev = f"conv{i}"
    p, w = nb.save(os.path.join(folder, "bench.prototxt"), os.path.join(folder, "bench.caffemodel"))
    return [p, w]


def _fake_layer(n: int, failing: bool):
    from migrator.core.compare.metrics import LayerResult, Tolerance
    rng = np.random.default_rng(0)
    err = rng.uniform(1e-7, 1e-5, n)
    if failing:
        err[::97] = 1e-2
    return LayerResult(source="wide", source_type="Convolution", keras="wide", layout="NHWC",
                       shape=(1, n, 7, 7), status="fail" if failing else "pass",
                       max_abs=float(err.max()), mean_abs=float(err.mean()), max_rel=1e-5, scale=10.0,
                       tolerance=Tolerance(), needed_rtol=0.0, channel_max_abs=err,
                       channel_mean_abs=err / 3, channel_ref_absmax=np.full(n, 10.0),
                       worst_channel=int(err.argmax()))


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    blocks = 250
    if "--blocks" in argv:
        blocks = int(argv[argv.index("--blocks") + 1])
    from PySide6.QtCore import QElapsedTimer, QTimer
    from PySide6.QtWidgets import QApplication

    from migrator.core import document as D
    from migrator.gui import theme, workers
    from migrator.gui.main_window import MainWindow
    from migrator.gui.settings import Settings

    app = QApplication.instance() or QApplication([])
    theme.apply_theme("light")
    tmp = tempfile.mkdtemp(prefix="migrator-bench-gui-")
    paths = make_model(tmp, blocks)
    win = MainWindow(Settings(os.path.join(tmp, "s.ini")))
    win.ask = lambda *a: True
    win.resize(1500, 950)
    win.show()
    app.processEvents()

    # ---- load in a worker (not timed here), then the main-thread installation -------------
    t0 = time.perf_counter()
    loaded = workers.run_sync(D.load_model, paths)
    t_load = time.perf_counter() - t0
    n_layers = len(loaded["graph"].nodes)
    n_keras = len(loaded["plan"].keras_layers)
    pops = []
    for _ in range(3):
        t0 = time.perf_counter()
        win.opening.loaded(dict(loaded))
        app.processEvents()          # layout + paint of the visible rows
        pops.append((time.perf_counter() - t0) * 1000)
    populate_ms = min(pops)

    # ---- stall while a comparison runs (and its result is installed) -------------------------
    # let the window settle first (delayed item layouts, paints of the populated trees), as it
    # has long before a user clicks Run: otherwise those paints land inside the measurement
    settle = time.perf_counter() + 0.5
    while time.perf_counter() < settle:
        app.processEvents()
        time.sleep(0.005)
    gaps: list[float] = []
    timer = QElapsedTimer()
    timer.start()
    last = [timer.nsecsElapsed()]

    when: list[float] = []

    def beat():
        now = timer.nsecsElapsed()
        gaps.append((now - last[0]) / 1e6)
        when.append(now / 1e6)
        last[0] = now

    hb = QTimer()
    hb.setInterval(5)
    hb.timeout.connect(beat)
    done = [False]
    done_at = [0.0]
    win.comparison_done.connect(lambda: (done.__setitem__(0, True),
                                         done_at.__setitem__(0, timer.nsecsElapsed() / 1e6)))
    hb.start()
    t0 = time.perf_counter()
    started_at = timer.nsecsElapsed() / 1e6
    win.run_comparison()
    worker_done_at = [float("inf")]       # the worker's result reaches the GUI thread
    win.jobs["compare"]._sig_finished.connect(
        lambda *_: worker_done_at.__setitem__(0, min(worker_done_at[0], timer.nsecsElapsed() / 1e6)))
    while not done[0]:
        app.processEvents()
        time.sleep(0.001)
    # let the result installation and one repaint happen inside the measured window
    end = time.perf_counter() + 0.3
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.001)
    hb.stop()
    t_compare = time.perf_counter() - t0
    res = win.doc.result
    stall_ms = max(gaps) if gaps else float("nan")
    if gaps:
        i = int(np.argmax(gaps))
        # a gap that began before the worker's result arrived happened while it compared
        began = when[i] - gaps[i]
        stall_where = ("while the worker compared" if began < worker_done_at[0] else "installing the result") + \
            f", ending {(when[i] - started_at) / 1000:.2f} s into the run"
        during = [g for g, w in zip(gaps, when) if w - g < worker_done_at[0]]
        after = [g for g, w in zip(gaps, when) if w - g >= worker_done_at[0]]
        stall_during_run = max(during) if during else float("nan")
        stall_installing = max(after) if after else float("nan")
    else:
        stall_where, stall_during_run, stall_installing = "", float("nan"), float("nan")

    # ---- per-channel plot update, 2,048 channels ------------------------------------------------
    plot = win.channel_plot
    win.plot_tabs.setCurrentWidget(plot)
    times = {"pass": [], "fail": []}
    for k in range(12):
        failing = bool(k % 2)
        lr = _fake_layer(2048, failing)
        app.processEvents()
        t0 = time.perf_counter()
        plot.set_layer("wide", lr)
        plot.plot.repaint()
        app.processEvents()
        times["fail" if failing else "pass"].append((time.perf_counter() - t0) * 1000)
    plot_ms = max(statistics.median(times["pass"]), statistics.median(times["fail"]))

    figures = {"layers": n_layers, "keras_layers": n_keras, "load_s": t_load,
               "populate_ms": populate_ms, "compare_s": t_compare, "heartbeats": len(gaps),
               "stall_ms": stall_ms, "stall_where": stall_where, "stall_during_run_ms": stall_during_run,
               "stall_installing_ms": stall_installing,
               "plot_ms": plot_ms,
               "plot_pass_ms": statistics.median(times["pass"]),
               "plot_fail_ms": statistics.median(times["fail"]),
               "compare_passed": bool(res is not None and res.passed)}
    print(f"model: {n_layers} source layers -> {n_keras} Keras layers (load+plan+build in a worker: "
          f"{t_load:.2f} s)")
    print(f"tree population (main thread, incl. one paint): {populate_ms:7.1f} ms   "
          f"(target <= {TARGETS['populate_ms']:.0f} ms) {'OK' if populate_ms <= TARGETS['populate_ms'] else 'OVER'}")
    print(f"longest GUI stall during comparison ({t_compare:.1f} s, {len(gaps)} heartbeats of 5 ms): "
          f"{stall_ms:7.1f} ms   (target <= {TARGETS['stall_ms']:.0f} ms) "
          f"{'OK' if stall_ms <= TARGETS['stall_ms'] else 'OVER'} ({stall_where}; longest while the "
          f"worker ran: {stall_during_run:.1f} ms, installing the result: {stall_installing:.1f} ms)")
    print(f"per-channel plot update, 2,048 channels: {plot_ms:7.1f} ms   (pass {figures['plot_pass_ms']:.1f}, "
          f"with failing bars {figures['plot_fail_ms']:.1f}; target <= {TARGETS['plot_ms']:.0f} ms) "
          f"{'OK' if plot_ms <= TARGETS['plot_ms'] else 'OVER'}")
    print(f"comparison passed: {figures['compare_passed']}")
    workers.wait_idle(60_000)
    win.close()
    return figures


if __name__ == "__main__":
    main()
