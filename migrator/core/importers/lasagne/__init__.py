"""Lasagne/Theano importer: ``builder.py`` + ``params.{pkl,npz}`` -> IR :class:`Graph`.

* :mod:`.loader` runs the import (:func:`load_lasagne`): the user's builder script runs in a
  child process (:mod:`.builder_child`, started by path) with the recording stand-ins for ``lasagne``
  and ``theano`` (``recorder/``) first on ``sys.path``; the parameter file is read by
  :mod:`.params` (pickles only through :mod:`.safe_pickle`);
* :mod:`.network_pickle` reads a whole network pickled without its builder script
  (:func:`load_lasagne_pickle`) with an allow-list unpickler onto the recorder's classes;
* :mod:`.registry` holds :data:`CONVERTERS` (Lasagne layer class -> converter); the
  converters live in one module per op family (:mod:`.conv`, :mod:`.pool`, ...).

:data:`KNOWN` (the classes the child recognises) and :data:`REFUSED_CLASSES` are derived
from the registry.
"""
from __future__ import annotations

from . import activation, conv, dense, embedding, io, layout, merge, norm, pool, recurrent, resize  # noqa: F401
from .common import Unsupported, activation_of
from .loader import (
    CHILD,
    canonical,
    describe_builder,
    describe_pickle,
    graph_from_description,
    kill_builder_processes,
    load_lasagne,
    load_lasagne_pickle,
    load_param_values,
)
from .registry import CONVERTERS, Converter, refused_classes

#: The ``lasagne.layers`` classes Migrator recognises (the child process is given these names).
KNOWN: frozenset[str] = frozenset(CONVERTERS)
#: Lasagne class -> why Migrator does not convert it (the Custom node's ``refused`` reason).
REFUSED_CLASSES: dict[str, str] = refused_classes()


def source_type_ops() -> dict[str, str]:
    """Lasagne class (and alias) -> the op it usually imports as (the first op its converter
    declares)."""
    out: dict[str, str] = {}
    for cls, entry in CONVERTERS.items():
        if entry.ops:
            for name in (cls, *entry.aliases):
                out[name] = entry.ops[0]
    return out


__all__ = ["CHILD", "CONVERTERS", "KNOWN", "REFUSED_CLASSES", "Converter", "Unsupported", "activation_of",
           "canonical", "describe_builder", "describe_pickle", "graph_from_description",
           "kill_builder_processes", "load_lasagne", "load_lasagne_pickle", "load_param_values", "source_type_ops"]
