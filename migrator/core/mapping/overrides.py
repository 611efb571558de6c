"""User overrides of rule options: the *mapping file*.

The file is JSON (schema documented in ``docs/mapping-file.md``)::

    {
      "version": 1,
      "kinds":  {"BatchNorm": {"fuse_scale": false}, "BatchNormLayer": {"epsilon": 1e-5}},
      "layers": {"conv1_bn": {"epsilon": 1e-3, "variance": "raw"}}
    }

``kinds`` keys are canonical ops (``BatchNorm``, ``Scale``, ``Conv``, ...) or source
layer types (Caffe ``BatchNorm``/``Convolution``, Lasagne ``BatchNormLayer``, ...);
``layers`` keys are source layer names.  For a node the resolved values are: the kind
entry for its op, then the kind entry for its source type, then its layer entry (later
wins).  Keys and value types are checked against the options of the rule for the op
(:data:`migrator.core.mapping.registry.RULES`).  Errors are one-line
:class:`~migrator.core.errors.MigratorError` naming the file, the layer or kind and the key.
"""
from __future__ import annotations

import copy
import json
import math
import os
import tempfile
from typing import Any

from ..errors import MigratorError
from ..importers.caffe import source_type_ops as caffe_source_type_ops
from ..importers.lasagne import source_type_ops as lasagne_source_type_ops

VERSION = 1
TOP_KEYS = ("version", "layers", "kinds", "accept_unknown", "input_shapes")

#: Well-known source layer types and the canonical op they import as (kinds may name these
#: even when the current model has no such layer, so one mapping file serves many models).
#: Derived from the importers' registries: every Caffe layer type and Lasagne class (and its
#: aliases) -> the op its handler / converter declares first (the one it usually produces).
SOURCE_TYPE_OPS: dict[str, str] = {**caffe_source_type_ops(), **lasagne_source_type_ops()}


def _rules() -> dict:
    from .planner import load_rules
    from .registry import RULES
    load_rules()
    return RULES


def _is_json_scalar(v: Any) -> bool:
    if isinstance(v, float):
        return math.isfinite(v)
    return v is None or isinstance(v, (bool, int, str))


class Overrides:
    """Per-kind and per-layer option values (plain JSON scalars)."""

    def __init__(self, layers: dict[str, dict[str, Any]] | None = None,
                 kinds: dict[str, dict[str, Any]] | None = None, path: str | None = None,
                 accept_unknown: list[str] | None = None,
                 input_shapes: dict[str, list] | None = None):
        self.layers: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (layers or {}).items()}
        self.kinds: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (kinds or {}).items()}
        self.path = str(path) if path is not None else None
        #: unknown source fields the user accepts ('FIELD', 'LAYER.FIELD', 'TYPE.FIELD', 'LAYER')
        self.accept_unknown: list[str] = list(accept_unknown or [])
        #: input name ('' = the only input) -> source-layout shape (NCHW, batch included)
        self.input_shapes: dict[str, list] = {k: list(v) for k, v in (input_shapes or {}).items()}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, data: Any, file: str | None = None) -> Overrides:
        """Build from the parsed JSON document, checking its structure and every
        key/value that can be checked without a model (kinds fully, layer keys against
        the options of all rules)."""
        if not isinstance(data, dict):
            raise MigratorError("mapping file must hold a JSON object with 'version', "
                                "'layers' and 'kinds'", file=file)
        extra = [k for k in data if k not in TOP_KEYS]
        if extra:
            raise MigratorError(f"unknown top-level key(s) {', '.join(map(repr, extra))} in mapping "
                                f"file (allowed: {', '.join(TOP_KEYS)})", file=file, key=extra[0])
        if "version" not in data:
            raise MigratorError("mapping file has no 'version' field (expected 1)", file=file,
                                key="version")
        ver = data["version"]
        if isinstance(ver, bool) or ver != VERSION:
            raise MigratorError(f"unsupported mapping file version {ver!r} (this Migrator reads "
                                f"version {VERSION})", file=file, key="version")
        sections = {}
        for sec in ("layers", "kinds"):
            raw = data.get(sec, {})
            if raw is None:
                raw = {}
            if not isinstance(raw, dict):
                raise MigratorError(f"'{sec}' must be an object mapping names to option objects",
                                    file=file, key=sec)
            out: dict[str, dict[str, Any]] = {}
            for name, opts in raw.items():
                where = f"{sec}.{name}"
                if not isinstance(opts, dict):
                    raise MigratorError(f"'{where}' must be an object of option values, got "
                                        f"{type(opts).__name__}", file=file, key=where)
                clean = {}
                for k, v in opts.items():
                    if not _is_json_scalar(v):
                        raise MigratorError(f"'{where}.{k}' must be a number, string, true/false "
                                            f"or null, got {v!r}", file=file, key=k)
                    if v is not None:          # null = use the rule's default
                        clean[k] = v
                out[str(name)] = clean
            sections[sec] = out
        acc = data.get("accept_unknown", []) or []
        if not isinstance(acc, list) or not all(isinstance(a, str) and a.strip() for a in acc):
            raise MigratorError("'accept_unknown' must be a list of non-empty strings (FIELD, "
                                "LAYER.FIELD, TYPE.FIELD or LAYER)", file=file, key="accept_unknown")
        shapes = data.get("input_shapes", {}) or {}
        if not isinstance(shapes, dict):
            raise MigratorError("'input_shapes' must map input names to shapes such as "
                                "[1, 3, 224, 224]", file=file, key="input_shapes")
        for name, shp in shapes.items():
            if not isinstance(shp, list) or not shp or not all(
                    isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shp):
                raise MigratorError(f"'input_shapes.{name}' must be a list of positive integers "
                                    f"(NCHW, batch included), got {shp!r}", file=file,
                                    key=f"input_shapes.{name}")
        ov = cls(layers=sections["layers"], kinds=sections["kinds"], path=file,
                 accept_unknown=[a.strip() for a in acc], input_shapes=shapes)
        ov.validate()
        return ov

    @classmethod
    def load(cls, path) -> Overrides:
        """Read and validate a mapping file."""
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise MigratorError(f"cannot read mapping file: {e.strerror or e}", file=path) from None
        except UnicodeDecodeError:
            raise MigratorError("mapping file is not UTF-8 text", file=path) from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise MigratorError(f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}",
                                file=path) from None
        return cls.from_dict(data, file=path)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": VERSION,
                               "layers": {k: dict(v) for k, v in sorted(self.layers.items()) if v},
                               "kinds": {k: dict(v) for k, v in sorted(self.kinds.items()) if v}}
        if self.accept_unknown:
            out["accept_unknown"] = list(self.accept_unknown)
        if self.input_shapes:
            out["input_shapes"] = {k: list(v) for k, v in self.input_shapes.items()}
        return out

    def save(self, path=None) -> str:
        """Write the mapping file atomically (temporary file in the same folder, then
        ``os.replace``).  Returns the path written."""
        path = os.fspath(path) if path is not None else self.path
        if not path:
            raise MigratorError("no file name given for the mapping file")
        text = json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".mapping-", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise MigratorError(f"cannot write mapping file: {e.strerror or e}", file=path) from None
        self.path = path
        return path

    def copy(self) -> Overrides:
        return Overrides(copy.deepcopy(self.layers), copy.deepcopy(self.kinds), self.path,
                         list(self.accept_unknown), copy.deepcopy(self.input_shapes))

    def __eq__(self, other) -> bool:
        return isinstance(other, Overrides) and self.to_dict() == other.to_dict()

    def __bool__(self) -> bool:
        return (any(self.layers.values()) or any(self.kinds.values()) or bool(self.accept_unknown)
                or bool(self.input_shapes))

    def __repr__(self) -> str:
        return f"Overrides(layers={self.layers!r}, kinds={self.kinds!r})"

    # ------------------------------------------------------------------ queries / edits
    def for_node(self, name: str, op: str, source_type: str | None = None) -> dict[str, Any]:
        """Resolved override values for one node: kind[op], then kind[source_type], then
        layers[name] (later wins)."""
        out: dict[str, Any] = {}
        out.update(self.kinds.get(op, {}))
        if source_type and source_type != op:
            out.update(self.kinds.get(source_type, {}))
        out.update(self.layers.get(name, {}))
        return out

    def get(self, key: str, *, layer: str | None = None, kind: str | None = None, default=None):
        table, name = self._target(layer, kind)
        return table.get(name, {}).get(key, default)

    def set(self, key: str, value: Any, *, layer: str | None = None,
            kind: str | None = None, op: str | None = None) -> None:
        """Set one value for a layer or a kind (exactly one of them).  The value is
        checked against the rule options (of ``op`` when given for a layer, of the kind's
        op for a kind; else the key must exist in some rule).  ``value=None`` unsets."""
        table, name = self._target(layer, kind)
        if value is None:
            self.unset(key, layer=layer, kind=kind)
            return
        if kind is not None and op is None:
            op = self.kind_op(kind)
        value = self._check(key, value, op, where=("kind" if kind is not None else "layer"),
                            name=name)
        table.setdefault(name, {})[key] = value

    def unset(self, key: str | None = None, *, layer: str | None = None,
              kind: str | None = None) -> None:
        """Remove one value (or, with ``key=None``, every value) of a layer or kind."""
        table, name = self._target(layer, kind)
        if name not in table:
            return
        if key is None:
            del table[name]
        else:
            table[name].pop(key, None)
            if not table[name]:
                del table[name]

    def _target(self, layer, kind):
        if (layer is None) == (kind is None):
            raise ValueError("give exactly one of layer= or kind=")
        return (self.layers, layer) if layer is not None else (self.kinds, kind)

    # ------------------------------------------------------------------ validation
    @staticmethod
    def kind_op(kind: str, graph=None) -> str | None:
        """The canonical op a kinds key refers to (None when unknown)."""
        rules = _rules()
        from ..ir import OPS
        if kind in OPS:
            return kind
        if kind in SOURCE_TYPE_OPS:
            return SOURCE_TYPE_OPS[kind]
        if graph is not None:
            for n in graph.nodes:
                if n.source_type == kind:
                    return n.op
        return kind if kind in rules else None

    def _check(self, key: str, value: Any, op: str | None, *, where: str, name: str) -> Any:
        """Validate one value; errors name the file, the layer (or kind) and the key."""
        rules = _rules()
        layer = name if where == "layer" else None
        pre = "" if layer else f"kind '{name}': "     # a layer is named by MigratorError itself
        if op is not None:
            rule = rules.get(op)
            opts = rule.options if rule is not None else {}
            if key not in opts:
                known = ", ".join(sorted(opts)) or "none"
                raise MigratorError(f"{pre}unknown option '{key}' for a {op} layer (known: {known})",
                                    file=self.path, key=key, layer=layer)
            try:
                return opts[key].validate(key, value)
            except MigratorError as e:
                raise MigratorError(f"{pre}{e.message}", file=self.path, key=key,
                                    layer=layer) from None
        # op unknown (a layer checked without a model): the key must exist in some rule
        cands = [r.options[key] for r in rules.values() if key in r.options]
        if not cands:
            known = sorted({k for r in rules.values() for k in r.options})
            raise MigratorError(f"{pre}unknown option '{key}' (known options: "
                                f"{', '.join(known) or 'none'})", file=self.path, key=key,
                                layer=layer)
        errors = []
        for opt in cands:
            try:
                return opt.validate(key, value)
            except MigratorError as e:
                errors.append(e.message)
        raise MigratorError(f"{pre}{errors[0]}", file=self.path, key=key, layer=layer)

    def validate(self, graph=None) -> None:
        """Check every key and value; with a graph also the layer names and the options
        of each layer's own rule.  Raises MigratorError naming the file and key."""
        for kind, opts in self.kinds.items():
            op = self.kind_op(kind, graph)
            if op is None:
                raise MigratorError(f"unknown layer kind '{kind}' in 'kinds' (use a canonical op "
                                    "such as BatchNorm, Conv, Dense or a source layer type)",
                                    file=self.path, key=kind)
            for k, v in list(opts.items()):
                opts[k] = self._check(k, v, op, where="kind", name=kind)
        for name, opts in self.layers.items():
            op = None
            if graph is not None:
                if name not in graph:
                    raise MigratorError(f"mapping file names layer '{name}' which is not in the "
                                        "model", file=self.path, key=name)
                op = graph.node(name).op
            for k, v in list(opts.items()):
                opts[k] = self._check(k, v, op, where="layer", name=name)

    def check_against(self, graph) -> None:
        """Validate against a model: every layer name exists, every key/value fits the
        rule of that layer's op.  Raises MigratorError naming the key and the file."""
        self.validate(graph)
