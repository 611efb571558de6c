"""The Caffe importer: ``.prototxt`` (text) + ``.caffemodel`` (binary) -> IR :class:`Graph`.

What is handled

* new (V2 ``layer { type: "Convolution" }``) and old (V1 ``layers { type: CONVOLUTION }``)
  formats; V1 layers are upgraded to V2 type names first (:mod:`.reader`);
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
* every layer type with an entry in :data:`.registry.LAYER_HANDLERS` is converted by its
  handler; every other type becomes a ``Custom`` node (attrs ``class_name`` = type, blobs
  kept as ``blobs[i]``) so the planner reports it; nothing is dropped silently.

Errors are :class:`MigratorError` (one line naming the file and the layer).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ...errors import MigratorError
from ...ir import Graph, Node, Param, Provenance, topological_sort
from ...limits import check_tensor_sizes
from .fields import check_net_unknowns, check_unknown_fields, collect_layer_unknowns, unknown_error
from .reader import (
    CaffeWeights,
    blob_to_array,
    layer_included,
    param_dict,
    parse_caffemodel,
    parse_prototxt,
    upgrade_v1,
)
from .registry import DATA_TYPES, LAYER_HANDLERS, REFUSED_TYPES, SHAPED_DATA_TYPES, SINK_TYPES, is_loss

Progress = Callable[[float, str], None] | None


# The importer
# ------------------------------------------------------------------------------------
class CaffeBuilder:
    """One import: reads the files, runs each layer's handler and assembles the Graph.

    Handlers (``fn(builder, lp)``) use :meth:`err`, :meth:`blobs`, :meth:`need_blobs`,
    :meth:`custom_parts`, :attr:`blob_file` (the file the last blobs came from), :attr:`file`
    and :attr:`warnings`."""

    def __init__(self, prototxt: str, caffemodel: str | None, progress: Progress,
                 accept_unknown=None, unknown: str = "error"):
        self.accept_unknown = list(accept_unknown or [])
        self.unknown_mode = unknown
        self.unknown_scan = None        # fields.ScanResult when the text had unknown fields
        self.unknown_items: list = []   # UnknownField of the layers kept in the deploy graph
        self.claimed_fields: list = []  # the layer's fields its handler reads itself (a plugin's)
        self.cur_entry: tuple[str, int] | None = None
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
        self.blob_file: str | None = None

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
        check_net_unknowns(self)
        if len(net.layer) and len(net.layers):
            raise self.err("the prototxt mixes the new 'layer' and the old 'layers' (V1) formats")
        fmt = "V1" if len(net.layers) else "V2"
        layers = upgrade_v1(net.layers, self.file) if fmt == "V1" else list(net.layer)
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
        kept_names = {lp.name for lp in layers if layer_included(lp, phase, level, stages)}

        input_style = self._net_inputs(net, kept_names)
        n = len(layers)
        for i, lp in enumerate(layers):
            if not lp.name:
                lp.name = f"{lp.type or 'layer'}_{i}"
                self.warnings.append(f"layer #{i} has no name; called it '{lp.name}'")
            if not layer_included(lp, phase, level, stages):
                self._drop(lp, "excluded from the TEST phase by its include/exclude rules")
                continue
            if lp.type == "Input" and input_style is None:
                input_style = "Input layer"
            self.cur_entry = ("layers" if fmt == "V1" else "layer", i)
            self._layer(lp)
            if i % 32 == 0:
                self._p(0.5 + 0.35 * i / max(n, 1), f"layer {lp.name}")
        self._resolve_pending()
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
        check_tensor_sizes(graph, self.file)   # a forged size: refuse before allocating
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
    def blobs(self, lp) -> list[tuple[np.ndarray, bool]] | None:
        """The layer's blobs ((array, legacy) pairs) from the caffemodel or the prototxt, or None;
        sets :attr:`blob_file`.  NaN/Inf values are an error."""
        got = None
        wfile = None
        if self.weights is not None:
            got = self.weights.get(lp.name)
            wfile = self.wfile
        if got is None and len(lp.blobs):
            got = [blob_to_array(b, False, self.file, lp.name, i) for i, b in enumerate(lp.blobs)]
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
        self.blob_file = wfile
        return got

    def need_blobs(self, lp, n_min: int, n_max: int, what: str) -> list[np.ndarray] | None:
        """Between ``n_min`` and ``n_max`` blobs of the layer (arrays), None for an
        architecture-only import; MigratorError when missing or of another count."""
        got = self.blobs(lp)
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
                                f"have {len(got)}", file=self.blob_file, layer=lp.name)
        return [a for a, _ in got]

    # ---------------------------------------------------------------- layers
    def _layer(self, lp):
        t = lp.type
        if t in DATA_TYPES:
            self._drop(lp, "training data layer (no deploy equivalent)")
            return
        if is_loss(t) or t in SINK_TYPES:
            self._drop(lp, "loss/accuracy/sink layer (training only)")
            return
        left = []
        self.claimed_fields = []
        if self.unknown_scan is not None and self.cur_entry is not None:
            left = collect_layer_unknowns(self, lp)     # raises first in mode 'error'
        if not left:
            self._kept_layer(lp)
            return
        try:        # mode 'collect': the unknown field stays the diagnosis if the layer fails
            self._kept_layer(lp)
        except MigratorError as e:
            raise unknown_error(left, self.file, then=e.message) from None

    def _kept_layer(self, lp):
        """A layer that stays in the deploy graph: its node (or its input / shaped data)."""
        t = lp.type
        name = lp.name
        tops = list(lp.top)
        bottoms = list(lp.bottom)
        if t in SHAPED_DATA_TYPES:
            self._shaped_data(lp)
            return
        if t == "Input":
            self._input_layer(lp)
            return
        entry = LAYER_HANDLERS.get(t)
        if entry is None:
            self._custom(lp)
            return
        if not entry.multi_top and len(tops) != 1:
            raise self.err(f"{t} layer must have exactly one top, has {len(tops)}", name)
        lo, hi = entry.bottoms
        if not lo <= len(bottoms) <= hi:
            raise self.err(f"{t} layer has {len(bottoms)} bottoms (expected "
                           f"{lo if lo == hi else f'at least {lo}'})", name)
        op, attrs, params, num_out = entry.fn(self, lp)
        node = Node(name=name, op=op, attrs=attrs, params=params, provenance=self._prov(lp),
                    num_outputs=num_out)
        if params:
            node.provenance.weights_file = self.blob_file
        self._resolve_inputs(node, bottoms)
        self._add(node, tops)

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
    def custom_parts(self, lp, note: str | None = None):
        """(op, attrs, params, num_outputs) of a Custom node for the layer (a refused type names
        its reason in ``attrs['refused']``); blobs kept as ``blobs[i]``."""
        attrs: dict[str, Any] = {"class_name": lp.type}
        attrs.update(param_dict(lp))
        if note:
            attrs["note"] = note
        if lp.type in REFUSED_TYPES:
            attrs["refused"] = f"{lp.type}: {REFUSED_TYPES[lp.type]}"
        params = {}
        got = self.blobs(lp)
        if got is not None:
            for i, (arr, _) in enumerate(got):
                params[f"blobs[{i}]"] = Param(f"blobs[{i}]", arr, "", f"blobs[{i}]")
        return "Custom", attrs, params, len(lp.top)

    def _custom(self, lp, note: str | None = None):
        op, attrs, params, nout = self.custom_parts(lp, note)
        node = Node(name=lp.name, op=op, attrs=attrs, params=params, provenance=self._prov(lp),
                    num_outputs=nout)
        if params:
            node.provenance.weights_file = self.blob_file
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

    Prototxt fields Migrator does not know (see :mod:`.fields`) are an error unless
    an ``accept_unknown`` spec covers them (``FIELD``, ``LAYER.FIELD``, ``TYPE.FIELD`` or
    ``LAYER``); ``unknown="collect"`` records them in ``graph.meta['caffe']['unknown_fields']``
    instead of raising (the GUI marks those layers; the planner refuses them).
    """
    return CaffeBuilder(prototxt, caffemodel, progress, accept_unknown, unknown).run()


__all__ = ["CaffeBuilder", "Progress", "load_caffe"]
