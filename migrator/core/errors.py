"""Error types shared by the whole core.

``MigratorError`` is a *user* error (bad file, bad option, unsupported layer): the CLI
prints ``str(err)`` as one line and exits 2; the GUI shows it in a message box.
``VerificationFailed`` means the comparison ran but did not pass (exit 3).
Anything else escaping the core is an internal error (exit 1).
"""
from __future__ import annotations


class MigratorError(Exception):
    """A user-facing error with the file and (where known) the layer it concerns."""

    def __init__(self, message: str, *, file: str | None = None, layer: str | None = None,
                 key: str | None = None):
        super().__init__(message)
        self.message = message
        self.file = file
        self.layer = layer
        self.key = key

    def __str__(self) -> str:  # one line, always
        where = []
        if self.file:
            where.append(str(self.file))
        if self.layer:
            where.append(f"layer '{self.layer}'")
        prefix = ": ".join(where)
        msg = " ".join(str(self.message).split())  # collapse newlines
        return f"{prefix}: {msg}" if prefix else msg


class UnsupportedLayerError(MigratorError):
    """One or more layers have no conversion rule.  ``layers`` lists (name, type)."""

    def __init__(self, layers: list[tuple[str, str]], *, file: str | None = None):
        names = ", ".join(f"'{n}' (type {t})" for n, t in layers)
        # a type given as 'Pooling: <reason>' is a supported type with a setting or an
        # input that cannot be converted: say so rather than "unsupported layer type"
        head = ("cannot convert" if any(": " in str(t) for _, t in layers)
                else "unsupported layer type")
        super().__init__(f"{head}: {names}", file=file,
                         layer=layers[0][0] if len(layers) == 1 else None)
        self.layers = layers


def unsupported_layers_error(plan) -> UnsupportedLayerError | None:
    """The error naming every layer of ``plan`` without a conversion (None when there is
    none): the one message the CLI, the GUI and the builder give for them.  A supported
    type that fails on a setting or an input is named with its reason ('Pooling: ...')."""
    bad = plan.unsupported
    if not bad:
        return None
    items = []
    for m in bad:
        t = m.source_type
        if m.error and not m.error.startswith("unsupported layer type"):
            t = f"{t}: {m.error}"
        items.append((m.source, t))
    files = getattr(getattr(plan, "graph", None), "files", None) or []
    return UnsupportedLayerError(items, file=files[0] if files else None)


class VerificationFailed(Exception):
    """The comparison ran and did not pass; carries the comparison result."""

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result


class Cancelled(Exception):
    """Long work was cancelled by the user."""
