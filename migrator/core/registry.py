"""One registry type for every aspect: a name -> entry table where registering a name twice is an error.

Each aspect keeps exactly one registry (shape rules, reference kernels, mapping rules, Keras
constructs, importer handlers, ...).  A variant of an op is an option of its one entry, never
a second registration that silently replaces the first: :meth:`Registry.add` raises
:class:`RegistrationError` at import time, naming both places.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class RegistrationError(RuntimeError):
    """A name registered twice in one registry (a programming error, raised at import)."""


def _where(entry: Any) -> str:
    mod = getattr(entry, "__module__", None) or type(entry).__module__
    name = getattr(entry, "__qualname__", None) or type(entry).__qualname__
    return f"{mod}.{name}"


class Registry(Generic[T]):
    """``name -> entry`` for one aspect.  Read like a mapping; write only through :meth:`add`."""

    def __init__(self, aspect: str):
        self.aspect = aspect
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise RegistrationError(
                f"{self.aspect}: {name!r} registered twice ({_where(self._entries[name])} and "
                f"{_where(entry)}); make the variant an option of the one entry")
        self._entries[name] = entry
        return entry

    def decorator(self, *names: str) -> Callable[[T], T]:
        """``@registry.decorator("A", "B")`` registers the decorated object under each name."""
        def deco(entry: T) -> T:
            for n in names:
                self.add(n, entry)
            return entry
        return deco

    def remove(self, name: str) -> T:
        """Take an entry out again (plugins unloading, tests); KeyError when absent."""
        return self._entries.pop(name)

    # --- read-only mapping protocol -------------------------------------------------
    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self._entries.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self):
        return self._entries.keys()

    def values(self):
        return self._entries.values()

    def items(self):
        return self._entries.items()

    def __repr__(self) -> str:
        return f"Registry({self.aspect!r}, {len(self)} entries)"
