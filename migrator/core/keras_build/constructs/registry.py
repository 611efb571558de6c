"""The Keras-construct registry: how each custom spec class of the mapping rules becomes plain
Keras (built-in layers and ``keras.ops`` only).

The mapping rules name a few classes that are not built-in Keras layers (the custom layers of
:mod:`migrator.core.keras_build.custom_layers` such as ``ConstantPadding2D`` or ``LRN``, and
expression-only names such as ``CaffeLog`` or ``LasagneSourceOp``).  The builder
*materialises* each such spec as its **construct**: a function registered here that builds
the spec's computation directly in the model's own graph
(:func:`migrator.core.keras_build.plain.apply_plain` calls it on the model's tensors, names
the operations it created ``<spec>_<op>`` and ends them with a ``keras.layers.Identity``
named after the spec -- a flat graph, no nested model).  Such a model saves to ``.keras``
and loads back with plain Keras (``safe_mode=True``, no ``custom_objects``).

Adding a construct for a new class is one function in the module of its op family::

    @plain("MyLayer")
    def _my_layer(xs, cfg, weights, name):
        \"\"\"y = <the formula>\"\"\"
        x = xs[0]                       # symbolic inputs (KerasTensors), spec order
        return ops.something(x, cfg["k"])   # built-in layers / keras.ops only

``xs`` are the spec's input tensors in the model's graph, ``cfg`` the spec's config,
``weights`` the spec's weight arrays in the custom class's ``get_weights()`` order (or
``None``), ``name`` the spec's name (prefix the names of built-in layers you create with it).
The function returns the output tensor (never a nested ``keras.Model``); weights go into
built-in layers (set them inside the function) or into numpy constants.

``LasagneSourceOp`` / ``LasagneMergeOp`` are one construct each, dispatching on
``cfg['op']`` to the functions registered with :func:`source_op` (one per op, in the module
of the op's family).
"""
from __future__ import annotations

from collections.abc import Callable

from keras import ops

from ...registry import Registry

PlainFn = Callable[[list, dict, list | None, str], object]

#: spec class name -> its construct (the plain expression function)
CONSTRUCTS: Registry[PlainFn] = Registry("keras constructs")
#: constructs called with the list of their input tensors, however many (merges)
MERGE_CONSTRUCTS: set[str] = set()
#: constructs called with the list of their input tensors when given more than one
LIST_INPUT_CONSTRUCTS: set[str] = set()
#: ``cfg['op']`` of a ``LasagneSourceOp`` / ``LasagneMergeOp`` spec -> its function
SOURCE_OPS: Registry[Callable] = Registry("lasagne source ops")


def plain(class_name: str, *, inputs: str = "one"):
    """Register the construct of spec class ``class_name``.  ``inputs``: 'one' (one tensor),
    'merge' (always the list of tensors) or 'list' (the list when there are several)."""
    if inputs not in ("one", "merge", "list"):
        raise ValueError(f"inputs must be 'one', 'merge' or 'list', got {inputs!r}")

    def deco(fn: PlainFn) -> PlainFn:
        CONSTRUCTS.add(class_name, fn)
        if inputs == "merge":
            MERGE_CONSTRUCTS.add(class_name)
        elif inputs == "list":
            LIST_INPUT_CONSTRUCTS.add(class_name)
        return fn
    return deco


def source_op(op: str, *, channels_first: bool = True):
    """Register the function computing ``cfg['op'] == op`` of a ``LasagneSourceOp`` /
    ``LasagneMergeOp`` spec: ``fn(xs, cfg, weights) -> y``.  ``channels_first`` (default): the
    inputs arrive in Lasagne's order (channels first) and ``y`` is returned in it; otherwise
    the Keras tensors are given and returned as they are."""
    def deco(fn):
        fn.channels_first = channels_first
        SOURCE_OPS.add(op, fn)
        return fn
    return deco


def to_source_order(x):
    """A channels-last Keras tensor in the source (channels-first) order."""
    r = len(x.shape)
    return x if r <= 2 else ops.transpose(x, (0, r - 1) + tuple(range(1, r - 1)))


def to_keras_order(x):
    """A source-order (channels-first) tensor in the channels-last Keras order."""
    r = len(x.shape)
    return x if r <= 2 else ops.transpose(x, (0,) + tuple(range(2, r)) + (1,))


def reduce_by(x, mode: str, axis):
    """Lasagne's pool functions as keras.ops: mean, max, min, sum, prod, var (biased), std."""
    if mode == "mean":
        return ops.mean(x, axis=axis)
    if mode == "max":
        return ops.max(x, axis=axis)
    if mode == "min":
        return ops.min(x, axis=axis)
    if mode == "sum":
        return ops.sum(x, axis=axis)
    if mode == "prod":
        return ops.prod(x, axis=axis)
    m = ops.mean(x, axis=axis, keepdims=True)
    d = ops.subtract(x, m)
    v = ops.mean(ops.multiply(d, d), axis=axis)
    return v if mode == "var" else ops.sqrt(v)


@plain("LasagneSourceOp")
@plain("LasagneMergeOp", inputs="merge")
def _lasagne_source_op(xs, cfg, weights, name):
    """Lasagne master's layers that no built-in Keras layer computes (FeaturePoolLayer,
    FeatureWTALayer, GlobalPoolLayer, merges with autocrop, ...), computed with keras.ops on
    the channels-first tensor: ``cfg['op']`` names which (see :data:`SOURCE_OPS`)."""
    op = cfg["op"]
    fn = SOURCE_OPS.get(op)
    if fn is None:  # pragma: no cover - the rules only name registered ops
        raise ValueError(f"LasagneSourceOp: unknown op {op!r}")
    if not fn.channels_first:
        return fn(xs, cfg, weights)
    return to_keras_order(fn([to_source_order(x) for x in xs], cfg, weights))

