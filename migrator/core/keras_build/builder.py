"""MappingPlan -> functional channels-last ``keras.Model``.

The plan is the source of truth: every Keras layer is a :class:`KerasLayerSpec` (class
name, constructor config, weights) wired by tensor ids.  The builder

1. refuses a plan with unsupported mappings, listing ALL of them in one
   :class:`~migrator.core.errors.UnsupportedLayerError`;
2. creates one ``keras.Input`` per IR Input node (spec class ``'Input'``, shape without
   the batch axis, already channels-last);
3. creates each layer (``keras.layers.<class_name>``), calls it on its input tensors, sets its
   weights; a spec naming a custom class of :mod:`.custom_layers` becomes its construct
   (:mod:`.constructs`, put into the model's own graph by :func:`.plain.apply_plain`: built-in
   layers and ``keras.ops`` named ``<spec>_...``, ending in a ``keras.layers.Identity`` named like
   the spec, so the model stays flat) unless ``plain=False`` or the class has none;
4. follows ``NodeMapping.aliases`` (nodes without a Keras layer);
5. returns ``keras.Model(inputs, outputs)`` with the graph's output tensors as outputs.
"""
from __future__ import annotations

import re
from collections.abc import Callable

import keras
import numpy as np

from ..errors import MigratorError, unsupported_layers_error
from . import custom_layers
from . import plain as plain_exprs
from .constructs.registry import LIST_INPUT_CONSTRUCTS, MERGE_CONSTRUCTS

Progress = Callable[[float, str], None] | None

#: layers that take a list of tensors: Keras's merge layers and the merge constructs
MERGE_LAYERS = frozenset({"Add", "Subtract", "Multiply", "Maximum", "Minimum", "Average",
                          "Concatenate", "Dot"} | MERGE_CONSTRUCTS)


def layer_class(class_name: str):
    """The Keras layer class called ``class_name``: a custom Migrator layer or a built-in."""
    if class_name in custom_layers.CUSTOM_LAYERS:
        return custom_layers.CUSTOM_LAYERS[class_name]
    cls = getattr(keras.layers, class_name, None)
    if cls is None or not isinstance(cls, type):
        raise KeyError(class_name)
    return cls


def _file_of(plan) -> str | None:
    files = getattr(plan.graph, "files", None) or []
    return files[0] if files else None


def check_supported(plan) -> None:
    """Raise :class:`UnsupportedLayerError` naming every unsupported mapping."""
    err = unsupported_layers_error(plan)
    if err is not None:
        raise err


def _model_name(plan) -> str:
    name = getattr(plan.graph, "name", "") or "migrated"
    name = re.sub(r"[^A-Za-z0-9_.\-]", "_", str(name)).strip("._-") or "migrated"
    return name


def keras_layer_order(plan) -> list[str]:
    """Names of the model's Keras layers in plan (execution) order, inputs included."""
    return [spec.name for spec in plan.keras_layers]


def build_keras(plan, *, progress: Progress = None, release_weights: bool = False,
                plain: bool = True) -> keras.Model:
    """Build the functional channels-last Keras model described by ``plan``.

    ``plain=True`` (default): custom classes become their constructs (:mod:`.plain`), so the
    model saves to a ``.keras`` that loads without Migrator; ``plain=False`` keeps Migrator's
    custom layer classes (the model then needs ``import migrator`` to load).

    ``release_weights=True`` drops each spec's weight arrays once they are assigned (the
    model holds them now), keeping peak memory down for one-shot conversions; such a plan
    cannot be built again (re-plan instead)."""
    check_supported(plan)
    file = _file_of(plan)
    if any(s.released for s in plan.keras_layers):
        raise MigratorError("this plan's weights were released by an earlier build; make a new plan",
                            file=file)
    specs_total = max(1, len(plan.keras_layers))
    used_names = {s.name for s in plan.keras_layers}     # names a construct's operations avoid
    tensors: dict[str, object] = {}
    inputs: list = []
    done = 0
    for m in plan.mappings:
        for spec in m.layers:
            if spec.class_name == "Input":
                cfg = dict(spec.config)
                t = keras.Input(shape=tuple(cfg.pop("shape")), name=spec.name, **cfg)
                inputs.append(t)
                tensors[spec.output] = t
                done += 1
                continue
            try:
                ins = [tensors[t] for t in spec.inputs]
            except KeyError as e:
                raise MigratorError(f"Keras layer '{spec.name}' needs tensor {e.args[0]!r}, which no "
                                    "earlier layer produced", file=file, layer=m.source) from None
            as_plain = plain and plain_exprs.has_plain(spec.class_name)
            if as_plain:
                if len(ins) != 1 and spec.class_name not in MERGE_LAYERS | LIST_INPUT_CONSTRUCTS:
                    raise MigratorError(f"Keras {spec.class_name} '{spec.name}' takes one input, the "
                                        f"plan gives {len(ins)}", file=file, layer=m.source)
                try:
                    out = plain_exprs.apply_plain(spec, ins, used_names)
                except Exception as e:  # noqa: BLE001 - bad config from a rule / override
                    raise MigratorError(f"cannot create Keras {spec.class_name} '{spec.name}': "
                                        f"{' '.join(str(e).split())}", file=file,
                                        layer=m.source) from None
                if spec.weights is not None and release_weights:
                    spec.weights = None
                    spec.released = True
                tensors[spec.output] = out
                done += 1
                if progress is not None:
                    progress(done / specs_total, f"building {spec.name}")
                continue
            try:
                cls = layer_class(spec.class_name)
            except KeyError:
                raise MigratorError(f"unknown Keras layer class {spec.class_name!r} in the plan",
                                    file=file, layer=m.source) from None
            try:
                layer = cls(name=spec.name, **spec.config)
            except Exception as e:  # noqa: BLE001 - bad config from a rule / override
                raise MigratorError(f"cannot create Keras {spec.class_name} '{spec.name}': {e}",
                                    file=file, layer=m.source) from None
            if spec.class_name in MERGE_LAYERS or (spec.class_name in LIST_INPUT_CONSTRUCTS
                                                  and len(ins) > 1):
                arg = ins
            elif len(ins) == 1:
                arg = ins[0]
            else:
                raise MigratorError(f"Keras {spec.class_name} '{spec.name}' takes one input, the plan "
                                    f"gives {len(ins)}", file=file, layer=m.source)
            preset = False
            try:
                if spec.weights is not None:
                    out, preset = _call_with_weights(layer, arg, spec.weights)
                else:
                    out = layer(arg)
            except Exception as e:  # noqa: BLE001 - shape errors etc.
                raise MigratorError(f"Keras {spec.class_name} '{spec.name}' cannot be applied: {e}",
                                    file=file, layer=m.source) from None
            if spec.weights is not None:
                if not preset:
                    set_layer_weights(layer, spec.weights, file=file, source=m.source)
                if release_weights:
                    _release_rows(m, spec.weights, layer)
                    spec.weights = None
                    spec.released = True
            tensors[spec.output] = out
            done += 1
            if progress is not None:
                progress(done / specs_total, f"building {spec.name}")
        for out_id, src in m.aliases.items():
            if src not in tensors:
                raise MigratorError(f"alias of tensor {src!r}, which no earlier layer produced",
                                    file=file, layer=m.source)
            tensors[out_id] = tensors[src]
    if not inputs:
        raise MigratorError("the model has no input layer", file=file)
    outputs = []
    for t in plan.graph.output_tensors:
        if t not in tensors:
            raise MigratorError(f"output tensor {t!r} has no Keras counterpart", file=file,
                                layer=t.split(":")[0])
        outputs.append(tensors[t])
    model = keras.Model(inputs=inputs if len(inputs) > 1 else inputs[0],
                        outputs=outputs if len(outputs) > 1 else outputs[0], name=_model_name(plan))
    if progress is not None:
        progress(1.0, "model built")
    return model


def _call_with_weights(layer, arg, weights) -> tuple[object, bool]:
    """``layer(arg)`` (which builds a built-in Keras layer) with each variable created directly
    from the plan's weight of the same index, instead of from the layer's random initializer
    and then ``set_weights`` (random values, their temporaries and a converted copy alive at
    once: up to 3x the largest weight).  Returns ``(output, preset)``; ``preset`` is True only
    when the layer's weights are exactly the variables created here, in order, each from
    ``weights[i]`` cast to its dtype (the values ``set_layer_weights`` would assign);
    otherwise the caller sets the weights as usual."""
    if not type(layer).__module__.startswith("keras."):
        return layer(arg), False
    import inspect
    orig = layer.add_weight
    sig = inspect.signature(orig)
    created: list = []

    def add_weight(*args, **kwargs):
        ba = sig.bind(*args, **kwargs)
        shape = ba.arguments.get("shape")
        i = len(created)
        fed = (i < len(weights) and isinstance(weights[i], np.ndarray) and shape is not None
               and tuple(shape) == tuple(weights[i].shape))
        if fed:
            w = weights[i]
            ba.arguments["initializer"] = lambda shape, dtype=None: np.asarray(
                w, dtype=np.dtype(dtype) if dtype is not None else w.dtype)
        v = orig(*ba.args, **ba.kwargs)
        created.append((v, fed))
        return v

    layer.__dict__["add_weight"] = add_weight     # this instance only, for this call
    try:
        out = layer(arg)
    finally:
        layer.__dict__.pop("add_weight", None)
    have = list(layer.weights)
    preset = (len(have) == len(weights) == len(created)
              and all(h is v and fed for h, (v, fed) in zip(have, created)))
    return out, preset


class ReleasedWeight:
    """Stands in a mapping row for a weight array that a ``release_weights`` build handed to
    the Keras model: the report reads the (identical float32) values back from the layer's
    variable when it needs them, so the plan keeps no second copy of the weights."""

    __slots__ = ("variable",)

    def __init__(self, variable):
        self.variable = variable

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.variable.shape)

    @property
    def dtype(self):
        return np.dtype(self.variable.dtype)

    def released_array(self) -> np.ndarray:
        return np.asarray(self.variable.numpy())

    def read_rows(self, start: int, stop: int | None) -> np.ndarray:
        """Rows ``start:stop`` of the first axis (the whole value for a scalar)."""
        if not self.variable.shape:
            return self.released_array()
        return np.asarray(self.variable.value[start:stop])


def _release_rows(m, weights, layer) -> None:
    """Rows of mapping ``m`` whose value IS one of the weight arrays just set into ``layer``
    (same dtype and shape as the variable, so the values read back are the same) point to
    the variable instead of holding the array."""
    pairs = [(w, v) for w, v in zip(weights, layer.weights)
             if isinstance(w, np.ndarray) and w.dtype == np.dtype(v.dtype)
             and tuple(w.shape) == tuple(v.shape)]
    for r in m.rows:
        for w, v in pairs:
            if r.value is w:
                r.value = ReleasedWeight(v)
                break


def set_layer_weights(layer, weights, *, file=None, source=None) -> None:
    """``layer.set_weights`` with a one-line error naming the layer on a mismatch."""
    # shapes and dtypes from the variables (get_weights() would copy every array first)
    have = [(tuple(v.shape), np.dtype(v.dtype)) for v in layer.weights]
    ws = [np.asarray(w, dtype=dt) for w, (_, dt) in zip(weights, have)]
    if len(weights) != len(have) or any(w.shape != shp for w, (shp, _) in zip(ws, have)):
        raise MigratorError(f"Keras layer '{layer.name}' expects weights "
                            f"{[shp for shp, _ in have]}, the plan gives "
                            f"{[tuple(np.shape(w)) for w in weights]}", file=file, layer=source)
    layer.set_weights(ws)
