"""One registry type for every aspect: a name -> entry table where registering a name twice is an error.

Each aspect keeps exactly one registry (shape rules, reference kernels, mapping rules, Keras
constructs, importer handlers, ...).  A variant of an op is an option of its one entry, never
a second registration that silently replaces the first: :meth:`Registry.add` (and item
assignment, which goes through it) raises :class:`RegistrationError` at import time, naming
both places.  A registry *is* a dict for every reader (``in``, ``[]``, ``.get``, iteration,
``isinstance(r, dict)``), so code that only reads needs no change.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class RegistrationError(RuntimeError):
    """A name registered twice in one registry (a programming error, raised at import)."""


def _where(entry: Any) -> str:
    mod = getattr(entry, "__module__", None) or type(entry).__module__
    name = getattr(entry, "__qualname__", None) or type(entry).__qualname__
    return f"{mod}.{name}"


class Registry(dict):
    """``name -> entry`` for one aspect; every write goes through :meth:`add`."""

    def __init__(self, aspect: str):
        super().__init__()
        self.aspect = aspect

    def add(self, name: str, entry: T) -> T:
        if name in self:
            raise RegistrationError(
                f"{self.aspect}: {name!r} registered twice ({_where(self[name])} and "
                f"{_where(entry)}); make the variant an option of the one entry")
        super().__setitem__(name, entry)
        return entry

    def decorator(self, *names: str) -> Callable[[T], T]:
        """``@registry.decorator("A", "B")`` registers the decorated object under each name."""
        def deco(entry: T) -> T:
            for n in names:
                self.add(n, entry)
            return entry
        return deco

    def remove(self, name: str) -> Any:
        """Take an entry out again (a plugin unloading, a test cleaning up); KeyError when absent."""
        return super().pop(name)

    @contextlib.contextmanager
    def override(self, name: str, entry: Any) -> Iterator[Any]:
        """Replace an entry for the duration of a ``with`` block and put the original back
        after (tests that plant a defect in one aspect).  Returns the original entry."""
        original = self[name]
        super().__setitem__(name, entry)
        try:
            yield original
        finally:
            super().__setitem__(name, original)

    # every other way of writing goes through add()
    def __setitem__(self, name: str, entry: Any) -> None:
        self.add(name, entry)

    def update(self, *args, **kwargs) -> None:
        for k, v in dict(*args, **kwargs).items():
            self.add(k, v)

    def setdefault(self, name: str, default: Any = None) -> Any:
        if name not in self:
            self.add(name, default)
        return self[name]

    def __repr__(self) -> str:
        return f"Registry({self.aspect!r}, {len(self)} entries)"
