"""Shoot docs/images/batch-gui.png: File ▸ Convert a folder… over a small model zoo (a real batch,
one `migrator convert` process per model), the index table in the window.  Run by docs/screenshots.sh
(under Xvfb when installed):  python docs/batch_screenshot.py OUT.png [1500x950]"""
from __future__ import annotations

import json
import os
import shutil
import sys


def make_zoo(root: str) -> None:
    from migrator.testing.caffe_net import NetBuilder

    def net(folder, name, seed, bn=False, frob=False):
        d = os.path.join(root, folder)
        os.makedirs(d, exist_ok=True)
        nb = NetBuilder(name, seed=seed)
        nb.input("data", (1, 3, 32, 32))
        nb.conv("conv1", "data", 8, 3, pad=1)
        if bn:
            nb.bn("bn1", "conv1", top="conv1")
        nb.relu("relu1", "conv1", top="conv1")
        nb.pool("pool1", "conv1", kernel=2, stride=2)
        nb.conv("conv2", "pool1", 16, 3, pad=1)
        nb.relu("relu2", "conv2", top="conv2")
        p, _m = nb.save(os.path.join(d, "deploy.prototxt"), os.path.join(d, f"{name}.caffemodel"))
        if frob:
            with open(p) as f:
                text = f.read()
            with open(p, "w") as f:
                f.write(text.replace('type: "ReLU"', 'type: "Frobnicate"', 1))
        return d, name

    net("vision/tiny_cnn", "tiny_cnn", 0)
    net("vision/tiny_cnn_bn", "tiny_cnn_bn", 1, bn=True)
    d, name = net("experiments/bn_wrong_eps", "bn_wrong_eps", 2, bn=True)
    with open(os.path.join(d, f"{name}.mapping.json"), "w") as f:
        json.dump({"version": 1, "kinds": {"BatchNorm": {"epsilon": 0.5, "variance": "raw"}}}, f)
    net("experiments/custom_layer", "custom_layer", 3, frob=True)
    d, name = net("archive/truncated", "truncated", 4)
    path = os.path.join(d, f"{name}.caffemodel")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 3])
    os.makedirs(os.path.join(root, "archive", "no_weights"), exist_ok=True)
    with open(os.path.join(root, "archive", "no_weights", "deploy.prototxt"), "w") as f:
        f.write('name: "no_weights"\n')


def main() -> int:
    out = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "docs/images/batch-gui.png")
    w, h = (int(v) for v in (sys.argv[2] if len(sys.argv) > 2 else "1500x950").split("x"))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tempfile
    root = os.path.join(tempfile.gettempdir(), "lab-models")
    dest = os.path.join(tempfile.gettempdir(), "lab-models-migrated")
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(dest, ignore_errors=True)
    make_zoo(root)
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from migrator.core.batch import BatchOptions
    from migrator.gui import theme
    from migrator.gui.app import _shrink_png
    from migrator.gui.main_window import MainWindow
    from migrator.gui.settings import Settings
    app = QApplication.instance() or QApplication([sys.argv[0]])
    theme.apply_theme("light")
    os.makedirs("build", exist_ok=True)
    if os.path.exists("build/batch-screenshot.ini"):
        os.remove("build/batch-screenshot.ini")
    win = MainWindow(Settings("build/batch-screenshot.ini"))
    win.save_layout = lambda: None
    win.resize(w, h)
    win.show()
    win.default_layout()
    rc = {"rc": 1}
    state = {"row": 0}

    def grab():
        win.batch.view.table.selectRow(state["row"])
        app.processEvents()
        pm = win.grab()
        os.makedirs(os.path.dirname(out), exist_ok=True)
        if pm.save(out):
            _shrink_png(out)
            print(out)
            rc["rc"] = 0
        app.exit(rc["rc"])

    def opened():
        win.batch.ensure_view()
        QTimer.singleShot(600, grab)

    def finished(_index):
        # the first verified model opened from the table, as a double-click does
        r = next(i for i, m in enumerate(win.batch.view.rows) if m["status"] == "verified")
        state["row"] = r
        win.opened.connect(opened)
        win.batch.view.open_row(r)

    def start():
        win.batch.start(root, BatchOptions(out_dir=dest, timeout_s=300))
        win.jobs["batch"].finished.connect(finished)

    QTimer.singleShot(300, start)
    app.exec()
    return rc["rc"]


if __name__ == "__main__":
    sys.exit(main())
