"""The one flow from model files to a verified Keras model, for the CLI and the GUI alike.

    files --open--> Graph --plan(+mapping file)--> Plan --build--> keras.Model
                    reference runtime + Keras --compare--> ComparisonResult
                                          --export--> .keras/.h5/... + report

:class:`Flow` runs these steps with its options as data (:class:`FlowOptions`); ``migrator
inspect|compare|convert`` (:mod:`migrator.cli`) and the GUI's document
(:mod:`migrator.core.document`) both drive it, so a mapping file, an input shape or an
accepted unknown field means the same in both.  The module-level functions are the single
steps, for callers that hold the pieces themselves (tests, benchmarks).

Long steps take ``progress(fraction, message)`` and ``cancel() -> bool`` callables; a
cancelled step raises :class:`~migrator.core.errors.Cancelled`.  Nothing here touches Qt.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import export as export_mod
from . import repro as repro_mod
from .compare.engine import run_comparison
from .compare.sets import run_set_comparison
from .errors import Cancelled, MigratorError, unsupported_layers_error
from .importers.caffe import load_caffe
from .importers.lasagne import load_lasagne, load_lasagne_pickle
from .input_shape import apply_input_shapes, finish_plan, input_shape_need, need_error, open_inputs
from .inputs import InputSet, InputSpec, array_shapes, is_set, make_input, open_input_set
from .ir import Graph
from .mapping.overrides import Overrides
from .mapping.planner import make_plan
from .saving import check_readable

Progress = Callable[[float, str], None] | None
Cancel = Callable[[], bool] | None

CAFFE_ARCH = (".prototxt", ".pbtxt")
CAFFE_WEIGHTS = (".caffemodel",)
LASAGNE_BUILDER = (".py",)
LASAGNE_PARAMS = (".pkl", ".pickle", ".npz")
LASAGNE_NETWORK_PICKLE = (".pkl", ".pickle")     # alone: a whole pickled network, no script


def _ext(p: str) -> str:
    return os.path.splitext(str(p))[1].lower()


def detect_format(paths: Sequence[str]) -> tuple[str, dict[str, str | None]]:
    """Recognise MODEL... by extension: ('caffe', {prototxt, caffemodel}),
    ('lasagne', {builder, params}) or, for one .pkl alone, ('lasagne_pickle', {pickle}): a whole
    network pickled without its builder script."""
    paths = [str(p) for p in paths]
    if not paths:
        raise MigratorError("no model files given (Caffe: deploy.prototxt weights.caffemodel; "
                            "Lasagne: builder.py params.pkl|.npz)")
    by = {}
    for p in paths:
        e = _ext(p)
        if e in CAFFE_ARCH:
            by.setdefault("prototxt", p)
        elif e in CAFFE_WEIGHTS:
            by.setdefault("caffemodel", p)
        elif e in LASAGNE_BUILDER:
            by.setdefault("builder", p)
        elif e in LASAGNE_PARAMS:
            by.setdefault("params", p)
        else:
            raise MigratorError("unrecognised model file extension (expected .prototxt, .caffemodel, "
                                ".py, .pkl or .npz)", file=p)
    if "prototxt" in by or "caffemodel" in by:
        if "builder" in by or "params" in by:
            raise MigratorError("mixed Caffe and Lasagne files given", file=paths[0])
        if "prototxt" not in by:
            raise MigratorError("a Caffe model needs its .prototxt next to the .caffemodel",
                                file=by["caffemodel"])
        return "caffe", {"prototxt": by["prototxt"], "caffemodel": by.get("caffemodel")}
    if "builder" not in by and len(paths) == 1 and _ext(by["params"]) in LASAGNE_NETWORK_PICKLE:
        return "lasagne_pickle", {"pickle": by["params"]}   # a whole pickled network
    if "builder" not in by:
        raise MigratorError("a Lasagne model needs its builder script (.py)", file=by.get("params"))
    if "params" not in by:
        raise MigratorError("a Lasagne model needs its parameter file (.pkl or .npz)", file=by["builder"])
    return "lasagne", {"builder": by["builder"], "params": by["params"]}


# ------------------------------------------------------------------------------------
# The single steps
# ------------------------------------------------------------------------------------
def open_model(paths: Sequence[str], *, builder_function: str = "build_model",
               output_layer: str | None = None, progress: Progress = None,
               accept_unknown: Sequence[str] | None = None,
               input_shapes: dict | None = None, unknown: str = "error") -> Graph:
    """Read the model files into a Graph.  ``accept_unknown``: Caffe fields Migrator does not
    know that the user accepts (importers/caffe/fields.py); ``unknown='collect'`` records the
    others instead of raising (GUI).  ``input_shapes``: ``{input name or '': shape}``
    (input_shape.py)."""
    kind, files = detect_format(paths)
    for p in files.values():
        check_readable(p)
    if kind == "caffe":
        graph = load_caffe(files["prototxt"], files["caffemodel"], progress=progress,
                           accept_unknown=accept_unknown, unknown=unknown)
    elif kind == "lasagne_pickle":
        graph = load_lasagne_pickle(files["pickle"], output_layer=output_layer, progress=progress)
    else:
        graph = load_lasagne(files["builder"], files["params"], builder_function=builder_function,
                             output_layer=output_layer, progress=progress)
        # the legacy bridge re-runs the same builder function in the user's real Lasagne
        graph.meta.setdefault("builder_function", builder_function)
        if output_layer is not None:
            graph.meta.setdefault("output_layer", output_layer)
    apply_input_shapes(graph, input_shapes)
    return graph


def load_overrides(path: str | None) -> Overrides:
    """The mapping file at ``path`` (empty overrides for None)."""
    if path is None:
        return Overrides()
    check_readable(path)
    return Overrides.load(path)


def plan_model(graph: Graph, overrides=None):
    """The mapping plan of ``graph`` with ``overrides``, finished for the flow (unknown-field
    marks, open Keras input sizes: :func:`~migrator.core.input_shape.finish_plan`)."""
    plan = make_plan(graph, overrides)
    finish_plan(graph, plan, overrides)
    return plan


class deep_recursion:
    """Keras builds, calls and saves functional models recursively (a few Python frames per
    layer): a 1,000-layer model needs more than Python's default limit of 1,000.  Raise the
    limit for the duration (run deep work on a thread with a big stack: the CLI and the GUI
    workers do)."""

    def __init__(self, plan_or_layers):
        n = plan_or_layers if isinstance(plan_or_layers, int) else \
            len(getattr(plan_or_layers, "keras_layers", []) or [])
        self.need = 20 * n + 2000

    def __enter__(self):
        self.old = sys.getrecursionlimit()
        if self.need > self.old:
            sys.setrecursionlimit(self.need)
        return self

    def __exit__(self, *exc):
        if sys.getrecursionlimit() != self.old:
            sys.setrecursionlimit(self.old)


def build_model(plan, progress: Progress = None, *, release_weights: bool = False):
    """Build the Keras model of ``plan``; ``release_weights`` (one-shot CLI runs) frees the
    plan's copies of the weight arrays once the model holds them."""
    from .keras_build.builder import build_keras  # imports keras
    with deep_recursion(plan):
        return build_keras(plan, progress=progress, release_weights=release_weights)


def compare(graph: Graph, plan, model, x, *, runtime: str = "builtin",
            runtime_settings: dict | None = None, tolerances=None,
            input_desc: dict | None = None, progress: Progress = None,
            cancel: Cancel = None, precision: str = "failing"):
    """Compare on one input ``x`` (source layout): the ComparisonResult."""
    return run_comparison(graph, plan, model, x, runtime=runtime,
                          runtime_settings=runtime_settings or {}, tolerances=tolerances,
                          input_desc=input_desc, progress=progress, cancel=cancel,
                          precision=precision)


def compare_set(graph: Graph, plan, model, spec_or_set, *, runtime: str = "builtin",
                runtime_settings: dict | None = None, tolerances=None, batch_size: int | None = None,
                progress: Progress = None, cancel: Cancel = None, precision: str = "failing"):
    """Compare on an input set (an :class:`InputSpec` or an opened
    :class:`~migrator.core.inputs.InputSet`), batch by batch; returns one set-level
    ComparisonResult (per layer the worst over the set and which sample, per-channel worst,
    top-1 agreement / top-k overlap over N, samples whose top-1 differs)."""
    iset = spec_or_set if isinstance(spec_or_set, InputSet) else open_input_set(graph, spec_or_set)
    return run_set_comparison(graph, plan, model, iset, runtime=runtime,
                              runtime_settings=runtime_settings or {}, tolerances=tolerances,
                              batch_size=batch_size, progress=progress, cancel=cancel,
                              precision=precision)


def scaled(progress: Progress, lo: float, hi: float) -> Progress:
    """``progress`` mapped onto the span [lo, hi] (None stays None)."""
    if progress is None:
        return None

    def p(f, msg=""):
        progress(lo + (hi - lo) * max(0.0, min(1.0, float(f))), msg)
    return p


def _check_cancel(cancel: Cancel) -> None:
    if cancel is not None and cancel():
        raise Cancelled()


# ------------------------------------------------------------------------------------
# The flow
# ------------------------------------------------------------------------------------
@dataclass
class FlowOptions:
    """Everything a conversion is run with.  ``mapping_path`` is the mapping file (overrides,
    ``input_shapes``, ``accept_unknown``); ``input_shapes`` and ``accept_unknown`` given here
    add to the file's entries (a shape given here wins) and are recorded with them."""

    paths: list[str] = field(default_factory=list)
    builder_function: str = "build_model"
    output_layer: str | None = None
    mapping_path: str | None = None
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    accept_unknown: list[str] = field(default_factory=list)
    unknown: str = "error"                 # 'collect': mark layers with unknown fields (GUI)
    input_array: str | None = None         # an .npy/.npz input that sizes open inputs (CLI --input)
    # comparison
    input_spec: InputSpec = field(default_factory=InputSpec)
    runtime: str = "builtin"
    runtime_settings: dict[str, Any] = field(default_factory=dict)
    tolerances: Any = None                 # compare.metrics.Tolerances (None: the defaults)
    precision: str = "failing"
    release_weights: bool = False          # one-shot runs: the plan drops its weight copies
    # export
    output: str | None = None
    fmt: str | None = None
    also: tuple[str, ...] = ()
    report_path: str | None = None        # None: no report
    force: bool = False
    accept_mismatch: bool = False
    # the image preprocessing to put at the exported model's front (None: not baked)
    bake_preprocessing: Any = None        # inputs.ImagePreprocessing


class Flow:
    """One conversion: ``open -> plan -> build -> compare -> export``, each step taking
    ``progress``/``cancel``.  A step runs the steps before it that have not run yet; state
    made elsewhere (the GUI's document holds graph, plan and model) can be handed in."""

    def __init__(self, options: FlowOptions | None = None, *, graph: Graph | None = None,
                 overrides=None, plan=None, model=None, result=None):
        self.options = options or FlowOptions()
        self.graph = graph
        self.overrides = overrides if overrides is not None else getattr(plan, "overrides", None)
        self.plan = plan
        self.model = model
        self.result = result
        self.x = None                  # the input of the last comparison (one sample for a set)
        self.input_desc: dict | None = None
        self.input_set: InputSet | None = None
        self.sample_index: int | None = None

    # ---- open ------------------------------------------------------------------------
    def open(self, progress: Progress = None, cancel: Cancel = None) -> Graph:
        """Read the mapping file, then the model with the mapping file's (and the options')
        input shapes and accepted unknown fields."""
        o = self.options
        overrides = load_overrides(o.mapping_path)
        for spec in o.accept_unknown:
            if spec not in overrides.accept_unknown:
                overrides.accept_unknown.append(spec)
        shapes = {**{k: tuple(v) for k, v in overrides.input_shapes.items()},
                  **{k: tuple(v) for k, v in o.input_shapes.items()}}
        overrides.input_shapes.update({k: list(v) for k, v in o.input_shapes.items()})
        graph = open_model(o.paths, builder_function=o.builder_function or "build_model",
                           output_layer=o.output_layer, progress=progress,
                           accept_unknown=overrides.accept_unknown, input_shapes=shapes,
                           unknown=o.unknown)
        if o.input_array and not shapes and open_inputs(graph):
            # open sizes: the input array gives them
            apply_input_shapes(graph, array_shapes(o.input_array, graph), option="--input")
        _check_cancel(cancel)
        self.graph, self.overrides = graph, overrides
        self.plan = self.model = self.result = None
        return graph

    # ---- plan ------------------------------------------------------------------------
    def make_plan(self, progress: Progress = None, cancel: Cancel = None):
        """Plan with the flow's overrides (the model is opened first when it is not yet)."""
        lo = 0.0
        if self.graph is None:
            self.open(scaled(progress, 0.0, 0.9), cancel)
            lo = 0.9
        if progress:
            progress(lo, "planning the Keras layers")
        self.plan = plan_model(self.graph, self.overrides)
        self.model = self.result = None
        return self.plan

    def _planned(self, progress: Progress, cancel: Cancel):
        if self.plan is None:
            self.make_plan(progress, cancel)
        return self.plan

    def check_ready(self) -> None:
        """Raise the one-line error that stops a build: input sizes still open, or layers
        without a conversion."""
        plan = self._planned(None, None)
        need = input_shape_need(self.graph, plan)
        if need is not None:
            raise need_error(self.graph, need)
        err = unsupported_layers_error(plan)
        if err is not None:
            raise err

    # ---- build -----------------------------------------------------------------------
    def build(self, progress: Progress = None, cancel: Cancel = None):
        plan = self._planned(None, cancel)
        err = unsupported_layers_error(plan)
        if err is not None:
            raise err
        _check_cancel(cancel)
        self.model = build_model(plan, progress=progress, release_weights=self.options.release_weights)
        return self.model

    def _ensure_model(self, progress: Progress, cancel: Cancel, share: float) -> float:
        """Build the model when there is none, reporting it as the first ``share`` of
        ``progress``; returns where the rest of the step's progress starts."""
        if self.model is not None:
            return 0.0
        if progress:
            progress(0.0, "building the Keras model")
        self.build(scaled(progress, 0.0, share), cancel)
        return share

    # ---- compare ---------------------------------------------------------------------
    def compare(self, progress: Progress = None, cancel: Cancel = None):
        """Make the input (an input set batch by batch), build the model when there is none
        and compare: the ComparisonResult (also ``self.result``; ``self.x`` the input, for a
        set the sample to inspect: the first divergent layer's worst sample, else the first)."""
        o = self.options
        self.check_ready()
        graph, plan, spec = self.graph, self.plan, o.input_spec
        if is_set(spec):
            iset = open_input_set(graph, spec)         # validates the set before the build
            x = desc = None
        else:
            x, desc = make_input(graph, spec)
            iset = None
        lo = self._ensure_model(progress, cancel, 0.2)
        _check_cancel(cancel)
        if o.output is not None:
            # an export follows: its fresh check process starts up while this comparison runs
            export_mod.start_check_process()
        kw = {"runtime": o.runtime, "runtime_settings": o.runtime_settings, "tolerances": o.tolerances,
              "precision": o.precision, "progress": scaled(progress, lo, 1.0), "cancel": cancel}
        if iset is not None:
            result = compare_set(graph, plan, self.model, iset, **kw)
            fd = result.first_divergent
            idx = fd.worst_sample if fd is not None and fd.worst_sample is not None else 0
            self.x, _name = iset.sample(idx)
            self.input_desc, self.input_set, self.sample_index = result.input, iset, idx
        else:
            result = compare(graph, plan, self.model, x, input_desc=desc, **kw)
            self.x, self.input_desc = x, desc
        self.result = result
        if o.output is not None and not result.passed and not o.accept_mismatch:
            export_mod.stop_check_process()       # no export will take it
        return result

    def write_repro(self, out_dir: str, *, force: bool = False) -> str:
        """Write the repro bundle of the last comparison's root-cause (else first divergent)
        layer into ``out_dir`` (:func:`migrator.core.repro.write_repro`)."""
        if self.result is None or self.x is None:
            raise MigratorError("nothing compared yet: no repro to write")
        o = self.options
        with deep_recursion(self.plan):
            return repro_mod.write_repro(self.graph, self.plan, self.model, self.result, self.x, out_dir,
                                         runtime=o.runtime, runtime_settings=o.runtime_settings,
                                         tolerances=self.result.tolerances, force=force)

    # ---- export ----------------------------------------------------------------------
    def output_paths(self) -> list[tuple[str, str]]:
        """``[(path, format)]`` export writes: the artifacts, then the report (when
        ``options.report_path`` is set)."""
        o = self.options
        report = [(o.report_path, "report")] if o.report_path else []
        return export_mod.artifact_paths(o.output, o.fmt, o.also) + report

    def check_outputs(self) -> None:
        """Refuse early, before any work, when an output exists (without ``force``)."""
        for p, f in self.output_paths():
            export_mod.check_target(p, f, self.options.force)

    def export(self, progress: Progress = None, cancel: Cancel = None) -> tuple[list[str], list[dict]]:
        """Write ``options.output`` (and ``also`` companions, and the report), each artifact
        reloaded in a fresh process and compared before it is moved into place:
        ``(paths written, artifact records)``."""
        o = self.options
        if o.output is None:
            raise MigratorError("no output path given")
        lo = self._ensure_model(progress, cancel, 0.3)
        if progress:
            progress(lo, "writing files")
        with deep_recursion(self.plan):
            return export_mod.export(self.model, self.plan, self.result, o.output, fmt=o.fmt,
                                     also=o.also, report_path=o.report_path, force=o.force,
                                     accept_mismatch=o.accept_mismatch, graph=self.graph,
                                     overrides=self.overrides, progress=scaled(progress, lo, 1.0),
                                     bake=o.bake_preprocessing)
