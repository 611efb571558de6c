"""Reference runtimes: what computes the *source* semantics that the Keras model is compared to.

Three runtimes share one interface (:class:`Runtime`):

``builtin``
    Migrator's own numpy executor (``migrator.core.reference.numpy_ref``): always there, every op.
``opencv``
    OpenCV DNN's independent Caffe importer (``cv2.dnn.readNetFromCaffe``); Caffe models only;
    needs ``pip install migrator[opencv]``.
``legacy``
    The real framework (Caffe, or Theano + Lasagne) in the user's old Python environment, driven
    through a subprocess bridge (see :mod:`migrator.core.reference.legacy`).

``run(graph, x_nchw)`` yields ``(source node name, [output arrays])`` in graph order for every node
the runtime can observe.  Nodes a runtime cannot observe are *skipped*, never faked; the comparison
reports them as "not observed by <runtime>".  An ``Input`` node yields the input exactly as fed.

Heavy imports (cv2, the numpy executor) happen inside methods, so importing this module is cheap.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..errors import Cancelled, MigratorError

Progress = Callable[[float, str], None] | None
Cancel = Callable[[], bool] | None

RUNTIME_NAMES = ("builtin", "opencv", "legacy")


class Runtime:
    """Base class of the reference runtimes."""

    name: str = "base"
    #: human-readable label for menus
    label: str = ""
    #: how much farther than numpy's float32 this runtime's own float32 arithmetic may land from the
    #: exact (float64) result while still confirming it (the verdict's anchor check,
    #: migrator.core.compare.engine.judge); measured per runtime on correct deep nets
    anchor_factor: float = 4.0

    def __init__(self, **settings: Any):
        self.settings = dict(settings)
        #: remarks collected while running (e.g. layer-list differences found by the legacy bridge)
        self.warnings: list[str] = []

    # -- interface ------------------------------------------------------------------------
    def describe(self) -> dict:
        """``{'name', 'framework', 'versions': {...}, ...}`` for the comparison view and the report."""
        return {"name": self.name, "framework": None, "versions": {}}

    def check(self, graph) -> str | None:
        """None when this runtime can run ``graph``; otherwise the reason (one line).

        ``graph=None`` asks only whether the runtime is installed/configured at all.  Cheap: no
        model is loaded and no subprocess started.
        """
        return None

    def run(self, graph, x_nchw, *, progress: Progress = None,
            cancel: Cancel = None) -> Iterator[tuple[str, list[np.ndarray]]]:
        raise NotImplementedError

    # -- helpers --------------------------------------------------------------------------
    def ensure_usable(self, graph) -> None:
        reason = self.check(graph)
        if reason:
            raise MigratorError(f"reference runtime '{self.name}' cannot run this model: {reason}",
                                file=(graph.files[0] if getattr(graph, "files", None) else None))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def check_cancel(cancel: Cancel) -> None:
    if cancel is not None and cancel():
        raise Cancelled("cancelled")


def input_dict(graph, x) -> dict[str, np.ndarray]:
    """Normalise the ``x`` given to ``run``: one array (for the first/only Input node) or a dict."""
    inputs = [n.name for n in graph.nodes if n.op == "Input"]
    if isinstance(x, dict):
        missing = [n for n in inputs if n not in x]
        if missing:
            raise MigratorError(f"no input array given for input layer(s) {', '.join(missing)}")
        return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in x.items()}
    if not inputs:
        raise MigratorError("the model has no input layer")
    if len(inputs) > 1:
        raise MigratorError(f"the model has {len(inputs)} inputs ({', '.join(inputs)}): give a dict of arrays")
    return {inputs[0]: np.ascontiguousarray(x, dtype=np.float32)}


def in_graph_order(graph, names_observed: set[str], stream, cancel: Cancel = None):
    """Re-emit ``(name, outputs)`` from ``stream`` in graph order, restricted to ``names_observed``.

    ``stream`` may deliver in any order; items are buffered until every earlier observed node has
    been emitted.  Nodes outside ``names_observed`` are skipped.
    """
    order = [n.name for n in graph.nodes if n.name in names_observed]
    pos = 0
    pending: dict[str, list[np.ndarray]] = {}
    for name, outs in stream:
        check_cancel(cancel)
        if name not in names_observed:
            continue
        pending[name] = outs
        while pos < len(order) and order[pos] in pending:
            nm = order[pos]
            yield nm, pending.pop(nm)
            pos += 1
    # whatever arrived but was preceded by a missing node: emit in order
    for nm in order[pos:]:
        if nm in pending:
            yield nm, pending.pop(nm)


# ------------------------------------------------------------------------------------------
class BuiltinRuntime(Runtime):
    """Migrator's numpy reference executor (source semantics written from the frameworks' docs)."""

    name = "builtin"
    label = "Built-in (numpy)"

    def describe(self) -> dict:
        return {"name": self.name, "framework": "migrator numpy reference",
                "versions": {"numpy": np.__version__}}

    def check(self, graph) -> str | None:
        try:
            from . import numpy_ref
        except ImportError as e:  # pragma: no cover - only while the package is incomplete
            return f"the built-in numpy reference is not available ({e})"
        supported = getattr(numpy_ref, "KERNELS", None)
        if graph is not None and supported is not None:
            missing = sorted({n.op for n in graph.nodes if n.op not in supported and n.op != "Input"})
            if missing:
                return "no built-in kernel for " + ", ".join(missing)
        return None

    def run(self, graph, x_nchw, *, progress: Progress = None, cancel: Cancel = None):
        from . import numpy_ref
        yield from numpy_ref.run(graph, x_nchw, progress=progress, cancel=cancel)


def _runtime_class(name: str):
    if name == "builtin":
        return BuiltinRuntime
    if name == "opencv":
        from .opencv_rt import OpenCVRuntime
        return OpenCVRuntime
    if name == "legacy":
        from .legacy import LegacyRuntime
        return LegacyRuntime
    raise MigratorError(f"unknown reference runtime {name!r} (choose from {', '.join(RUNTIME_NAMES)})")


def get_runtime(name: str | Runtime = "builtin", **settings: Any) -> Runtime:
    """The runtime called ``name`` ('builtin' | 'opencv' | 'legacy'), configured with ``settings``.

    Legacy settings: ``command`` (str or list: starts a Python in the old environment), ``timeout``
    (seconds, default 600), ``root`` / ``path_map`` (see :mod:`.legacy`), ``env`` (extra variables).
    A :class:`Runtime` instance is returned as is.
    """
    if isinstance(name, Runtime):
        return name
    return _runtime_class(str(name).lower())(**settings)


def available_runtimes(graph=None, settings: dict[str, dict] | None = None) -> list[tuple[str, bool, str]]:
    """``[(name, usable, reason)]`` for every runtime; ``reason`` is '' when usable.

    ``settings`` maps a runtime name to its settings (e.g. ``{'legacy': {'command': '...'}}``).
    Only cheap checks are made (no subprocess is started).
    """
    settings = settings or {}
    out = []
    for name in RUNTIME_NAMES:
        try:
            rt = get_runtime(name, **settings.get(name, {}))
            reason = rt.check(graph)
        except MigratorError as e:
            reason = str(e)
        out.append((name, not reason, reason or ""))
    return out
