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

The base class and its helpers are in :mod:`migrator.core.reference.runtime_base`; cv2 is imported
only when the OpenCV runtime runs, so importing this module is cheap.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import MigratorError
from . import numpy_ref
from .legacy import LegacyRuntime
from .opencv_rt import OpenCVRuntime
from .runtime_base import Cancel, Progress, Runtime, check_cancel, input_dict

__all__ = ["RUNTIME_NAMES", "BuiltinRuntime", "LegacyRuntime", "OpenCVRuntime", "Runtime",
           "available_runtimes", "check_cancel", "get_runtime", "input_dict"]

RUNTIME_NAMES = ("builtin", "opencv", "legacy")


# ------------------------------------------------------------------------------------------
class BuiltinRuntime(Runtime):
    """Migrator's numpy reference executor (source semantics written from the frameworks' docs)."""

    name = "builtin"
    label = "Built-in (numpy)"

    def describe(self) -> dict:
        return {"name": self.name, "framework": "migrator numpy reference",
                "versions": {"numpy": np.__version__}}

    def check(self, graph) -> str | None:
        supported = getattr(numpy_ref, "KERNELS", None)
        if graph is not None and supported is not None:
            missing = sorted({n.op for n in graph.nodes if n.op not in supported and n.op != "Input"})
            if missing:
                return "no built-in kernel for " + ", ".join(missing)
        return None

    def run(self, graph, x_nchw, *, progress: Progress = None, cancel: Cancel = None):
        yield from numpy_ref.run(graph, x_nchw, progress=progress, cancel=cancel)


def _runtime_class(name: str):
    if name == "builtin":
        return BuiltinRuntime
    if name == "opencv":
        return OpenCVRuntime
    if name == "legacy":
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
