"""Caffe importer: ``.prototxt`` (text) + ``.caffemodel`` (binary) -> IR :class:`Graph`.

No Caffe installation is needed: both files are read with Migrator's own protobuf schema
(:mod:`migrator.core.importers.caffe_proto`).

What is handled

* new (V2 ``layer { type: "Convolution" }``) and old (V1 ``layers { type: CONVOLUTION }``)
  formats; V1 layers are upgraded to V2 type names first;
* network inputs given as an ``Input`` layer, as ``input`` + ``input_dim``, or as
  ``input`` + ``input_shape``;
* in-place layers (``top == bottom``): every layer produces its own tensor (id = node
  name); a blob name maps to its *latest* producer while the layers are read in order;
* layers excluded from the TEST phase (``include`` / ``exclude`` rules) are dropped, and
  so are data / loss / accuracy / Silence layers (with a note in ``graph.warnings``);
  MemoryData / DummyData layers (shapes known) become Input nodes;
* weights matched by *layer name*, so a caffemodel saved from the training net (data,
  Split and loss layers, maybe V1 format) loads into the deploy prototxt; blobs with a
  ``shape`` or legacy num/channels/height/width, packed or unpacked ``data`` or
  ``double_data``; legacy 4-d blobs are reshaped to what the layer needs;
* every unknown layer type becomes a ``Custom`` node (attrs ``class_name`` = type, blobs
  kept as ``blobs[i]``) so the planner reports it; nothing is dropped silently.

Errors are :class:`MigratorError` (one line naming the file and the layer).
"""
from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import MigratorError
from ..ir import Graph, Node, Param, Provenance, topological_sort

Progress = Callable[[float, str], None] | None

# ------------------------------------------------------------------------------------
# Layer type tables
# ------------------------------------------------------------------------------------
#: V1 enum name -> V2 type string (Caffe's own upgrade table).
V1_TYPE_NAMES: dict[str, str] = {
    "NONE": "", "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL",
    "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution",
    "DECONVOLUTION": "Deconvolution", "DATA": "Data", "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise",
    "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col", "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
    "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence",
    "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice",
    "TANH": "TanH", "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}

#: Layers that only feed training data; dropped from the deploy graph.
DATA_TYPES = {"Data", "ImageData", "HDF5Data", "WindowData", "VideoData", "AnnotatedData"}
#: Data layers whose output shape is known: they become Input nodes.
SHAPED_DATA_TYPES = {"MemoryData", "DummyData"}
#: Training-only sinks; dropped from the deploy graph.
SINK_TYPES = {"Accuracy", "Silence", "HDF5Output"}

#: Layer types converted to canonical ops (everything else becomes Custom).
SUPPORTED_TYPES = {
    "Input", "Convolution", "InnerProduct", "BatchNorm", "Scale", "Bias", "ReLU", "PReLU", "ELU",
    "Sigmoid", "TanH", "AbsVal", "BNLL", "Exp", "Power", "Pooling", "LRN", "Eltwise", "Concat",
    "Flatten", "Reshape", "Split", "Dropout", "Softmax", "Slice", "Crop", "Deconvolution",
}
#: BVLC catalogue additions (issue 14; the status of every type is in migrator/core/coverage.py).
CATALOGUE_TYPES = {"Log", "Threshold", "Clip", "Swish", "Reduction", "MVN", "Tile", "ArgMax", "Embed",
                   "SPP", "LSTM", "RNN", "Im2col"}
SUPPORTED_TYPES |= CATALOGUE_TYPES
#: BVLC layer types refused by name (imported as Custom nodes carrying the reason).
REFUSED_TYPES: dict[str, str] = {
    "Python": "a Python layer runs user code (python_param module/layer), which Migrator neither "
              "executes nor converts",
    "LSTMUnit": "LSTMUnit is the internal step of Caffe's LSTM (gate and 'cont' inputs); not converted",
    "Parameter": "a Parameter layer outputs a learned blob without a batch axis, which a Keras "
                 "tensor always has",
    "BatchReindex": "BatchReindex reorders the batch by indices from a second input (a training "
                    "tool); not converted",
    "Filter": "Filter drops batch items by a selector input, so the output batch size depends on "
              "the data; a static Keras graph cannot express it",
}
STOCHASTIC_REFUSAL = ("Pooling STOCHASTIC: Caffe implements it only on the GPU (the CPU build aborts "
                      "'Not Implemented Yet'), so it cannot be checked against the real framework")
from .caffe_forks import FORK_TYPES as _FORK_TYPES  # fork layer types (own module)

SUPPORTED_TYPES |= _FORK_TYPES


def _is_loss(type_: str) -> bool:
    return type_.endswith("Loss")


# ------------------------------------------------------------------------------------
# File reading
# ------------------------------------------------------------------------------------
def _read_file(path: str, what: str) -> bytes:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MigratorError(f"{what} not found (no such file)", file=path)
    if os.path.isdir(path):
        raise MigratorError(f"{what} path is a directory, not a file", file=path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except PermissionError:
        raise MigratorError(f"cannot read the {what}: permission denied", file=path) from None
    except OSError as e:
        raise MigratorError(f"cannot read the {what}: {e.strerror or e}", file=path) from None
    if not data:
        raise MigratorError(f"{what} is empty (0 bytes)", file=path)
    return data


def _pb():
    from .caffe_proto import pb
    return pb


def parse_prototxt(path: str, warnings: list[str] | None = None, unknown_out: list | None = None):
    """Parse a text prototxt into a ``NetParameter``.

    Fields unknown to Migrator's schema (custom forks' layer parameters): parsing is
    retried skipping such fields, and every one of them is listed (with its layer entry)
    in ``unknown_out`` (a :class:`.caffe_fields.ScanResult` is appended); the importer
    then refuses them unless accepted (see :mod:`.caffe_fields`).  Any other syntax error
    raises MigratorError with the line.
    """
    from google.protobuf import text_format

    pb = _pb()
    raw = _read_file(path, "prototxt")
    if b"\x00" in raw[:4096]:
        raise MigratorError("is a binary file, not a text prototxt (did you swap the .prototxt and "
                            "the .caffemodel?)", file=path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = raw.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes anything
            raise MigratorError("is not a text file", file=path) from None
    if not text.strip():
        raise MigratorError("prototxt is empty (only whitespace)", file=path)
    net = pb.NetParameter()
    try:
        text_format.Parse(text, net)
    except text_format.ParseError as e:
        first = _parse_error_text(e)
        if "has no field named" in str(e) or "unknown field" in str(e).lower():
            net = pb.NetParameter()
            try:
                text_format.Parse(text, net, allow_unknown_field=True)
            except text_format.ParseError as e2:
                raise MigratorError(f"syntax error {_parse_error_text(e2)}", file=path) from None
            from .caffe_fields import scan_unknown_fields
            try:
                scan = scan_unknown_fields(text, pb.NetParameter.DESCRIPTOR)
            except ValueError:
                raise MigratorError(f"unknown field {first}", file=path) from None
            if unknown_out is not None:
                unknown_out.append(scan)
            elif warnings is not None:
                warnings.append(f"{os.path.basename(path)}: fields unknown to Migrator's Caffe "
                                f"schema were skipped (first: {first})")
        else:
            raise MigratorError(f"syntax error {first}", file=path) from None
    return net


def _parse_error_text(e) -> str:
    """'at line L, column C: message' from a text_format.ParseError."""
    msg = str(e).replace("migrator_caffe.", "caffe.")
    line, col = getattr(e, "GetLine", lambda: None)(), getattr(e, "GetColumn", lambda: None)()
    # the message starts with "L:C : " when the position is known
    head, sep, rest = msg.partition(" : ")
    if sep and ":" in head and head.replace(":", "").isdigit():
        msg = rest
    if line is not None:
        return f"at line {line}, column {col}: {msg}"
    return f": {msg}"


class _NeedFullParse(Exception):
    pass


class CaffeWeights:
    """The blobs of a .caffemodel, by layer name, converted to numpy lazily.

    ``get(layer_name)`` returns a list of float32 arrays (shaped as stored; legacy
    blobs as 4-d (num, channels, height, width)) or None when the file has no blobs for
    that layer.
    """

    def __init__(self, path: str, net_name: str, fmt: str, blobs: dict[str, list],
                 layer_types: dict[str, str]):
        self.path = path
        self.net_name = net_name
        self.format = fmt
        self._blobs = blobs               # name -> list of ("fast"|"full", blob message)
        self.layer_types = layer_types    # name -> type of the layer in the weights file
        self.used: set[str] = set()

    def names(self) -> list[str]:
        return list(self._blobs)

    def has(self, name: str) -> bool:
        return name in self._blobs

    def get(self, name: str) -> list[tuple[np.ndarray, bool]] | None:
        entries = self._blobs.get(name)
        if entries is None:
            return None
        self.used.add(name)
        return [_blob_to_array(b, fast, self.path, name, i) for i, (fast, b) in enumerate(entries)]


def _blob_dims(b, file, layer, index) -> tuple[tuple[int, ...], bool]:
    """(shape, legacy) of a blob message."""
    if b.HasField("shape"):
        return tuple(int(d) for d in b.shape.dim), False
    legacy = [b.HasField(f) for f in ("num", "channels", "height", "width")]
    if any(legacy):
        return (int(b.num), int(b.channels), int(b.height), int(b.width)), True
    return (), False


def _blob_to_array(b, fast: bool, file: str, layer: str, index: int) -> tuple[np.ndarray, bool]:
    shape, legacy = _blob_dims(b, file, layer, index)
    if fast:
        chunks = list(b.data)
        dchunks = list(b.double_data)
        if chunks:
            buf = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            arr = np.frombuffer(buf, dtype="<f4")
        elif dchunks:
            buf = dchunks[0] if len(dchunks) == 1 else b"".join(dchunks)
            arr = np.frombuffer(buf, dtype="<f8").astype(np.float32)
        else:
            arr = np.zeros(0, np.float32)
    else:
        if len(b.data):
            arr = np.asarray(b.data, dtype=np.float32)
        elif len(b.double_data):
            arr = np.asarray(b.double_data, dtype=np.float64).astype(np.float32)
        else:
            arr = np.zeros(0, np.float32)
    if shape == () and not b.HasField("shape"):
        shape = (arr.size,)           # no shape at all: keep the values as a vector
    count = math.prod(shape)
    if any(d < 0 for d in shape):
        raise MigratorError(f"blob {index} has a negative dimension {shape}", file=file, layer=layer)
    if arr.size != count:
        raise MigratorError(f"blob {index} declares shape {shape} ({count} values) but holds "
                            f"{arr.size} values (truncated or corrupt file?)", file=file, layer=layer)
    arr = arr.reshape(shape)
    if not arr.flags.writeable:
        arr = arr.copy()   # frombuffer views are read-only; params must be ordinary arrays
    return arr, legacy


def parse_caffemodel(path: str) -> CaffeWeights:
    """Read a binary .caffemodel (fast path for packed blobs, full schema otherwise)."""
    from google.protobuf.message import DecodeError

    pb = _pb()
    raw = _read_file(path, "caffemodel")
    head = raw[:256].lstrip()
    if head[:5] in (b"name:", b"layer", b"input") or head[:6] == b"layers":
        raise MigratorError("looks like a text prototxt, not a binary .caffemodel (did you swap "
                            "the .prototxt and the .caffemodel?)", file=path)
    try:
        fast = pb.FastNetParameter()
        fast.ParseFromString(raw)
        weights = _collect(fast, path, fast_mode=True)
        # the fast view cannot see unpacked float data: verify every blob's count
        for entries in weights._blobs.values():
            for _, b in entries:
                shape, _ = _blob_dims(b, path, "", 0)
                n = sum(len(c) for c in b.data) // 4 + sum(len(c) for c in b.double_data) // 8
                if shape and n != math.prod(shape):
                    raise _NeedFullParse
                if not shape and not b.HasField("shape") and n == 0:
                    raise _NeedFullParse
                if any(len(c) % 4 for c in b.data) or any(len(c) % 8 for c in b.double_data):
                    raise _NeedFullParse
        return weights
    except _NeedFullParse:
        pass
    except DecodeError:
        pass   # the full parser gives the definitive answer below
    full = pb.NetParameter()
    try:
        full.ParseFromString(raw)
    except DecodeError:
        raise MigratorError(f"not a valid binary .caffemodel: the protobuf data is truncated or "
                            f"corrupt ({len(raw)} bytes could not be decoded)", file=path) from None
    return _collect(full, path, fast_mode=False)


def _collect(net, path: str, fast_mode: bool) -> CaffeWeights:
    pb = _pb()
    blobs: dict[str, list] = {}
    types: dict[str, str] = {}
    n_layers = 0
    fmt = "V2"
    if len(net.layers) and len(net.layer):
        fmt = "V1+V2"
    elif len(net.layers):
        fmt = "V1"
    for lp in net.layers:
        n_layers += 1
        name = lp.name
        try:
            tname = pb.V1LayerParameter.LayerType.Name(lp.type)
            t = V1_TYPE_NAMES.get(tname, tname)
        except ValueError:
            t = f"V1 type {lp.type}"
        types[name] = t
        if len(lp.blobs):
            blobs[name] = [(fast_mode, b) for b in lp.blobs]   # later layers win, as in Caffe
    for lp in net.layer:
        n_layers += 1
        types[lp.name] = lp.type
        if len(lp.blobs):
            blobs[lp.name] = [(fast_mode, b) for b in lp.blobs]
    if n_layers == 0:
        raise MigratorError("not a Caffe .caffemodel: no layers found (random or corrupt data?)",
                            file=path)
    if not any(types) and not blobs:
        raise MigratorError("not a Caffe .caffemodel: layers have neither names nor weights",
                            file=path)
    return CaffeWeights(path, net.name, fmt, blobs, types)


# ------------------------------------------------------------------------------------
# V1 -> V2 upgrade (only what the conversion needs)
# ------------------------------------------------------------------------------------
def _upgrade_v1(layers, file: str) -> list:
    pb = _pb()
    out = []
    v2_fields = pb.LayerParameter.DESCRIPTOR.fields_by_name
    for i, v1 in enumerate(layers):
        if v1.HasField("layer"):
            raise MigratorError("pre-2014 'V0' layer format is not supported; upgrade the net with "
                                "Caffe's upgrade_net_proto_text first", file=file,
                                layer=v1.name or v1.layer.name or f"#{i}")
        lp = pb.LayerParameter()
        lp.name = v1.name
        tname = pb.V1LayerParameter.LayerType.Name(v1.type) if v1.type in \
            pb.V1LayerParameter.LayerType.values() else str(v1.type)
        lp.type = V1_TYPE_NAMES.get(tname, tname)
        lp.bottom.extend(v1.bottom)
        lp.top.extend(v1.top)
        lp.include.extend(v1.include)
        lp.exclude.extend(v1.exclude)
        lp.blobs.extend(v1.blobs)
        lp.loss_weight.extend(v1.loss_weight)
        for fd, value in v1.ListFields():
            if fd.name.endswith("_param") and fd.name in v2_fields:
                getattr(lp, fd.name).CopyFrom(value)
        out.append(lp)
    return out


# ------------------------------------------------------------------------------------
# Phase filtering (Caffe's NetState rules; deploy = TEST phase)
# ------------------------------------------------------------------------------------
def _rule_matches(rule, phase: int, level: int, stages: set[str]) -> bool:
    if rule.HasField("phase") and rule.phase != phase:
        return False
    if rule.HasField("min_level") and level < rule.min_level:
        return False
    if rule.HasField("max_level") and level > rule.max_level:
        return False
    if any(s not in stages for s in rule.stage):
        return False
    return not any(s in stages for s in rule.not_stage)


def _included(lp, phase: int, level: int, stages: set[str]) -> bool:
    if len(lp.include):
        return any(_rule_matches(r, phase, level, stages) for r in lp.include)
    if len(lp.exclude):
        return not any(_rule_matches(r, phase, level, stages) for r in lp.exclude)
    return True


# ------------------------------------------------------------------------------------
# Attribute helpers
# ------------------------------------------------------------------------------------
def _hw(repeated, h_field, w_field, msg, default, what, file, layer) -> tuple[int, int]:
    """Caffe's 'kernel_size/pad/stride: one value for both dims, or one per dim' rule, with
    the explicit *_h/*_w fields taking precedence."""
    has_h = msg.HasField(h_field) if h_field else False
    has_w = msg.HasField(w_field) if w_field else False
    if has_h or has_w:
        if len(repeated):
            raise MigratorError(f"{what} given both as {what} and as {h_field}/{w_field}",
                                file=file, layer=layer)
        if not (has_h and has_w):
            raise MigratorError(f"{h_field} and {w_field} must be given together", file=file,
                                layer=layer)
        return int(getattr(msg, h_field)), int(getattr(msg, w_field))
    vals = [int(v) for v in repeated]
    if not vals:
        return default, default
    if len(vals) == 1:
        return vals[0], vals[0]
    if len(vals) == 2:
        return vals[0], vals[1]
    raise MigratorError(f"{len(vals)} {what} values: only 2-d (one or two values) is supported",
                        file=file, layer=layer)


def _vector(arr: np.ndarray, what: str, file, layer, n: int | None = None) -> np.ndarray:
    """A 1-d view of a blob that has at most one non-unit dimension (legacy (1,1,1,C))."""
    if arr.ndim != 1:
        if arr.size != max(arr.shape or (1,)) and arr.size > 1:
            raise MigratorError(f"{what} blob of shape {arr.shape} should be a vector",
                                file=file, layer=layer)
        arr = arr.reshape(-1)
    if n is not None and arr.size != n:
        raise MigratorError(f"{what} blob has {arr.size} values, expected {n}", file=file, layer=layer)
    return arr


def _strip_leading_ones(arr: np.ndarray, ndim: int) -> np.ndarray:
    shape = list(arr.shape)
    while len(shape) > ndim and shape[0] == 1:
        shape.pop(0)
    return arr.reshape(shape) if len(shape) != arr.ndim else arr


def _f32(x) -> float:
    """A float32 field as the shortest decimal that reads back as the same float32
    (1e-05 rather than 9.999999747378752e-06)."""
    return float(repr(np.float32(x)).replace("np.float32(", "").rstrip(")"))


def _param_dict(lp) -> dict[str, Any]:
    """The *_param messages set on a layer, as plain dicts (for Custom nodes)."""
    from google.protobuf import json_format
    out = {}
    for fd, value in lp.ListFields():
        if fd.name.endswith("_param") and fd.message_type is not None:
            out[fd.name] = json_format.MessageToDict(value, preserving_proto_field_name=True)
    return out


# ------------------------------------------------------------------------------------
# The importer
# ------------------------------------------------------------------------------------
class _Builder:
    def __init__(self, prototxt: str, caffemodel: str | None, progress: Progress,
                 accept_unknown=None, unknown: str = "error"):
        self.accept_unknown = list(accept_unknown or [])
        self.unknown_mode = unknown
        self.unknown_scan = None        # caffe_fields.ScanResult when the text had unknown fields
        self.unknown_items: list = []   # UnknownField of the layers kept in the deploy graph
        self._cur_entry: tuple[str, int] | None = None
        self.file = os.fspath(prototxt)
        self.wfile = None if caffemodel is None else os.fspath(caffemodel)
        self.progress = progress
        self.warnings: list[str] = []
        self.dropped: list[dict[str, str]] = []
        self.nodes: list[Node] = []
        self.names: set[str] = set()
        self.blob: dict[str, str] = {}             # blob name -> latest producing tensor id
        self.blob_all: dict[str, list[str]] = {}   # blob name -> every producing tensor id
        self.dropped_blobs: dict[str, tuple[str, str]] = {}   # blob -> (layer, type) dropped
        self.pending: list[tuple[Node, int, str]] = []        # (node, input index, blob)
        self.weights: CaffeWeights | None = None
        self.has_embedded = False
        self._wfile: str | None = None

    # ---------------------------------------------------------------- helpers
    def _p(self, frac: float, msg: str):
        if self.progress is not None:
            self.progress(frac, msg)

    def err(self, msg: str, layer: str | None = None, file: str | None = None) -> MigratorError:
        return MigratorError(msg, file=file or self.file, layer=layer)

    def _prov(self, lp, type_: str | None = None) -> Provenance:
        return Provenance(file=self.file, layer=lp.name, type=type_ or lp.type,
                          tops=list(lp.top), bottoms=list(lp.bottom), weights_file=None)

    def _add(self, node: Node, tops: list[str]):
        if node.name in self.names:
            raise self.err("duplicate layer name (layer names must be unique)", node.name)
        self.names.add(node.name)
        self.nodes.append(node)
        outs = node.outputs
        for top, tid in zip(tops, outs):
            self.blob[top] = tid
            self.blob_all.setdefault(top, []).append(tid)

    def _resolve_inputs(self, node: Node, bottoms: list[str]):
        ids = []
        for i, b in enumerate(bottoms):
            if b in self.blob:
                ids.append(self.blob[b])
            else:
                ids.append(None)
                self.pending.append((node, i, b))
        node.inputs = ids

    # ---------------------------------------------------------------- main
    def run(self) -> Graph:
        self._p(0.0, "reading prototxt")
        scans: list = []
        net = parse_prototxt(self.file, self.warnings, unknown_out=scans)
        self.unknown_scan = scans[0] if scans else None
        if len(net.layer) and len(net.layers):
            raise self.err("the prototxt mixes the new 'layer' and the old 'layers' (V1) formats")
        fmt = "V1" if len(net.layers) else "V2"
        layers = _upgrade_v1(net.layers, self.file) if fmt == "V1" else list(net.layer)
        if not layers and not len(net.input):
            raise self.err("the prototxt defines no layers and no inputs (not a Caffe net?)")

        if self.wfile is not None:
            self._p(0.1, "reading caffemodel")
            self.weights = parse_caffemodel(self.wfile)
        self.has_embedded = any(len(lp.blobs) for lp in layers)
        self._p(0.5, "building graph")

        phase = 1   # TEST
        level = int(net.state.level) if net.HasField("state") else 0
        stages = set(net.state.stage) if net.HasField("state") else set()
        kept_names = {lp.name for lp in layers if _included(lp, phase, level, stages)}

        input_style = self._net_inputs(net, kept_names)
        n = len(layers)
        for i, lp in enumerate(layers):
            if not lp.name:
                lp.name = f"{lp.type or 'layer'}_{i}"
                self.warnings.append(f"layer #{i} has no name; called it '{lp.name}'")
            if not _included(lp, phase, level, stages):
                self._drop(lp, "excluded from the TEST phase by its include/exclude rules")
                continue
            if lp.type == "Input" and input_style is None:
                input_style = "Input layer"
            self._cur_entry = ("layers" if fmt == "V1" else "layer", i)
            self._layer(lp)
            if i % 32 == 0:
                self._p(0.5 + 0.35 * i / max(n, 1), f"layer {lp.name}")
        self._resolve_pending()
        from .caffe_forks import check_unknown_fields
        unknown_meta = check_unknown_fields(self)

        graph = Graph(framework="caffe", nodes=self.nodes, name=net.name,
                      files=[self.file] + ([self.wfile] if self.wfile else []))
        graph.warnings.extend(self.warnings)
        meta: dict[str, Any] = {"format": fmt, "input_style": input_style, "dropped": self.dropped,
                                "unknown_fields": unknown_meta}
        if self.weights is not None:
            w = self.weights
            meta.update(weights_net_name=w.net_name, weights_format=w.format)
            unused = [nm for nm in w.names() if nm not in w.used]
            meta["unused_weights"] = unused
            if unused:
                graph.warnings.append(
                    f"{os.path.basename(w.path)}: {len(unused)} layer(s) with weights are not in "
                    f"the prototxt and were ignored: {', '.join(unused[:8])}"
                    + (" ..." if len(unused) > 8 else ""))
        meta["has_weights"] = self.weights is not None or self.has_embedded
        if not meta["has_weights"]:
            graph.warnings.append("no .caffemodel given: architecture only (no weights)")
        graph.meta["caffe"] = meta
        self._p(0.9, "checking shapes")
        graph.validate(self.file)
        try:
            graph.infer_shapes(self.file)
        except MigratorError as e:
            raise self._with_weights_file(graph, e) from None
        from ..limits import check_tensor_sizes  # a forged size: refuse before allocating
        check_tensor_sizes(graph, self.file)
        self._p(1.0, "imported")
        return graph

    @staticmethod
    def _with_weights_file(graph: Graph, e: MigratorError) -> MigratorError:
        """A shape error about a layer's blobs also names the file the blobs came from."""
        if not e.layer or e.layer not in graph:
            return e
        wf = graph.node(e.layer).provenance.weights_file
        words = ("weight", "param", "bias", "slope", "scale", "blob")
        if wf and wf != e.file and any(w in e.message.lower() for w in words):
            return MigratorError(f"{e.message} [blobs from {wf}]", file=e.file, layer=e.layer)
        return e

    # ---------------------------------------------------------------- inputs
    def _net_inputs(self, net, kept_names: set[str]) -> str | None:
        if not len(net.input):
            if len(net.input_dim) or len(net.input_shape):
                raise self.err("input_dim/input_shape given without 'input' names")
            return None
        names = list(net.input)
        if len(net.input_shape):
            if len(net.input_shape) not in (1, len(names)) or \
                    (len(net.input_shape) == 1 and len(names) > 1):
                raise self.err(f"{len(names)} inputs but {len(net.input_shape)} input_shape entries")
            shapes = [tuple(int(d) for d in s.dim) for s in net.input_shape]
            style = "input_shape"
        elif len(net.input_dim):
            if len(net.input_dim) != 4 * len(names):
                raise self.err(f"{len(names)} inputs need {4 * len(names)} input_dim values, got "
                               f"{len(net.input_dim)}")
            d = [int(v) for v in net.input_dim]
            shapes = [tuple(d[4 * k:4 * k + 4]) for k in range(len(names))]
            style = "input_dim"
        else:
            raise self.err(f"input '{names[0]}' has no input_dim or input_shape")
        for blob, shape in zip(names, shapes):
            self._check_input_dims(shape, blob)
            name = blob
            if name in kept_names or name in self.names:
                name = f"{blob}_input"
                k = 2
                while name in kept_names or name in self.names:
                    name = f"{blob}_input{k}"
                    k += 1
            node = Node(name=name, op="Input", attrs={"shape": shape},
                        provenance=Provenance(file=self.file, layer=blob, type="Input",
                                              tops=[blob], bottoms=[]))
            self._add(node, [blob])
        return style

    # ---------------------------------------------------------------- dropping
    def _drop(self, lp, why: str):
        self.dropped.append({"layer": lp.name, "type": lp.type, "reason": why})
        self.warnings.append(f"dropped layer '{lp.name}' ({lp.type}): {why}")
        for t in lp.top:
            if t not in self.blob:
                self.dropped_blobs[t] = (lp.name, lp.type)

    # ---------------------------------------------------------------- weights
    def _blobs(self, lp) -> list[tuple[np.ndarray, bool]] | None:
        got = None
        wfile = None
        if self.weights is not None:
            got = self.weights.get(lp.name)
            wfile = self.wfile
        if got is None and len(lp.blobs):
            got = [_blob_to_array(b, False, self.file, lp.name, i) for i, b in enumerate(lp.blobs)]
            wfile = self.file
        if got is not None:
            for i, (arr, _) in enumerate(got):
                if arr.size and not np.isfinite(arr).all():
                    bad = int(arr.size - np.isfinite(arr).sum())
                    kinds = []
                    if np.isnan(arr).any():
                        kinds.append("NaN")
                    if np.isinf(arr).any():
                        kinds.append("Inf")
                    raise MigratorError(f"blob {i} ({_BLOB_NAMES.get(lp.type, {}).get(i, 'data')}) "
                                        f"contains {'/'.join(kinds)} values ({bad} of {arr.size})",
                                        file=wfile, layer=lp.name)
        self._wfile = wfile
        return got

    def _need_blobs(self, lp, n_min: int, n_max: int, what: str) -> list[np.ndarray] | None:
        got = self._blobs(lp)
        if got is None:
            if self.weights is None and not self.has_embedded:
                return None      # architecture only
            where = self.wfile or self.file
            hint = ""
            if self.weights is not None:
                hint = (" (the file has no layer of that name; it may be truncated or belong to "
                        "another network)")
            raise MigratorError(f"missing weights for {lp.type} layer ({what}){hint}",
                                file=where, layer=lp.name)
        if not n_min <= len(got) <= n_max:
            exp = str(n_min) if n_min == n_max else f"{n_min}-{n_max}"
            raise MigratorError(f"{lp.type} layer expects {exp} blob(s) ({what}) but the weights "
                                f"have {len(got)}", file=self._wfile, layer=lp.name)
        return [a for a, _ in got]

    # ---------------------------------------------------------------- layers
    def _layer(self, lp):
        t = lp.type
        name = lp.name
        tops = list(lp.top)
        bottoms = list(lp.bottom)
        if t in DATA_TYPES:
            self._drop(lp, "training data layer (no deploy equivalent)")
            return
        if _is_loss(t) or t in SINK_TYPES:
            self._drop(lp, "loss/accuracy/sink layer (training only)")
            return
        if self.unknown_scan is not None and self._cur_entry is not None:
            from .caffe_forks import collect_layer_unknowns
            collect_layer_unknowns(self, lp)
        if t in SHAPED_DATA_TYPES:
            self._shaped_data(lp)
            return
        if t == "Input":
            self._input_layer(lp)
            return
        if t not in SUPPORTED_TYPES:
            self._custom(lp)
            return
        # exactly-one-top layers
        if t not in ("Split", "Slice") and len(tops) != 1:
            raise self.err(f"{t} layer must have exactly one top, has {len(tops)}", name)
        n_bottom = {"Eltwise": (2, 1 << 30), "Concat": (1, 1 << 30), "Scale": (1, 2),
                    "Bias": (1, 2), "Crop": (2, 2), "LSTM": (2, 3), "RNN": (2, 3)}.get(t, (1, 1))
        if not n_bottom[0] <= len(bottoms) <= n_bottom[1]:
            raise self.err(f"{t} layer has {len(bottoms)} bottoms (expected "
                           f"{n_bottom[0] if n_bottom[0] == n_bottom[1] else f'at least {n_bottom[0]}'})",
                           name)
        handler = getattr(self, "_l_" + t, None)
        if handler is None:   # a fork layer type (caffe_forks.FORK_HANDLERS)
            from .caffe_forks import FORK_HANDLERS
            op, attrs, params, num_out = FORK_HANDLERS[t](self, lp)
        else:
            op, attrs, params, num_out = handler(lp)
        node = Node(name=name, op=op, attrs=attrs, params=params, provenance=self._prov(lp),
                    num_outputs=num_out)
        if params:
            node.provenance.weights_file = self._wfile
        self._resolve_inputs(node, bottoms)
        self._add(node, tops)

    # each handler returns (op, attrs, params, num_outputs)
    def _conv_geometry(self, lp, what: str):
        """(num_output, kernel, pad, stride, dilation, group, bias) of a convolution_param,
        validated; shared by Convolution and Deconvolution."""
        cp = lp.convolution_param
        f, n = self.file, lp.name
        if cp.axis != 1:
            raise self.err(f"{what} axis {cp.axis} is not supported (only 1)", n)
        if not cp.HasField("num_output"):
            raise self.err("convolution_param.num_output is missing", n)
        kernel = _hw(cp.kernel_size, "kernel_h", "kernel_w", cp, None, "kernel_size", f, n)
        if kernel[0] is None:
            raise self.err(f"{what} has no kernel_size (nor kernel_h/kernel_w)", n)
        pad = _hw(cp.pad, "pad_h", "pad_w", cp, 0, "pad", f, n)
        stride = _hw(cp.stride, "stride_h", "stride_w", cp, 1, "stride", f, n)
        dilation = _hw(cp.dilation, None, None, cp, 1, "dilation", f, n)
        group = int(cp.group)
        O = int(cp.num_output)
        if group < 1 or O % group:
            raise self.err(f"num_output {O} is not divisible by group {group}", n)
        if min(kernel) < 1 or min(stride) < 1 or min(dilation) < 1:
            raise self.err(f"invalid kernel {kernel} / stride {stride} / dilation {dilation}", n)
        return O, kernel, pad, stride, dilation, group, bool(cp.bias_term)

    def _conv_params(self, lp, O, kernel, group, bias, *, transposed: bool) -> dict:
        """weight (+ bias) of a Convolution ((O, in/group, kh, kw), 'OIHW') or a Deconvolution
        ((in, O/group, kh, kw), 'IOHW'), shape-checked against num_output and the kernel."""
        n = lp.name
        blobs = self._need_blobs(lp, 1 + bias, 1 + bias, "weight" + (", bias" if bias else ""))
        if blobs is None:
            return {}
        w = blobs[0]
        if w.ndim != 4:
            w = _strip_leading_ones(w, 4)
        if transposed:
            fits = w.ndim == 4 and w.shape[1] * group == O
            expected = f"(in, {O // group}, {kernel[0]}, {kernel[1]})"
            what = f"num_output {O} (group {group})"
        else:
            fits = w.ndim == 4 and w.shape[0] == O
            expected = f"({O}, in/group, {kernel[0]}, {kernel[1]})"
            what = f"num_output {O}"
        if not fits or tuple(w.shape[2:]) != kernel:
            raise MigratorError(
                f"weight blob of shape {tuple(blobs[0].shape)} does not fit {what} and kernel "
                f"{kernel[0]}x{kernel[1]} (expected {expected})", file=self._wfile, layer=n)
        params = {"weight": Param("weight", w, "IOHW" if transposed else "OIHW", "blobs[0]")}
        if bias:
            params["bias"] = Param("bias", _vector(blobs[1], "bias", self._wfile, n, O), "O", "blobs[1]")
        return params

    def _l_Convolution(self, lp):
        O, kernel, pad, stride, dilation, group, bias = self._conv_geometry(lp, "convolution")
        attrs = {"num_output": O, "kernel": kernel, "stride": stride, "pad": pad,
                 "dilation": dilation, "group": group, "bias": bias, "flip": False,
                 "activation": None}
        params = self._conv_params(lp, O, kernel, group, bias, transposed=False)
        return "Conv", attrs, params, 1

    def _l_Deconvolution(self, lp):
        O, kernel, pad, stride, dilation, group, bias = self._conv_geometry(lp, "deconvolution")
        attrs = {"num_output": O, "kernel": kernel, "stride": stride, "pad": pad,
                 "dilation": dilation, "group": group, "bias": bias}
        params = self._conv_params(lp, O, kernel, group, bias, transposed=True)
        return "Deconv", attrs, params, 1

    def _l_Slice(self, lp):
        sp = lp.slice_param
        if not len(lp.top):
            raise self.err("Slice layer has no top", lp.name)
        axis = int(sp.slice_dim) if sp.HasField("slice_dim") else int(sp.axis)
        points = [int(p) for p in sp.slice_point]
        if points and len(points) != len(lp.top) - 1:
            raise self.err(f"Slice has {len(points)} slice points for {len(lp.top)} tops (needs "
                           f"{len(lp.top) - 1})", lp.name)
        if any(b >= e for b, e in itertools.pairwise(points)):
            raise self.err(f"slice points {points} are not strictly increasing", lp.name)
        return "Slice", {"axis": axis, "slice_points": points or None}, {}, len(lp.top)

    def _l_Crop(self, lp):
        cp = lp.crop_param
        return "Crop", {"axis": int(cp.axis), "offsets": [int(o) for o in cp.offset]}, {}, 1

    def _l_InnerProduct(self, lp):
        ip = lp.inner_product_param
        n = lp.name
        if not ip.HasField("num_output"):
            raise self.err("inner_product_param.num_output is missing", n)
        N = int(ip.num_output)
        bias = bool(ip.bias_term)
        transpose = bool(ip.transpose)
        attrs = {"num_output": N, "axis": int(ip.axis), "bias": bias, "activation": None}
        params = {}
        blobs = self._need_blobs(lp, 1 + bias, 1 + bias, "weight" + (", bias" if bias else ""))
        if blobs is not None:
            w = _strip_leading_ones(blobs[0], 2)
            if w.ndim == 1:
                w = w.reshape((1, -1) if not transpose else (-1, 1))
            n_dim = w.shape[1] if transpose else w.shape[0]
            if w.ndim != 2 or n_dim != N:
                exp = f"(K, {N})" if transpose else f"({N}, K)"
                raise MigratorError(f"weight blob of shape {tuple(blobs[0].shape)} does not fit "
                                    f"num_output {N} (expected {exp}"
                                    f"{', transpose: true' if transpose else ''})",
                                    file=self._wfile, layer=n)
            params["weight"] = Param("weight", w, "IO" if transpose else "OI", "blobs[0]")
            if bias:
                params["bias"] = Param("bias", _vector(blobs[1], "bias", self._wfile, n, N), "O",
                                       "blobs[1]")
        return "Dense", attrs, params, 1

    def _l_BatchNorm(self, lp):
        bp = lp.batch_norm_param
        n = lp.name
        attrs = {"form": "caffe", "axis": 1, "eps": _f32(bp.eps),
                 "moving_average_fraction": _f32(bp.moving_average_fraction),
                 "use_global_stats": bool(bp.use_global_stats) if bp.HasField("use_global_stats")
                 else None}
        if attrs["use_global_stats"] is False:
            self.warnings.append(f"layer '{n}': BatchNorm use_global_stats is false (batch "
                                 "statistics); the stored moving averages are used for inference")
        params = {}
        blobs = self._need_blobs(lp, 3, 3, "mean, variance, moving-average factor")
        if blobs is not None:
            mean = _vector(blobs[0], "mean", self._wfile, n)
            var = _vector(blobs[1], "variance", self._wfile, n, mean.size)
            sf = _vector(blobs[2], "scale factor", self._wfile, n, 1)
            if (var < 0).any():
                raise MigratorError(f"variance blob has negative values (min {float(var.min()):g})",
                                    file=self._wfile, layer=n)
            params["mean"] = Param("mean", mean, "C", "blobs[0]")
            params["variance"] = Param("variance", var, "C", "blobs[1]")
            params["scale_factor"] = Param("scale_factor", sf.reshape(1), "SCALAR", "blobs[2]")
        return "BatchNorm", attrs, params, 1

    def _scale_shaped(self, arr, num_axes, what, n):
        if num_axes == 1:
            return _vector(arr, what, self._wfile, n), "C"
        if num_axes == 0:
            return _vector(arr, what, self._wfile, n, 1), "SCALAR"
        if num_axes > 1:   # legacy 4-d blobs carry leading 1s
            arr = _strip_leading_ones(arr, num_axes)
        return arr, ""

    def _l_Scale(self, lp):
        sp = lp.scale_param
        n = lp.name
        two = len(lp.bottom) == 2
        bias = bool(sp.bias_term)
        attrs = {"axis": int(sp.axis), "num_axes": int(sp.num_axes), "bias": bias, "two_input": two}
        params = {}
        need = (0 if two else 1) + bias
        if need == 0:
            return "Scale", attrs, params, 1
        what = ", ".join((["scale"] if not two else []) + (["bias"] if bias else []))
        blobs = self._need_blobs(lp, need, need, what)
        if blobs is not None:
            k = 0
            if not two:
                v, lay = self._scale_shaped(blobs[0], sp.num_axes, "scale", n)
                params["scale"] = Param("scale", v, lay, "blobs[0]")
                k = 1
            if bias:
                v, lay = self._scale_shaped(blobs[k], sp.num_axes, "bias", n)
                params["bias"] = Param("bias", v, lay, f"blobs[{k}]")
        return "Scale", attrs, params, 1

    def _l_Bias(self, lp):
        bp = lp.bias_param
        attrs = {"axis": int(bp.axis), "num_axes": int(bp.num_axes)}
        params = {}
        if len(lp.bottom) == 2:   # the bias is the second bottom (no blob)
            attrs["two_input"] = True
            return "Bias", attrs, params, 1
        blobs = self._need_blobs(lp, 1, 1, "bias")
        if blobs is not None:
            v, lay = self._scale_shaped(blobs[0], bp.num_axes, "bias", lp.name)
            params["bias"] = Param("bias", v, lay, "blobs[0]")
        return "Bias", attrs, params, 1

    def _l_ReLU(self, lp):
        return "Activation", {"kind": "relu",
                              "negative_slope": _f32(lp.relu_param.negative_slope)}, {}, 1

    def _l_PReLU(self, lp):
        shared = bool(lp.prelu_param.channel_shared)
        params = {}
        blobs = self._need_blobs(lp, 1, 1, "slope")
        if blobs is not None:
            v = _vector(blobs[0], "slope", self._wfile, lp.name, 1 if shared else None)
            params["slope"] = Param("slope", v, "C", "blobs[0]")
        return "PReLU", {"channel_shared": shared}, params, 1

    def _l_ELU(self, lp):
        return "Activation", {"kind": "elu", "alpha": _f32(lp.elu_param.alpha)}, {}, 1

    def _l_Sigmoid(self, lp):
        return "Activation", {"kind": "sigmoid"}, {}, 1

    def _l_TanH(self, lp):
        return "Activation", {"kind": "tanh"}, {}, 1

    def _l_AbsVal(self, lp):
        return "Activation", {"kind": "abs"}, {}, 1

    def _l_BNLL(self, lp):
        return "Activation", {"kind": "softplus"}, {}, 1

    def _l_Exp(self, lp):
        ep = lp.exp_param
        if ep.base == -1.0 and ep.scale == 1.0 and ep.shift == 0.0:
            return "Activation", {"kind": "exp"}, {}, 1
        return "Exp", self._base_scale_shift(lp, ep), {}, 1

    def _l_Power(self, lp):
        pp = lp.power_param
        return "Power", {"power": _f32(pp.power), "scale": _f32(pp.scale),
                         "shift": _f32(pp.shift)}, {}, 1

    def _l_Pooling(self, lp):
        pp = lp.pooling_param
        f, n = self.file, lp.name
        if pp.pool == 2:   # STOCHASTIC
            parts = self._custom_parts(lp, "stochastic pooling")
            parts[1]["refused"] = STOCHASTIC_REFUSAL
            return parts
        mode = "max" if pp.pool == 0 else "avg"
        if pp.global_pooling:
            if pp.HasField("kernel_size") or pp.HasField("kernel_h"):
                raise self.err("global_pooling and kernel_size cannot both be given", n)
            return "GlobalPool", {"mode": mode, "keepdims": True}, {}, 1
        ks = [pp.kernel_size] if pp.HasField("kernel_size") else []
        kernel = _hw(ks, "kernel_h", "kernel_w", pp, None, "kernel_size", f, n)
        if kernel[0] is None:
            raise self.err("pooling has no kernel_size (nor kernel_h/kernel_w, nor global_pooling)",
                           n)
        pads = [pp.pad] if pp.HasField("pad") else []
        pad = _hw(pads, "pad_h", "pad_w", pp, 0, "pad", f, n)
        strides = [pp.stride] if pp.HasField("stride") else []
        stride = _hw(strides, "stride_h", "stride_w", pp, 1, "stride", f, n)
        if min(kernel) < 1 or min(stride) < 1:
            raise self.err(f"invalid pooling kernel {kernel} / stride {stride}", n)
        rounding = "floor" if pp.round_mode == 1 else "caffe_ceil"
        if pp.HasField("ceil_mode"):   # fork field (DenseNet-Caffe & co.): false = floor
            if pp.HasField("round_mode") and (pp.round_mode == 1) == bool(pp.ceil_mode):
                raise self.err("pooling_param gives ceil_mode and round_mode with opposite "
                               "meanings", n)
            rounding = "caffe_ceil" if pp.ceil_mode else "floor"
        return "Pool", {"mode": mode, "kernel": kernel, "stride": stride, "pad": pad,
                        "rounding": rounding, "avg_divisor": "caffe"}, {}, 1

    def _l_LRN(self, lp):
        p = lp.lrn_param
        size = int(p.local_size)
        if size < 1 or size % 2 == 0:
            raise self.err(f"LRN local_size must be odd, got {size}", lp.name)
        region = "within" if p.norm_region == 1 else "across"
        alpha = _f32(p.alpha)
        coeff = alpha / size if region == "across" else alpha / (size * size)
        # Caffe's WITHIN_CHANNEL ignores k: its power layer computes (1 + alpha/n^2 * sum)^-beta
        # (measured against the real Caffe 1.0; helper B, numpy reference work)
        k = _f32(p.k) if region == "across" else 1.0
        return "LRN", {"region": region, "size": size, "coeff": coeff, "beta": _f32(p.beta),
                       "k": k, "source_alpha": alpha}, {}, 1

    def _l_Eltwise(self, lp):
        ep = lp.eltwise_param
        op = {0: "prod", 1: "sum", 2: "max"}[int(ep.operation)]
        coeffs = [_f32(c) for c in ep.coeff] or None
        if coeffs is not None:
            if op != "sum":
                raise self.err("Eltwise coefficients are only allowed with operation SUM", lp.name)
            if len(coeffs) != len(lp.bottom):
                raise self.err(f"Eltwise has {len(coeffs)} coefficients for {len(lp.bottom)} bottoms",
                               lp.name)
        return "Eltwise", {"operation": op, "coeffs": coeffs}, {}, 1

    def _l_Concat(self, lp):
        cp = lp.concat_param
        if cp.HasField("concat_dim") and cp.HasField("axis"):
            raise self.err("concat_param gives both axis and the legacy concat_dim", lp.name)
        axis = int(cp.concat_dim) if cp.HasField("concat_dim") else int(cp.axis)
        return "Concat", {"axis": axis}, {}, 1

    def _l_Flatten(self, lp):
        fp = lp.flatten_param
        return "Flatten", {"axis": int(fp.axis), "end_axis": int(fp.end_axis)}, {}, 1

    def _l_Reshape(self, lp):
        rp = lp.reshape_param
        return "Reshape", {"shape": [int(d) for d in rp.shape.dim], "axis": int(rp.axis),
                           "num_axes": int(rp.num_axes)}, {}, 1

    def _l_Split(self, lp):
        if not len(lp.top):
            raise self.err("Split layer has no top", lp.name)
        return "Split", {}, {}, len(lp.top)

    def _l_Dropout(self, lp):
        return "Dropout", {"ratio": _f32(lp.dropout_param.dropout_ratio)}, {}, 1

    def _l_Softmax(self, lp):
        return "Softmax", {"axis": int(lp.softmax_param.axis)}, {}, 1

    # ---------------------------------------------------------------- BVLC catalogue (issue 14)
    def _base_scale_shift(self, lp, p) -> dict:
        if p.base != -1.0 and p.base <= 0:
            raise self.err(f"{lp.type} base must be strictly positive (or -1 for e), got "
                           f"{_f32(p.base)}", lp.name)
        return {"base": _f32(p.base), "scale": _f32(p.scale), "shift": _f32(p.shift)}

    def _l_Log(self, lp):
        return "Log", self._base_scale_shift(lp, lp.log_param), {}, 1

    def _l_Threshold(self, lp):
        return "Threshold", {"threshold": _f32(lp.threshold_param.threshold)}, {}, 1

    def _l_Clip(self, lp):
        cp = lp.clip_param
        if not (cp.HasField("min") and cp.HasField("max")):
            raise self.err("clip_param needs both min and max", lp.name)
        if cp.min > cp.max:
            raise self.err(f"clip min {_f32(cp.min)} is larger than max {_f32(cp.max)}", lp.name)
        return "Clip", {"min": _f32(cp.min), "max": _f32(cp.max)}, {}, 1

    def _l_Swish(self, lp):
        return "Swish", {"beta": _f32(lp.swish_param.beta)}, {}, 1

    def _l_Reduction(self, lp):
        rp = lp.reduction_param
        op = {1: "sum", 2: "asum", 3: "sumsq", 4: "mean"}.get(int(rp.operation))
        if op is None:
            raise self.err(f"unknown reduction operation {int(rp.operation)}", lp.name)
        return "Reduction", {"operation": op, "axis": int(rp.axis), "coeff": _f32(rp.coeff)}, {}, 1

    def _l_MVN(self, lp):
        mp = lp.mvn_param
        return "MVN", {"normalize_variance": bool(mp.normalize_variance),
                       "across_channels": bool(mp.across_channels), "eps": _f32(mp.eps)}, {}, 1

    def _l_Tile(self, lp):
        tp = lp.tile_param
        if not tp.HasField("tiles") or tp.tiles < 1:
            raise self.err("tile_param.tiles must be given and at least 1", lp.name)
        return "Tile", {"axis": int(tp.axis), "tiles": int(tp.tiles)}, {}, 1

    def _l_ArgMax(self, lp):
        ap = lp.argmax_param
        if ap.top_k < 1:
            raise self.err("argmax_param.top_k must be at least 1", lp.name)
        return "ArgMax", {"out_max_val": bool(ap.out_max_val), "top_k": int(ap.top_k),
                          "axis": int(ap.axis) if ap.HasField("axis") else None}, {}, 1

    def _l_Embed(self, lp):
        ep = lp.embed_param
        n = lp.name
        if not ep.HasField("num_output") or not ep.HasField("input_dim"):
            raise self.err("embed_param needs num_output and input_dim", n)
        N, K, bias = int(ep.num_output), int(ep.input_dim), bool(ep.bias_term)
        params = {}
        blobs = self._need_blobs(lp, 1 + bias, 1 + bias, "weight" + (", bias" if bias else ""))
        if blobs is not None:
            w = _strip_leading_ones(blobs[0], 2)
            if w.shape != (K, N):
                raise MigratorError(f"weight blob of shape {tuple(blobs[0].shape)} does not fit "
                                    f"input_dim {K} and num_output {N} (expected ({K}, {N}))",
                                    file=self._wfile, layer=n)
            params["weight"] = Param("weight", w, "IO", "blobs[0]")
            if bias:
                params["bias"] = Param("bias", _vector(blobs[1], "bias", self._wfile, n, N), "O",
                                       "blobs[1]")
        return "Embed", {"num_output": N, "input_dim": K, "bias": bias}, params, 1

    def _recurrent(self, lp, cell: str):
        rp = lp.recurrent_param
        n = lp.name
        if len(lp.bottom) == 3 or rp.expose_hidden:
            parts = self._custom_parts(lp, "recurrent variant")
            parts[1]["refused"] = (f"{lp.type} with a static input (third bottom) or expose_hidden "
                                   "(initial states as bottoms) is not converted")
            return parts
        H = int(rp.num_output)
        if H < 1:
            raise self.err("recurrent_param.num_output must be at least 1", n)
        names = ("W_xc", "b_c", "W_hc") if cell == "lstm" else ("W_xh", "b_h", "W_hh", "W_ho", "b_o")
        params = {}
        blobs = self._need_blobs(lp, len(names), len(names), ", ".join(names))
        if blobs is not None:
            G = 4 * H if cell == "lstm" else H
            want = {"W_xc": (G, None), "b_c": (G,), "W_hc": (G, H), "W_xh": (G, None), "b_h": (G,),
                    "W_hh": (H, H), "W_ho": (H, H), "b_o": (H,)}
            for i, (nm, arr) in enumerate(zip(names, blobs)):
                w = want[nm]
                if arr.ndim != len(w) or any(a is not None and a != b for a, b in zip(w, arr.shape)):
                    raise MigratorError(f"blob {i} ({nm}) has shape {tuple(arr.shape)}, expected "
                                        f"{tuple('I' if a is None else a for a in w)} for num_output {H}",
                                        file=self._wfile, layer=n)
                params[nm] = Param(nm, arr, "OI" if arr.ndim == 2 else "O", f"blobs[{i}]")
        return "CaffeRecurrent", {"cell": cell, "num_output": H}, params, 1

    def _l_LSTM(self, lp):
        return self._recurrent(lp, "lstm")

    def _l_RNN(self, lp):
        return self._recurrent(lp, "rnn")

    def _l_Im2col(self, lp):
        _, kernel, pad, stride, dilation, _, _ = self._conv_geometry_nocheck(lp)
        return "Im2col", {"kernel": kernel, "pad": pad, "stride": stride, "dilation": dilation}, {}, 1

    def _conv_geometry_nocheck(self, lp):
        """Im2col's convolution_param: kernel/pad/stride/dilation (num_output not needed)."""
        cp = lp.convolution_param
        f, n = self.file, lp.name
        if cp.axis != 1 or cp.force_nd_im2col:
            raise self.err("Im2col with axis != 1 or force_nd_im2col is not supported", n)
        kernel = _hw(cp.kernel_size, "kernel_h", "kernel_w", cp, None, "kernel_size", f, n)
        if kernel[0] is None:
            raise self.err("Im2col has no kernel_size (nor kernel_h/kernel_w)", n)
        pad = _hw(cp.pad, "pad_h", "pad_w", cp, 0, "pad", f, n)
        stride = _hw(cp.stride, "stride_h", "stride_w", cp, 1, "stride", f, n)
        dilation = _hw(cp.dilation, None, None, cp, 1, "dilation", f, n)
        if min(kernel) < 1 or min(stride) < 1 or min(dilation) < 1:
            raise self.err(f"invalid kernel {kernel} / stride {stride} / dilation {dilation}", n)
        return None, kernel, pad, stride, dilation, 1, False

    def _l_SPP(self, lp):
        sp = lp.spp_param
        if not sp.HasField("pyramid_height") or sp.pyramid_height < 1:
            raise self.err("spp_param.pyramid_height must be given and at least 1", lp.name)
        if sp.pool == 2:
            parts = self._custom_parts(lp, "stochastic SPP")
            parts[1]["refused"] = "SPP " + STOCHASTIC_REFUSAL
            return parts
        return "SPP", {"pyramid_height": int(sp.pyramid_height),
                       "mode": "max" if sp.pool == 0 else "avg"}, {}, 1

    # ---------------------------------------------------------------- inputs as layers
    def _check_input_dims(self, shape, name):
        """Input sizes must be positive (Caffe refuses others; a -1 would leave every later
        size unknown and surface as a misleading 'unsupported' further down)."""
        if any(d < 1 for d in shape) or any(d > 1 << 31 for d in shape):
            raise self.err(f"input shape {tuple(shape)} has a dimension that is not a positive "
                           "size (Caffe needs 1 <= dim < 2^31)", name)

    def _input_layer(self, lp):
        shapes = [tuple(int(d) for d in s.dim) for s in lp.input_param.shape]
        tops = list(lp.top)
        if not tops:
            raise self.err("Input layer has no top", lp.name)
        if len(lp.bottom):
            raise self.err("Input layer cannot have bottoms", lp.name)
        if len(shapes) == 1:
            shapes = shapes * len(tops)
        if len(shapes) != len(tops):
            raise self.err(f"Input layer has {len(tops)} tops but {len(shapes)} shapes", lp.name)
        for k, (top, shape) in enumerate(zip(tops, shapes)):
            nm = lp.name if len(tops) == 1 else top
            self._check_input_dims(shape, nm)
            prov = self._prov(lp)
            prov.tops = [top]
            self._add(Node(name=nm, op="Input", attrs={"shape": shape}, provenance=prov), [top])

    def _shaped_data(self, lp):
        tops = list(lp.top)
        if lp.type == "MemoryData":
            mp = lp.memory_data_param
            shapes = [(int(mp.batch_size), int(mp.channels), int(mp.height), int(mp.width))]
        else:
            dp = lp.dummy_data_param
            if len(dp.shape):
                shapes = [tuple(int(d) for d in s.dim) for s in dp.shape]
            else:
                shapes = [(int(a), int(b), int(c), int(d))
                          for a, b, c, d in zip(dp.num, dp.channels, dp.height, dp.width)]
            if len(shapes) == 1:
                shapes = shapes * len(tops)
        if not tops:
            self._drop(lp, "data layer without tops")
            return
        # the first top is the data; a second MemoryData top is the label (training only)
        used = tops[:1] if lp.type == "MemoryData" else tops[:len(shapes)]
        for k, top in enumerate(used):
            nm = lp.name if len(used) == 1 else f"{lp.name}_{top}"
            prov = self._prov(lp)
            prov.tops = [top]
            self._add(Node(name=nm, op="Input", attrs={"shape": shapes[k]}, provenance=prov), [top])
        for top in tops[len(used):]:
            self.dropped_blobs[top] = (lp.name, lp.type)
        self.warnings.append(f"layer '{lp.name}' ({lp.type}) becomes an Input of shape {shapes[0]}")

    # ---------------------------------------------------------------- custom
    def _custom_parts(self, lp, note: str | None = None):
        attrs: dict[str, Any] = {"class_name": lp.type}
        attrs.update(_param_dict(lp))
        if note:
            attrs["note"] = note
        if lp.type in REFUSED_TYPES:
            attrs["refused"] = f"{lp.type}: {REFUSED_TYPES[lp.type]}"
        params = {}
        got = self._blobs(lp)
        if got is not None:
            for i, (arr, _) in enumerate(got):
                params[f"blobs[{i}]"] = Param(f"blobs[{i}]", arr, "", f"blobs[{i}]")
        return "Custom", attrs, params, len(lp.top)

    def _custom(self, lp, note: str | None = None):
        op, attrs, params, nout = self._custom_parts(lp, note)
        node = Node(name=lp.name, op=op, attrs=attrs, params=params, provenance=self._prov(lp),
                    num_outputs=nout)
        if params:
            node.provenance.weights_file = self._wfile
        self._resolve_inputs(node, list(lp.bottom))
        self._add(node, list(lp.top))

    # ---------------------------------------------------------------- out-of-order bottoms
    def _resolve_pending(self):
        if not self.pending:
            return
        for node, i, blob in self.pending:
            prods = [p for p in self.blob_all.get(blob, []) if p.split(":")[0] != node.name]
            if not prods:
                if blob in self.dropped_blobs:
                    lname, ltype = self.dropped_blobs[blob]
                    raise self.err(f"bottom '{blob}' comes from the {ltype} layer '{lname}', which is "
                                   "dropped from the deploy graph (use a deploy prototxt with an Input "
                                   "layer or input/input_shape)", node.name)
                raise self.err(f"undefined bottom '{blob}' (no earlier layer or input produces it)",
                               node.name)
            if len(prods) > 1:
                raise self.err(f"bottom '{blob}' is used before it is produced and several layers "
                               f"write it ({', '.join(prods)}); the order is ambiguous", node.name)
            node.inputs[i] = prods[0]
        self.nodes = topological_sort(self.nodes, self.file)
        self.warnings.append("layers were not in dependency order; they were reordered")


_BLOB_NAMES = {
    "Convolution": {0: "weight", 1: "bias"}, "Deconvolution": {0: "weight", 1: "bias"},
    "InnerProduct": {0: "weight", 1: "bias"},
    "BatchNorm": {0: "mean", 1: "variance", 2: "scale factor"}, "Scale": {0: "scale", 1: "bias"},
    "Bias": {0: "bias"}, "PReLU": {0: "slope"}, "Embed": {0: "weight", 1: "bias"},
}


def load_caffe(prototxt: str, caffemodel: str | None = None, *, progress: Progress = None,
               accept_unknown=None, unknown: str = "error") -> Graph:
    """Import a Caffe network.

    ``prototxt``: the (deploy) text prototxt; ``caffemodel``: the binary weights (may be
    the training net's), or None for the architecture only.  ``progress(fraction, message)``
    is called as the import advances.  Returns a validated :class:`Graph` with inferred
    shapes; raises :class:`MigratorError` for bad input.

    Prototxt fields Migrator does not know (see :mod:`.caffe_fields`) are an error unless
    an ``accept_unknown`` spec covers them (``FIELD``, ``LAYER.FIELD``, ``TYPE.FIELD`` or
    ``LAYER``); ``unknown="collect"`` records them in ``graph.meta['caffe']['unknown_fields']``
    instead of raising (the GUI marks those layers; the planner refuses them).
    """
    return _Builder(prototxt, caffemodel, progress, accept_unknown, unknown).run()


__all__ = ["V1_TYPE_NAMES", "CaffeWeights", "load_caffe", "parse_caffemodel", "parse_prototxt"]
