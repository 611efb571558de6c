"""Generate the two bundled demo models into ``resources/demo/`` (git-ignored output).

* ``caffe/``   -- ``demo.prototxt`` + ``demo.caffemodel``: a small conv net with three
  Caffe ``BatchNorm`` + ``Scale`` pairs (written with :class:`migrator.testing.caffe_net.NetBuilder`,
  statistics stored the Caffe way: sums times a 999.98 moving-average factor).
* ``lasagne/`` -- ``demo_lasagne.py`` (a Lasagne builder script using ``batch_norm()``) +
  ``demo_lasagne.pkl`` (``{'param values': [...], 'mean value': ..., 'synset words': ...}``,
  a plain pickle of numpy arrays in ``get_all_params`` order).

Weights are random but seeded and realistic (positive variances, gammas around 1).  The
app calls :func:`ensure_demos` when a demo is missing; ``python -m resources.make_demos``
regenerates them.
"""
from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

import numpy as np

DEMO_VERSION = "1"
HERE = Path(__file__).resolve().parent
DEFAULT_DIR = HERE / "demo"

LASAGNE_BUILDER = '''"""Migrator demo: a small Lasagne net with batch_norm() (conv and dense)."""
from lasagne.layers import (InputLayer, Conv2DLayer, MaxPool2DLayer, DenseLayer,
                            GlobalPoolLayer, ElemwiseSumLayer, batch_norm)
from lasagne.nonlinearities import rectify, softmax


def build_model():
    net = {}
    net["input"] = InputLayer((None, 3, 40, 40), name="input")
    net["conv1"] = batch_norm(Conv2DLayer(net["input"], 16, 3, pad=1, nonlinearity=rectify,
                                          name="conv1"))
    net["pool1"] = MaxPool2DLayer(net["conv1"], 2, name="pool1")
    net["conv2"] = batch_norm(Conv2DLayer(net["pool1"], 32, 3, pad=1, nonlinearity=rectify,
                                          name="conv2"))
    net["conv3"] = batch_norm(Conv2DLayer(net["conv2"], 32, 3, pad=1, nonlinearity=None,
                                          name="conv3"))
    net["res"] = ElemwiseSumLayer([net["conv2"], net["conv3"]], name="res")
    net["pool2"] = MaxPool2DLayer(net["res"], 2, name="pool2")
    net["fc1"] = batch_norm(DenseLayer(net["pool2"], 64, nonlinearity=rectify, name="fc1"))
    net["prob"] = DenseLayer(net["fc1"], 10, nonlinearity=softmax, name="prob")
    return net
'''

LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _stamp_ok(folder: Path, files: list[str]) -> bool:
    st = folder / ".version"
    return st.is_file() and st.read_text().strip() == DEMO_VERSION and \
        all((folder / f).is_file() for f in files)


def _write_stamp(folder: Path) -> None:
    (folder / ".version").write_text(DEMO_VERSION + "\n")


# --------------------------------------------------------------------------------------
def make_caffe(folder: Path) -> list[str]:
    from migrator.testing.caffe_net import NetBuilder
    folder.mkdir(parents=True, exist_ok=True)
    nb = NetBuilder("migrator_demo_caffe", seed=2024)
    nb.input("data", (1, 3, 48, 48))
    nb.conv("conv1", "data", 16, 3, pad=1)
    nb.bn_scale("bn1", "scale1", "conv1")
    nb.relu("relu1", "conv1", top="conv1")
    nb.pool("pool1", "conv1", "max", 2, stride=2)
    nb.conv("conv2", "pool1", 32, 3, pad=1)
    nb.bn_scale("bn2", "scale2", "conv2")
    nb.relu("relu2", "conv2", top="conv2")
    nb.conv("conv3", "conv2", 32, 3, pad=1)
    nb.bn_scale("bn3", "scale3", "conv3")
    nb.eltwise("res", ["conv2", "conv3"], "sum")
    nb.relu("relu3", "res", top="res")
    nb.pool("pool2", "res", "ave", 3, stride=2)
    nb.ip("fc1", "pool2", 64)
    nb.relu("relu4", "fc1", top="fc1")
    nb.ip("fc2", "fc1", 10)
    nb.softmax("prob", "fc2")
    proto, model = nb.save(folder / "demo.prototxt", folder / "demo.caffemodel")
    return [proto, model]


def make_lasagne(folder: Path) -> list[str]:
    from migrator.core.importers.lasagne import describe_builder
    folder.mkdir(parents=True, exist_ok=True)
    builder = folder / "demo_lasagne.py"
    builder.write_text(LASAGNE_BUILDER, encoding="utf-8")
    desc = describe_builder(str(builder))
    rng = np.random.default_rng(7)
    values = []
    for layer, pname, shape in desc["params"]:
        shape = tuple(shape)
        if pname == "W":
            fan_in = int(np.prod(shape[1:])) if len(shape) == 4 else shape[0]
            v = rng.normal(0, np.sqrt(2.0 / fan_in), shape)
        elif pname == "b":
            v = rng.normal(0, 0.1, shape)
        elif pname == "beta":
            v = rng.normal(0, 0.2, shape)
        elif pname == "gamma":
            v = rng.uniform(0.6, 1.4, shape)
        elif pname == "mean":
            v = rng.normal(0, 0.5, shape)
        elif pname == "inv_std":
            # Lasagne stores the running average of 1/sqrt(var + eps)
            v = 1.0 / np.sqrt(rng.uniform(0.2, 2.0, shape) + 1e-4)
        else:
            v = rng.normal(0, 0.1, shape)
        values.append(np.asarray(v, dtype=np.float32))
    params = folder / "demo_lasagne.pkl"
    data = {"param values": values, "mean value": np.array([0.2, -0.1, 0.05], np.float32),
            "synset words": LABELS}
    tmp = params.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(data, f, protocol=2)
    os.replace(tmp, params)
    return [str(builder), str(params)]


def ensure_demos(folder: str | os.PathLike | None = None, force: bool = False) -> dict[str, list[str]]:
    """Return ``{'caffe': [prototxt, caffemodel], 'lasagne': [builder, params]}``, writing
    whatever is missing or out of date."""
    root = Path(folder) if folder is not None else DEFAULT_DIR
    out = {}
    c, lz = root / "caffe", root / "lasagne"
    cf = ["demo.prototxt", "demo.caffemodel"]
    lf = ["demo_lasagne.py", "demo_lasagne.pkl"]
    if force or not _stamp_ok(c, cf):
        make_caffe(c)
        _write_stamp(c)
    out["caffe"] = [str(c / f) for f in cf]
    if force or not _stamp_ok(lz, lf):
        make_lasagne(lz)
        _write_stamp(lz)
    out["lasagne"] = [str(lz / f) for f in lf]
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    folder = argv[0] if argv else None
    paths = ensure_demos(folder, force=True)
    for k, v in paths.items():
        print(f"{k}: {' '.join(v)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
