"""The document the user edits: one opened model and everything derived from it.

A :class:`Document` holds the source files, the IR graph, the mapping plan, the user's
overrides, the Keras model built from the plan and the last comparison result.  It is
plain Python (no Qt): the GUI observes it through callbacks registered with
:meth:`Document.subscribe`, and changes it only through its methods and through the
undoable commands in :mod:`migrator.core.commands` (the CLI can replay the same edits).

Events (``callback(doc, **info)``):

* ``'opened'``       -- a new model replaced the previous one
* ``'plan'``         -- the plan was rebuilt (after an override edit, undo, redo, load)
* ``'overrides'``    -- the overrides changed (before the re-plan finishes)
* ``'result'``       -- a comparison result was set (or cleared)
* ``'stale'``        -- the staleness of the last result changed
* ``'model'``        -- the Keras model was set or dropped
* ``'error'``        -- a re-plan failed (``message=``); the previous plan stays

Re-planning goes through :attr:`Document.executor` -- ``executor(work, done, failed)``.
The default runs ``work()`` at once (CLI, tests); the GUI installs one that runs the work
in a thread and calls ``done`` back on its own thread, so the GUI thread never plans.
"""
from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .compare.metrics import inputs_to_keras, to_source_layout
from .errors import Cancelled, MigratorError, unsupported_layers_error
from .export import format_of
from .flow import Flow, FlowOptions, plan_model, scaled
from .mapping import rules  # noqa: F401  (importing the rules registers them in RULES)
from .mapping.overrides import Overrides
from .mapping.registry import RULES
from .reference import numpy_ref

log = logging.getLogger(__name__)

#: the value of an override that is not set (``put_override`` without a value removes one)
MISSING = object()

BATCHNORM_OPS = ("BatchNorm",)


def _sync_executor(work: Callable[[], Any], done: Callable[[Any], None],
                   failed: Callable[[BaseException], None]) -> None:
    try:
        res = work()
    except MigratorError as e:
        failed(e)
        return
    done(res)


# --------------------------------------------------------------------------------------
# Overrides access (kept in one place so the document works on the mapping file's data)
# --------------------------------------------------------------------------------------
def overrides_dict(ov) -> dict[str, Any]:
    """The overrides as the mapping file's JSON dict ``{"version", "layers", "kinds"}``."""
    if ov is None:
        return {"version": 1, "layers": {}, "kinds": {}}
    d = ov.to_dict()
    d.setdefault("layers", {})
    d.setdefault("kinds", {})
    return d


def overrides_fingerprint(ov) -> str:
    d = overrides_dict(ov)
    return json.dumps({"layers": d["layers"], "kinds": d["kinds"]}, sort_keys=True, default=str)


def get_override(ov, scope: str, target: str, key: str, default=MISSING):
    """The value stored for ``key`` on layer/kind ``target`` (``default`` when absent)."""
    d = overrides_dict(ov)
    section = d["layers" if scope == "layer" else "kinds"]
    return section.get(target, {}).get(key, default)


def put_override(ov, scope: str, target: str, key: str, value=MISSING) -> None:
    """Set (or, with ``value`` missing, remove) one override in place."""
    if scope not in ("layer", "kind"):
        raise ValueError(f"scope must be 'layer' or 'kind', got {scope!r}")
    kw = {"layer": target} if scope == "layer" else {"kind": target}
    if value is MISSING:
        ov.unset(key, **kw)
    else:
        ov.set(key, value, **kw)


# --------------------------------------------------------------------------------------
@dataclass
class ChannelValues:
    """Reference and Keras values of one channel of one layer (source layout)."""

    source: str
    channel: int
    reference: np.ndarray     # (H, W) for feature maps, (N,) for dense outputs
    keras: np.ndarray


class Document:
    def __init__(self):
        self.paths: list[str] = []
        self.graph = None
        self.plan = None
        self.overrides = None
        self.mapping_path: str | None = None    # the mapping file last loaded/saved
        self.model = None                        # keras.Model built from ``model_fp``'s plan
        self.model_fp: str | None = None
        self.build_error: str | None = None
        self.result = None                       # ComparisonResult
        self.result_fp: str | None = None        # overrides fingerprint the result was made with
        self.input_x: np.ndarray | None = None   # the input of the last comparison (NCHW)
        self.input_desc: dict | None = None
        self.saved_fp: str | None = None         # fingerprint when overrides were last saved
        self.executor = _sync_executor
        self._observers: dict[str, list[Callable]] = {}
        self._plan_gen = 0          # incremented by every re-plan request
        self._planned_gen = 0       # the request the current plan answers
        self._last_stale = False
        self._k2s: dict[str, list[str]] | None = None
        self._s2k: dict[str, list[str]] | None = None
        self._fp: str | None = None                # cached fingerprint of self.overrides
        self._map_index = None
        self._res_index: dict[str, Any] = {}
        self._first_divergent = None

    # ---- observers --------------------------------------------------------------
    def subscribe(self, event: str, callback: Callable) -> None:
        self._observers.setdefault(event, []).append(callback)

    def emit(self, event: str, **info) -> None:
        for cb in list(self._observers.get(event, [])):
            cb(self, **info)

    # ---- state ---------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self.graph is not None

    @property
    def fingerprint(self) -> str:
        """Fingerprint of the current overrides (cached; edits go through
        :meth:`overrides_changed`, which drops the cache)."""
        if self._fp is None:
            self._fp = overrides_fingerprint(self.overrides)
        return self._fp

    @property
    def stale(self) -> bool:
        """True when the last comparison was made with other overrides than the current ones."""
        return self.result is not None and self.result_fp != self.fingerprint

    @property
    def overrides_modified(self) -> bool:
        return self.is_open and self.fingerprint != self.saved_fp

    @property
    def model_current(self) -> bool:
        return self.model is not None and self.model_fp == self.fingerprint

    @property
    def can_export_cleanly(self) -> bool:
        return (self.result is not None and not self.stale and bool(self.result.passed)
                and self.model_current)

    def export_problem(self) -> str | None:
        """Why exporting now needs an explicit confirmation (None when it does not)."""
        if self.plan is None:
            return "no model is open"
        if self.result is None:
            return "the converted model has not been compared with the source yet"
        if self.stale:
            return "the mapping changed since the last comparison (the result is stale)"
        if getattr(self.result, "cancelled", False):
            return "the last comparison was cancelled"
        if not self.result.passed:
            fd = self.result.first_divergent
            where = f" (first divergent layer: '{fd.source}')" if fd is not None else ""
            return "the last comparison failed" + where
        return None

    def _check_stale(self) -> None:
        s = self.stale
        if s != self._last_stale:
            self._last_stale = s
            self.emit("stale", stale=s)

    # ---- whole-document changes -------------------------------------------------------
    def set_opened(self, paths: Iterable[str], graph, plan, overrides=None, model=None,
                   build_error: str | None = None, mapping_path: str | None = None) -> None:
        """Install a freshly opened model (graph and plan made in a worker)."""
        self.paths = [str(p) for p in paths]
        self.graph = graph
        # the document edits its own copy: the plan keeps the overrides it was made with
        self.overrides = copy.deepcopy(overrides) if overrides is not None else Overrides()
        self.plan = plan
        self.mapping_path = mapping_path
        self._plan_gen += 1
        self._planned_gen = self._plan_gen
        self._reset_index()
        self._fp = None
        self._res_index, self._first_divergent = {}, None
        fp = self.fingerprint
        self.model, self.model_fp = model, (fp if model is not None else None)
        self.build_error = build_error
        self.result = None
        self.result_fp = None
        self.input_x = self.input_desc = None
        self.saved_fp = fp
        self._last_stale = False
        self.emit("opened")

    def close(self) -> None:
        obs, ex = self._observers, self.executor
        self.__init__()
        self._observers, self.executor = obs, ex
        self.emit("opened")

    # ---- overrides & plan -------------------------------------------------------------
    def set_overrides(self, overrides, mapping_path: str | None = None) -> None:
        """Replace all overrides (e.g. a loaded mapping file) and re-plan."""
        self.overrides = overrides
        self._fp = None
        if mapping_path is not None:
            self.mapping_path = mapping_path
            self.saved_fp = self.fingerprint
        self.overrides_changed()

    def overrides_changed(self) -> None:
        """Call after changing ``self.overrides`` in place: re-plans and updates staleness."""
        self._fp = None
        self.emit("overrides")
        self._check_stale()
        self.replan()

    def replan(self) -> None:
        if self.graph is None:
            return
        self._plan_gen += 1
        gen = self._plan_gen
        graph = self.graph
        snapshot = copy.deepcopy(self.overrides)

        def work():
            return plan_model(graph, snapshot)

        def done(plan):
            if gen != self._plan_gen:      # a newer edit superseded this plan
                return
            self._planned_gen = gen
            self.plan = plan
            self._reset_index()
            self.emit("plan")

        def failed(err):
            if gen != self._plan_gen:
                return
            self._planned_gen = gen
            log.error("re-planning failed: %s", err)
            self.emit("error", message=str(err))

        self.executor(work, done, failed)

    @property
    def planning(self) -> bool:
        """True while the plan does not yet reflect the last edit (asynchronous executor)."""
        return self._planned_gen != self._plan_gen

    def validate_override(self, name_or_kind: str, key: str, value, *, scope: str = "layer"):
        """Check ``value`` against the rule's option; returns the coerced value or raises
        MigratorError with a one-line reason (used to reject invalid edits inline)."""
        op = self.graph.node(name_or_kind).op if scope == "layer" else name_or_kind
        rule = RULES.get(op)
        if rule is None or key not in rule.options:
            raise MigratorError(f"'{key}' cannot be overridden on a {op} layer",
                                layer=name_or_kind if scope == "layer" else None, key=key)
        return rule.options[key].validate(key, value)

    def option_info(self, source: str, key: str):
        """The :class:`~migrator.core.mapping.registry.Option` behind an editable row."""
        rule = RULES.get(self.graph.node(source).op)
        return None if rule is None else rule.options.get(key)

    def override_value(self, scope: str, target: str, key: str, default=None):
        return get_override(self.overrides, scope, target, key, default)

    def mark_saved(self, path: str) -> None:
        self.mapping_path = path
        self.saved_fp = self.fingerprint
        self.emit("overrides")

    # ---- model & results -----------------------------------------------------------
    def set_result(self, result, fingerprint: str | None = None, model=None, model_fp=None,
                   x: np.ndarray | None = None, input_desc: dict | None = None) -> None:
        """Install a comparison result computed with the overrides ``fingerprint``."""
        new_model = model is not None and model is not self.model
        if model is not None:
            self.model, self.model_fp = model, model_fp or fingerprint
        self.result = result
        self.result_fp = fingerprint if fingerprint is not None else self.fingerprint
        self._res_index = {r.source: r for r in result.layers} if result is not None else {}
        self._first_divergent = result.first_divergent if result is not None else None
        if x is not None:
            self.input_x = x
        if input_desc is not None:
            self.input_desc = input_desc
        self._last_stale = self.stale
        if new_model:
            self.emit("model")
        self.emit("result")      # observers also read .stale: no separate 'stale' event here

    def layer_result(self, source: str):
        return self._res_index.get(source)

    @property
    def first_divergent(self):
        """The first failing LayerResult of the last comparison (or None)."""
        return self._first_divergent

    # ---- queries ---------------------------------------------------------------------
    def _reset_index(self) -> None:
        self._k2s = self._s2k = None

    def _build_index(self) -> None:
        k2s: dict[str, list[str]] = {}
        s2k: dict[str, list[str]] = {}
        if self.plan is not None:
            k2s = self.plan.keras_to_sources()
            for k, srcs in k2s.items():
                for s in srcs:
                    s2k.setdefault(s, [])
                    if k not in s2k[s]:
                        s2k[s].append(k)
        self._k2s, self._s2k = k2s, s2k

    def mapping(self, source: str):
        if self.plan is None:
            return None
        idx = self._map_index
        if idx is None or idx[0] is not self.plan:
            idx = self._map_index = (self.plan, {m.source: m for m in self.plan.mappings})
        return idx[1].get(source)

    def keras_for_source(self, source: str) -> list[str]:
        """Keras layer names computing ``source`` (incl. the host layer of a fused node)."""
        if self._s2k is None:
            self._build_index()
        names = list(self._s2k.get(source, []))
        m = self.mapping(source)
        if m is not None and not m.layers and m.keras_output and m.keras_output not in names:
            names.append(m.keras_output)
        return names

    def sources_for_keras(self, keras_name: str) -> list[str]:
        if self._k2s is None:
            self._build_index()
        return list(self._k2s.get(keras_name, []))

    def group_of(self, source: str) -> list[str]:
        """The source nodes computed by the same Keras layers as ``source`` (a Caffe
        BatchNorm+Scale pair, a Lasagne batch_norm() triple), in graph order."""
        ks = self.keras_for_source(source)
        group = {source}
        for k in ks:
            group.update(self.sources_for_keras(k))
        order = {n.name: i for i, n in enumerate(self.graph.nodes)} if self.graph else {}
        return sorted(group, key=lambda n: order.get(n, 0))

    def batchnorm_sources(self) -> list[str]:
        if self.graph is None:
            return []
        return [n.name for n in self.graph.nodes if n.op in BATCHNORM_OPS]

    def next_batchnorm(self, after: str | None) -> str | None:
        bns = self.batchnorm_sources()
        if not bns:
            return None
        if after is None or after not in self.graph:
            return bns[0]
        order = {n.name: i for i, n in enumerate(self.graph.nodes)}
        pos = order[after]
        for b in bns:
            if order[b] > pos:
                return b
        return bns[0]

    def keras_layer_info(self) -> list[dict[str, Any]]:
        """Rows for the Keras tree: name, class, output shape, parameter count, sources."""
        rows = []
        if self.plan is None:
            return rows
        model_layers = {}
        if self.model is not None:
            try:
                model_layers = {lyr.name: lyr for lyr in self.model.layers}
            except Exception:  # noqa: BLE001 - a half-built model must not break the view
                model_layers = {}
        for m in self.plan.mappings:
            for spec in m.layers:
                shape = None
                lyr = model_layers.get(spec.name)
                if lyr is not None:
                    try:
                        shape = tuple(lyr.output.shape)
                    except Exception:  # noqa: BLE001
                        shape = None
                if shape is None and spec.name == m.keras_output and self.graph is not None:
                    shape = keras_shape_of(self.graph.node(m.source).out_shape)
                count = int(sum(np.asarray(w).size for w in (spec.weights or [])))
                rows.append({"name": spec.name, "class_name": spec.class_name, "shape": shape,
                             "param_count": count, "sources": self.sources_for_keras(spec.name),
                             "source": m.source})
        return rows

    # ---- one channel's values ----------------------------------------------------------
    def channel_values(self, source: str, channel: int, progress=None, cancel=None) -> ChannelValues:
        """Rerun the reference and the Keras model up to ``source`` on the last comparison's
        input and return that layer's values for ``channel`` (batch item 0).  Heavy: call
        it from a worker."""
        if self.graph is None or self.input_x is None:
            raise MigratorError("run a comparison first (no input to evaluate)")
        if not self.model_current:
            raise MigratorError("the Keras model is out of date: run the comparison again")
        ref, got = layer_outputs(self.graph, self.plan, self.model, self.input_x, source,
                                 progress=progress, cancel=cancel)
        if ref.ndim < 2 or channel >= ref.shape[1]:
            raise MigratorError(f"channel {channel} out of range", layer=source)
        return ChannelValues(source, channel, np.asarray(ref[0, channel]), np.asarray(got[0, channel]))


def keras_shape_of(source_shape) -> tuple | None:
    """NCHW source shape -> channels-last Keras shape (batch shown as None)."""
    if source_shape is None:
        return None
    s = list(source_shape)
    s[0] = None
    if len(s) > 2:
        s = [s[0]] + s[2:] + [s[1]]
    return tuple(s)


def layer_outputs(graph, plan, model, x: np.ndarray, source: str, progress=None, cancel=None):
    """(reference output, Keras output in source layout) of one source layer."""
    m = plan.mapping(source)
    keras_name = m.keras_output
    if keras_name is None and m.fused_into:
        # fused (Caffe BatchNorm into its Scale): the Keras layer computes the partner's output
        source = m.fused_into
        keras_name = plan.mapping(source).keras_output
    if keras_name is None:
        raise MigratorError("this layer has no Keras output of its own", layer=source)
    ref = None
    for name, outs in numpy_ref.run(graph, x, keep={source}, cancel=cancel):
        if name == source:
            ref = np.asarray(outs[0])
            break
    if ref is None:
        raise MigratorError("the reference did not produce this layer", layer=source)
    from .keras_build.executor import iter_keras_outputs  # imports keras
    got = None
    xk = inputs_to_keras(plan, x)
    for kname, arr in iter_keras_outputs(model, plan, xk, want={keras_name},
                                         cancel=cancel):
        if kname == keras_name:
            got = np.asarray(arr)
            break
    if got is None:
        raise MigratorError(f"the Keras model did not produce '{keras_name}'", layer=source)
    return ref, to_source_layout(got, ref.ndim, plan.layout_of(source))


# --------------------------------------------------------------------------------------
# Whole steps, run by GUI workers (or anyone): the flow (migrator.core.flow), as the CLI runs it
# --------------------------------------------------------------------------------------
def load_model(paths, *, mapping_path: str | None = None, builder_function: str = "build_model",
               output_layer: str | None = None, build: bool = True, progress=None, cancel=None,
               unknown: str = "error", input_shapes: dict | None = None) -> dict:
    """Open a model with a mapping file (its overrides, input shapes and accepted unknown
    fields, as ``migrator --mapping`` applies them), plan and (when every layer is supported)
    build the Keras model.  Returns ``{'paths', 'graph', 'overrides', 'plan', 'model',
    'build_error', 'mapping_path'}``; raises MigratorError for user errors."""
    fl = Flow(FlowOptions(paths=[str(p) for p in paths], builder_function=builder_function or "build_model",
                          output_layer=output_layer or None, mapping_path=mapping_path,
                          input_shapes=dict(input_shapes or {}), unknown=unknown))
    if progress:
        progress(0.0, "reading the model files")
    fl.open(scaled(progress, 0.0, 0.5), cancel)
    if progress:
        progress(0.5, "planning the Keras layers")
    plan = fl.make_plan()
    build_error = None
    err = unsupported_layers_error(plan)
    if err is not None:
        build_error = str(err)
    elif build:
        if cancel is not None and cancel():
            raise Cancelled()
        if progress:
            progress(0.6, "building the Keras model")
        try:
            fl.build(scaled(progress, 0.6, 1.0), cancel)
        except MigratorError as e:
            build_error = str(e)
    if progress:
        progress(1.0, "model opened")
    return {"paths": [str(p) for p in paths], "graph": fl.graph, "overrides": fl.overrides, "plan": plan,
            "model": fl.model, "build_error": build_error, "mapping_path": mapping_path}


def compare_model(graph, plan, model, spec, *, runtime: str = "builtin",
                  runtime_settings: dict | None = None, tolerances=None, progress=None,
                  cancel=None) -> dict:
    """Build the Keras model if needed (``model=None``), make the input, compare.
    Returns ``{'result', 'model', 'fingerprint', 'x', 'input_desc'}``; for an input set
    (image folder, arrays with a sample axis) also ``'input_set'`` (the opened set:
    ``InputSet.sample(i)`` jumps to any sample) and ``'sample_index'`` (the sample ``x`` is:
    the first divergent layer's worst sample, else the first)."""
    fl = Flow(FlowOptions(input_spec=spec, runtime=runtime, runtime_settings=dict(runtime_settings or {}),
                          tolerances=tolerances), graph=graph, plan=plan, model=model)
    result = fl.compare(progress, cancel)
    out = {"result": result, "model": fl.model, "fingerprint": overrides_fingerprint(plan.overrides),
           "x": fl.x, "input_desc": fl.input_desc}
    if fl.input_set is not None:
        out.update(input_set=fl.input_set, sample_index=fl.sample_index)
        # stopped after some batches: the result covers those (result.coverage_note)
        out["partial"] = bool(result.cancelled and result.n_samples)
    return out


def export_model(graph, plan, overrides, model, result, out_path: str, *, formats=("keras",),
                 report_path: str | None = None, force: bool = False, accept_mismatch: bool = False,
                 progress=None, cancel=None, fmt: str | None = None, records: list | None = None,
                 bake=None) -> list[str]:
    """Build the model when needed and write it (and the report) with
    :meth:`migrator.core.flow.Flow.export`: ``out_path`` in format ``fmt`` (default: from its
    extension; one of :data:`migrator.core.export.FORMATS`, ``'saved_model'`` is a directory),
    ``formats`` as companions next to it; each artifact is reloaded in a fresh process without
    Migrator and compared with the reference before anything is moved into place (atomic
    writes, never overwriting unless ``force``).  ``records`` (a list, optional) receives one
    dict per artifact (format, path, passed, max_abs, rel_to_max, ...).  ``bake`` (an
    :class:`~migrator.core.inputs.ImagePreprocessing`): put that preprocessing at the exported
    model's front."""
    also = tuple(f for f in formats if f != format_of(out_path, fmt))
    fl = Flow(FlowOptions(output=out_path, fmt=fmt, also=also, report_path=report_path, force=force,
                          accept_mismatch=accept_mismatch, bake_preprocessing=bake),
              graph=graph, overrides=overrides, plan=plan, model=model, result=result)
    out, recs = fl.export(progress, cancel)
    if records is not None:
        records.extend(recs)
    if progress:
        progress(1.0, "saved")
    return out
