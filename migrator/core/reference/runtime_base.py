"""The base of the reference runtimes (:class:`Runtime`) and the helpers every runtime uses;
the runtimes themselves and :func:`~migrator.core.reference.runtimes.get_runtime` are in
:mod:`migrator.core.reference.runtimes`."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..errors import Cancelled, MigratorError

Progress = Callable[[float, str], None] | None
Cancel = Callable[[], bool] | None


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
    """Raise :class:`Cancelled` when ``cancel()`` says so."""
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
