"""OpenCV DNN as an independent reference runtime for Caffe models.

OpenCV has its own Caffe reader and its own kernels (``cv2.dnn.readNetFromCaffe``), written
independently of Migrator, so agreeing with it is evidence rather than self-agreement.

How OpenCV exposes a Caffe net (measured with OpenCV 4.x, ``enableFusion(False)``, backend OPENCV):

* every Caffe layer keeps its name (``net.getLayerNames()``) -- in-place layers included (``bn_1``,
  ``scale_1``, ``relu_1`` writing into blob ``conv_1`` are three layers) -- and, when requested in
  ``forward``, each layer's *own* output is kept: the ``pool`` output requested together with an
  in-place ``relu`` after it is the value before the ReLU.  Fusion must stay disabled, otherwise
  BatchNorm/Scale/ReLU are folded into the convolution and vanish from the outputs.
* ``Input`` layers and legacy ``input:`` fields become the net input (layer id 0, ``_input``);
  they are not in ``getLayerNames()``.  Migrator yields the input array as fed for Input nodes.
* ``Split`` has several outputs: ``forward(name)`` returns only the first;
  ``forwardAndRetrieve([names])`` returns all of them, which is what this runtime uses.  When many
  layers are requested at once, the second and later outputs of a Split can be overwritten by
  OpenCV's buffer reuse (measured), so multi-output layers are retrieved in a pass of their own.
* ``Dropout`` is an identity layer that is kept.
* Caffe's implicit split layers (inserted by Caffe for blobs read twice) do not exist in OpenCV.
* A max ``Pooling`` layer that is a net output gives two outputs (values, argmax mask): the first
  is used.
* Measured deviations from real Caffe are refused by ``check`` (see :func:`known_deviation`).

IR nodes that have no OpenCV layer of the same name are skipped (not observed), never faked.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import MigratorError
from .runtime_base import Runtime, check_cancel, input_dict

INSTALL_HINT = "install it with `pip install migrator[opencv]` (opencv-python-headless)"


def _import_cv2():
    try:
        import cv2
    except ImportError as e:
        raise MigratorError(f"OpenCV is not installed ({e}); {INSTALL_HINT}") from None
    if not hasattr(cv2, "dnn"):
        raise MigratorError(f"this OpenCV build ({cv2.__version__}) has no dnn module; {INSTALL_HINT}")
    return cv2


def caffe_files(graph) -> tuple[str | None, str | None]:
    """(prototxt, caffemodel) from ``graph.files`` (architecture first, weights second)."""
    files = [str(f) for f in (getattr(graph, "files", None) or [])]
    proto = next((f for f in files if f.lower().endswith((".prototxt", ".pbtxt", ".txt"))), None)
    weights = next((f for f in files if f.lower().endswith(".caffemodel")), None)
    if proto is None and files:
        proto = files[0]
    if weights is None:
        weights = next((f for f in files[1:] if f != proto), None)
    if weights is None:
        for n in getattr(graph, "nodes", []):
            wf = getattr(n.provenance, "weights_file", None)
            if wf:
                weights = str(wf)
                break
    return proto, weights


def _cv_error_text(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    # OpenCV errors look like "OpenCV(4.x) /path/file.cpp:123: error: (-2:...) message in function 'f'"
    msg = lines[-1] if lines else type(e).__name__
    if "error:" in msg:
        msg = msg.split("error:", 1)[1].strip()
    return msg


def known_deviation(graph, proto: str | None = None) -> str | None:
    """Why OpenCV DNN would not reproduce Caffe on this graph, from differences measured against
    real Caffe 1.0 (see tests/legacy): None when there is none we know of.

    * ``LRN`` ACROSS_CHANNELS with ``k != 1``: OpenCV ignores ``k`` (uses 1);
    * ``InnerProduct`` with ``transpose: true``: OpenCV ignores ``transpose`` (wrong results);
    * ``Bias`` layers: OpenCV cannot create them;
    * ``round_mode`` in a ``pooling_param``: OpenCV's Caffe reader does not know the field.
    """
    for n in graph.nodes:
        if n.op == "LRN" and n.attrs.get("region", "across") == "across" and float(n.attrs.get("k", 1.0)) != 1.0:
            return (f"layer '{n.name}': OpenCV DNN ignores the LRN k ({n.attrs['k']:g}) and uses 1, "
                    "unlike Caffe")
        if n.op == "Dense":
            w = n.params.get("weight")
            if w is not None and w.layout == "IO":
                return f"layer '{n.name}': OpenCV DNN ignores InnerProduct transpose: true"
        if n.source_type == "Bias":
            return f"layer '{n.name}': OpenCV DNN has no Caffe Bias layer"
    if proto and os.path.isfile(proto):
        try:
            with open(proto, "r", errors="replace") as fh:
                if "round_mode" in fh.read():
                    return "OpenCV DNN's Caffe reader does not know the pooling round_mode field"
        except OSError:
            pass
    return None


class OpenCVRuntime(Runtime):
    name = "opencv"
    label = "OpenCV DNN"
    # OpenCV's float32 kernels (Winograd 3x3 convolution, BN/Scale fused into the convolution) land
    # farther from the float64 result than numpy's float32: up to 7.4x on a correct calibrated
    # ResNet-50 and 13.4x on the correct 1,000-layer conv-BN-ReLU net (tests/core/test_verdict.py);
    # a 5e-5 kernel defect shared by Migrator's numpy kernel and its Keras rule moves it 17x
    # (tests/core/test_seeded_defects.py).  The margin is thin: OpenCV cannot resolve smaller
    # common-mode defects on deep nets; real Caffe (factor 4) can.
    anchor_factor = 16.0

    def __init__(self, **settings: Any):
        super().__init__(**settings)
        self._net = None
        self._net_key = None

    def describe(self) -> dict:
        d = {"name": self.name, "framework": "OpenCV DNN (Caffe importer)", "versions": {}}
        try:
            import cv2
            d["versions"] = {"opencv": cv2.__version__, "numpy": np.__version__}
        except ImportError:
            d["versions"] = {}
            d["error"] = "OpenCV is not installed"
        return d

    def check(self, graph) -> str | None:
        try:
            _import_cv2()
        except MigratorError as e:
            return str(e)
        if graph is None:
            return None
        if getattr(graph, "framework", None) != "caffe":
            return f"OpenCV DNN reads Caffe models only (this model is {graph.framework})"
        proto, weights = caffe_files(graph)
        if not proto or not os.path.isfile(proto):
            return f"the prototxt is not available on disk ({proto})"
        if not weights or not os.path.isfile(weights):
            return f"the .caffemodel is not available on disk ({weights})"
        return known_deviation(graph, proto)

    # ------------------------------------------------------------------------------------
    def _load(self, graph):
        cv2 = _import_cv2()
        proto, weights = caffe_files(graph)
        key = tuple((f, os.path.getmtime(f)) for f in (proto, weights) if f and os.path.exists(f))
        if self._net is not None and self._net_key == key:
            return self._net
        try:
            net = cv2.dnn.readNetFromCaffe(proto, weights) if weights else cv2.dnn.readNetFromCaffe(proto)
        except cv2.error as e:
            raise MigratorError(f"OpenCV DNN could not read the model: {_cv_error_text(e)}", file=proto) from None
        net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        net.enableFusion(False)   # keep BatchNorm / Scale / ReLU as separate, observable layers
        self._net, self._net_key = net, key
        return net

    def layer_names(self, graph) -> list[str]:
        return list(self._load(graph).getLayerNames())

    def run(self, graph, x_nchw, *, progress=None, cancel=None):
        self.ensure_usable(graph)
        cv2 = _import_cv2()
        proto, _ = caffe_files(graph)
        xs = input_dict(graph, x_nchw)
        check_cancel(cancel)
        if progress:
            progress(0.0, "OpenCV DNN: loading the model")
        net = self._load(graph)
        names = set(net.getLayerNames())
        observed = [n for n in graph.nodes if n.op != "Input" and n.name in names]
        not_seen = [n.name for n in graph.nodes if n.op != "Input" and n.name not in names]
        if not_seen:
            self.warnings.append("OpenCV DNN has no layer named " + ", ".join(not_seen[:10])
                                 + (" ..." if len(not_seen) > 10 else "") + " (not observed)")
        input_nodes = [n for n in graph.nodes if n.op == "Input"]
        for node in input_nodes:
            blob = node.provenance.tops[0] if node.provenance.tops else node.name
            arr = xs[node.name]
            if len(input_nodes) == 1:
                net.setInput(arr)
            else:
                net.setInput(arr, blob)
        check_cancel(cancel)
        if progress:
            progress(0.05, f"OpenCV DNN: forward through {len(observed)} layers")
        try:
            outs = net.forwardAndRetrieve([n.name for n in observed]) if observed else []
        except cv2.error as e:
            raise MigratorError(f"OpenCV DNN failed to run the model: {_cv_error_text(e)}", file=proto) from None
        by_name = dict(zip((n.name for n in observed), outs))
        # With many layers requested at once, OpenCV's buffer reuse can overwrite the 2nd..nth
        # output of a multi-output layer (measured: Split's second top); the first outputs are kept.
        # Requested alone, all outputs are right, so multi-output layers get a pass of their own.
        for n in observed:
            if n.num_outputs > 1:
                check_cancel(cancel)
                try:
                    by_name[n.name] = net.forwardAndRetrieve([n.name])[0]
                except cv2.error as e:
                    raise MigratorError(f"OpenCV DNN failed to run the model: {_cv_error_text(e)}",
                                        file=proto, layer=n.name) from None
        total = max(1, len(graph.nodes))
        for i, node in enumerate(graph.nodes):
            check_cancel(cancel)
            if node.op == "Input":
                yield node.name, [xs[node.name]]
                continue
            if node.name not in by_name:
                continue
            arrs = [np.asarray(a, dtype=np.float32) for a in by_name.pop(node.name)]
            if node.op in ("Pool", "GlobalPool") and len(arrs) > node.num_outputs:
                # OpenCV's max pooling also returns its argmax mask when the layer is a net output
                arrs = arrs[:node.num_outputs]
            if len(arrs) != node.num_outputs:
                self.warnings.append(f"layer '{node.name}': OpenCV DNN gives {len(arrs)} outputs, "
                                     f"the model has {node.num_outputs} (not observed)")
                continue
            if progress:
                progress(0.05 + 0.95 * (i + 1) / total, f"OpenCV DNN: {node.name}")
            yield node.name, arrs
