"""The Lasagne importer's one registry: Lasagne layer class -> :class:`Converter`.

Every ``lasagne.layers`` class Migrator recognises has exactly one entry in
:data:`CONVERTERS`, registered by the op-family module that holds its converter
(``importers/lasagne/<family>.py``) with :func:`converter`.  The builder child process
recognises exactly these classes (the parent passes the names; see :mod:`.builder_child`); a
class refused by name is an entry with its reason (:func:`refuse`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ...registry import Registry

#: ``fn(layer description, input shapes) -> (op, attrs, {lasagne param: (key, transform,
#: layout[, source name])})``; raises :class:`.common.Unsupported`
ConvertFn = Callable[[dict, list], tuple[str, dict, dict]]


@dataclass(frozen=True)
class Converter:
    """How one Lasagne layer class is imported.

    ``ops``: the canonical ops the converter produces, the usual one first (empty for a class
    that is recognised but never converted); ``refused``: the reason a class is refused by
    name (then ``fn`` is None); ``aliases``: other names Lasagne gives the same class."""

    cls: str
    fn: ConvertFn | None
    ops: tuple[str, ...]
    refused: str | None = None
    aliases: tuple[str, ...] = ()


CONVERTERS: Registry[Converter] = Registry("lasagne layer classes")


def converter(*classes: str, ops: tuple[str, ...], aliases: tuple[str, ...] = ()
              ) -> Callable[[ConvertFn], ConvertFn]:
    """Register the decorated ``fn(L, in_shapes)`` as the converter of each class in ``classes``."""
    def deco(fn: ConvertFn) -> ConvertFn:
        for c in classes:
            CONVERTERS.add(c, Converter(c, fn, tuple(ops), None, tuple(aliases)))
        return fn
    return deco


def refuse(cls: str, reason: str) -> None:
    """Register ``cls`` as recognised but refused: it becomes a Custom node carrying ``reason``."""
    CONVERTERS.add(cls, Converter(cls, None, (), reason))


def refused_classes() -> dict[str, str]:
    """Lasagne class -> the reason it is refused by name."""
    return {c: e.refused for c, e in CONVERTERS.items() if e.refused}


__all__ = ["CONVERTERS", "ConvertFn", "Converter", "converter", "refuse", "refused_classes"]
