"""Fields of a Caffe prototxt that Migrator's schema does not know.

Reading past a field Migrator does not know is how a converter ends up wrong *and*
verified (the built-in reference reads the file the same way).  So every unknown field of
a layer that stays in the deploy graph is an **error** by default, except the fields in
:data:`TRAINING_ONLY` (they cannot change inference arithmetic).  A user may accept a
specific one explicitly (``--accept-unknown`` or the mapping file's ``accept_unknown``);
the report then says that layer's semantics are unverified.

protobuf's text parser stops at the first unknown field (or, permissively, skips them all
without saying where), so :func:`scan_unknown_fields` walks the text itself: a small
tokenizer for the protobuf text format and a walk against the message descriptors of
:mod:`migrator.core.importers.caffe_proto`.  The result is keyed by the top-level ``layer``/``layers`` entry
index, so the importer can name the layer.

Binary .caffemodel files: Migrator reads only the *blobs* from them (layer parameters
come from the prototxt), and protobuf keeps unknown fields of a binary message instead of
failing, so an unknown field there never changes what Migrator computes; nothing to check.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from ...errors import MigratorError
from .registry import LAYER_HANDLERS

#: Field names that only matter for training (or for data input, or for the speed of a
#: Caffe build) and are read past silently when a fork adds them.  A field is skipped when
#: any component of its path is in this set (``weight_filler.frob`` is a filler detail).
#: Keep this list the ONLY place that decides it.
TRAINING_ONLY: frozenset[str] = frozenset({
    # learning-rate / regularisation / initialisation
    "param", "lr_mult", "decay_mult", "blobs_lr", "weight_decay",
    "filler", "weight_filler", "bias_filler", "scale_filler", "shift_filler", "slope_filler",
    "data_filler",
    # losses and their weights
    "loss_weight", "loss_param", "propagate_down", "accuracy_param", "multibox_loss_param",
    "smooth_l1_loss_param", "yolo_v2_loss_param", "yolo_v3_loss_param", "l1_loss_param",
    # data layers' inputs and augmentation
    "transform_param", "data_param", "image_data_param", "hdf5_data_param", "window_data_param",
    "annotated_data_param", "dense_image_data_param", "video_data_param",
    # implementation / parallelism choices (same arithmetic)
    "engine", "multinode", "mn_activation_param", "mn_grad_compress_param",
    "share_in_parallel", "force_nd_im2col", "debug_info",
    # net-level training switches
    "force_backward", "state", "profile_info", "profile_iter", "profile_warmup",
})


@dataclass
class UnknownField:
    """One unknown field: ``path`` like ``pooling_param.ceil_mode``; ``value`` as written
    (``{...}`` for a message); ``line`` 1-based."""

    path: str
    value: str
    line: int
    layer: str | None = None        # filled by the importer
    type: str | None = None
    accepted: bool = False
    accepted_by: str | None = None
    #: a known field of the same message spelled almost alike (a likely typo), if any
    near: str | None = None
    #: the whole value as written (``value`` is cut at 40 characters): what a plugin's layer
    #: type reads its own parameter message from (migrator/core/plugins.py)
    raw: str = ""

    @property
    def leaf(self) -> str:
        return self.path.rsplit(".", 1)[-1]

    def training_only(self) -> bool:
        return any(part in TRAINING_ONLY for part in self.path.split("."))

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "type": self.type, "field": self.path, "value": self.value,
                "line": self.line, "accepted": self.accepted, "accepted_by": self.accepted_by}


@dataclass
class ScanResult:
    #: (top-level field name 'layer' | 'layers', index) -> unknown fields inside that entry
    layers: dict[tuple[str, int], list[UnknownField]] = field(default_factory=dict)
    #: unknown fields at the net level (outside any layer)
    net: list[UnknownField] = field(default_factory=list)


# ------------------------------------------------------------------------------------
# A tokenizer for the protobuf text format
# ------------------------------------------------------------------------------------
_TOKEN = re.compile(r"""
    (?P<ws>\s+) | (?P<comment>\#[^\n]*) |
    (?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*') |
    (?P<word>[A-Za-z0-9_.+\-]+) |
    (?P<punct>[{}<>\[\]:,;/])
""", re.VERBOSE)


def _tokens(text: str) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    pos, line = 0, 1
    n = len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"unexpected character {text[pos]!r} at line {line}")
        kind = m.lastgroup
        tok = m.group()
        if kind not in ("ws", "comment"):
            out.append((tok, line))
        line += tok.count("\n")
        pos = m.end()
    return out


class _Walker:
    def __init__(self, toks: list[tuple[str, int]]):
        self.toks = toks
        self.i = 0

    def peek(self) -> str | None:
        return self.toks[self.i][0] if self.i < len(self.toks) else None

    def line(self) -> int:
        return self.toks[min(self.i, len(self.toks) - 1)][1] if self.toks else 0

    def take(self) -> str:
        if self.i >= len(self.toks):
            raise ValueError("unexpected end of file")
        tok = self.toks[self.i][0]
        self.i += 1
        return tok

    def body(self, desc, path: str, end: str | None, out: list[UnknownField],
             top: ScanResult | None = None, counts: dict[str, int] | None = None) -> None:
        """Fields until ``end`` (or EOF when None), checked against ``desc`` (None: an
        unknown message, nothing inside is reported again)."""
        while True:
            tok = self.peek()
            if tok is None:
                if end is not None:
                    raise ValueError("unexpected end of file")
                return
            if tok == end:
                self.take()
                return
            if tok in (",", ";"):
                self.take()
                continue
            line = self.line()
            name = self.take()
            if name == "[":   # extension / Any name: [pkg.name]
                while self.take() != "]":
                    pass
                name = "[extension]"
            fd = None if desc is None else desc.fields_by_name.get(name)
            sub = fd.message_type if fd is not None and fd.message_type is not None else None
            full = f"{path}.{name}" if path else name
            start = self.i
            if desc is not None and fd is None:
                inner: list[UnknownField] = []
                self.value(None, "", inner)
                raw = " ".join(t for t, _ in self.toks[start:self.i]).lstrip(": ").strip()
                text = raw[:37] + "..." if len(raw) > 40 else raw
                near = difflib.get_close_matches(name, list(desc.fields_by_name), n=1, cutoff=0.8)
                out.append(UnknownField(full, text, line, near=near[0] if near else None, raw=raw))
                continue
            if top is not None and name in ("layer", "layers") and sub is not None:
                k = counts.get(name, 0)
                counts[name] = k + 1
                bucket: list[UnknownField] = []
                self.value(sub, "", bucket, repeated_msgs=True, top_key=(name, k), top=top,
                           counts=counts)
                continue
            self.value(sub, full, out)

    def value(self, sub, path: str, out: list[UnknownField], repeated_msgs: bool = False,
              top_key=None, top: ScanResult | None = None, counts=None) -> None:
        """The value after a field name: ``: scalar``, ``[: ] { ... }`` / ``< ... >``, or a
        ``[ ... ]`` list of either."""
        if self.peek() == ":":
            self.take()
        tok = self.peek()
        if tok == "[":
            self.take()
            while self.peek() != "]":
                if self.peek() == ",":
                    self.take()
                    continue
                self._one(sub, path, out, top_key, top, counts)
            self.take()
            return
        self._one(sub, path, out, top_key, top, counts)

    def _one(self, sub, path, out, top_key, top, counts) -> None:
        tok = self.take()
        if tok in ("{", "<"):
            end = "}" if tok == "{" else ">"
            if top_key is not None:
                bucket: list[UnknownField] = []
                self.body(sub, "", end, bucket)
                # the next entry of a repeated top-level field in a list gets the next index
                name, k = top_key
                top.layers.setdefault((name, k), []).extend(bucket)
                return
            self.body(sub, path, end, out)
            return
        if tok.startswith(("'", '"')):
            while self.peek() is not None and self.peek()[:1] in ("'", '"'):
                self.take()         # adjacent string literals concatenate
            return
        # number / identifier / enum: a single token (a leading '-' is part of the word)


def scan_unknown_fields(text: str, net_descriptor) -> ScanResult:
    """Every field of ``text`` (a NetParameter prototxt) that ``net_descriptor`` does not
    know, by top-level layer entry.  Raises ValueError on text it cannot tokenise (the
    protobuf parser has already accepted it by then, so this should not happen)."""
    res = ScanResult()
    w = _Walker(_tokens(text))
    w.body(net_descriptor, "", None, res.net, top=res, counts={})
    return res


# ------------------------------------------------------------------------------------
# Accepting unknown fields
# ------------------------------------------------------------------------------------
def accept_matches(spec: str, item: UnknownField) -> bool:
    """Whether an ``--accept-unknown`` spec covers ``item``.  A spec is ``FIELD`` (the
    field's name or dotted path, any layer: ``ceil_mode``, ``pooling_param.ceil_mode``),
    ``LAYER.FIELD`` / ``TYPE.FIELD`` (one layer / every layer of a type), or ``LAYER``
    (every unknown field of that layer)."""
    spec = spec.strip()
    if not spec:
        return False
    fields = {item.path, item.leaf}
    if spec in fields:
        return True
    owners = [o for o in (item.layer, item.type) if o]
    for o in owners:
        if spec == o and o == item.layer:
            return True
        if spec.startswith(o + ".") and spec[len(o) + 1:] in fields:
            return True
    return False


def apply_accepts(items: list[UnknownField], specs) -> list[UnknownField]:
    """Mark the items covered by ``specs``; return those that are still errors
    (training-only fields are never errors)."""
    left = []
    for it in items:
        if it.training_only():
            continue
        for s in specs or ():
            if accept_matches(s, it):
                it.accepted, it.accepted_by = True, s
                break
        if not it.accepted:
            left.append(it)
    return left


def unknown_error(items: list[UnknownField], file: str, then: str | None = None) -> MigratorError:
    """The one-line error for the first non-accepted unknown field (others counted);
    ``then`` is what reading the layer past that field went on to fail with, if anything."""
    first = items[0]
    more = ""
    if len(items) > 1:
        rest = [f"{i.layer}.{i.path}" if i.layer else i.path for i in items[1:4]]
        more = f" (and {len(items) - 1} more: {', '.join(rest)}{', ...' if len(items) > 4 else ''})"
    where = f"{first.type} layer" if first.type else "net"
    typo = f" (did you mean '{first.near}'?)" if first.near else ""
    return MigratorError(
        f"unknown field '{first.path}' (line {first.line}, value {first.value}) in a {where}{typo}: "
        "Migrator does not know what it computes; accept it explicitly with --accept-unknown "
        f"{(first.layer + '.') if first.layer else ''}{first.path} (the layer is then reported as "
        f"unverified){more}{f'; reading past it, the layer fails: {then}' if then else ''}",
        file=file, layer=first.layer)


def unverified_layers(graph) -> dict[str, list[dict[str, Any]]]:
    """layer name -> the records of its unknown fields (accepted or not) from
    ``graph.meta['caffe']['unknown_fields']`` (training-only fields are not recorded)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for rec in ((graph.meta.get("caffe") or {}).get("unknown_fields") or []):
        out.setdefault(rec.get("layer") or "(net)", []).append(rec)
    return out


# ------------------------------------------------------------------------------------
# unknown fields (called by the importer)
# ------------------------------------------------------------------------------------
def collect_layer_unknowns(b, lp) -> list[UnknownField]:
    """Record the unknown fields of the layer entry being imported (it stays in the deploy
    graph: dropped data/loss layers never get here) and return those that are errors
    (neither training-only nor accepted).

    In mode 'error' these are raised here, before the layer's handler runs: an unknown
    field is the root cause of whatever the handler would report next (a misspelt
    ``convoluton_param`` block leaves ``convolution_param.num_output`` missing), so the
    user is told about the field, with its line, first."""
    items = b.unknown_scan.layers.get(b.cur_entry, [])
    entry = LAYER_HANDLERS.get(lp.type)
    claims = entry.claims if entry is not None else ()
    if claims:   # the parameter message a plugin's layer type reads itself: not unknown to it
        b.claimed_fields = [it for it in items if it.path.split(".")[0] in claims]
        items = [it for it in items if it.path.split(".")[0] not in claims]
    for it in items:
        it.layer, it.type = lp.name, lp.type
        b.unknown_items.append(it)
    left = apply_accepts(items, b.accept_unknown)
    if left and b.unknown_mode != "collect":
        raise unknown_error(left, b.file)
    return left


def check_net_unknowns(b) -> None:
    """Raise for an unknown net-level field (outside any layer) before the layers are read:
    no layer can be marked for it, so even mode 'collect' cannot carry on."""
    if b.unknown_scan is None:
        return
    left = apply_accepts(list(b.unknown_scan.net), b.accept_unknown)
    if left:
        raise unknown_error(left, b.file)


def check_unknown_fields(b) -> list[dict[str, Any]]:
    """Apply the accept specs; raise for the first field that is neither training-only nor
    accepted (mode 'error'); return the records for ``graph.meta['caffe']``."""
    if b.unknown_scan is None:
        return []
    items = list(b.unknown_scan.net) + list(b.unknown_items)
    left = apply_accepts(items, b.accept_unknown)
    if left and b.unknown_mode != "collect":
        raise unknown_error(left, b.file)
    net_level = [it for it in left if it.layer is None]
    if net_level:   # no layer to mark: even 'collect' cannot carry on
        raise unknown_error(net_level, b.file)
    records = [it.to_dict() for it in items if not it.training_only()]
    skipped = [it for it in items if it.training_only()]
    if skipped:
        b.warnings.append(f"{len(skipped)} training-only field(s) unknown to Migrator were read "
                          f"past: {', '.join(sorted({it.path for it in skipped})[:6])}")
    for it in items:
        if it.accepted:
            b.warnings.append(f"layer '{it.layer}': unknown field '{it.path}' accepted by the "
                              f"user ({it.accepted_by}); its semantics are unverified")
    return records


__all__ = [
    "TRAINING_ONLY",
    "ScanResult",
    "UnknownField",
    "accept_matches",
    "apply_accepts",
    "check_net_unknowns",
    "check_unknown_fields",
    "collect_layer_unknowns",
    "scan_unknown_fields",
    "unknown_error",
    "unverified_layers",
]
