"""Plugins: layer types Migrator does not know, added from the user's own Python file.

A plugin is a Python file with a function ``register(api)``; :func:`load_plugin` RUNS it (it is
the user's code, with the user's rights: there is no sandbox) and ``register`` adds each layer
type with the same pieces every built-in op has, through :class:`PluginAPI`:

* the canonical op (its name, family and documentation: ``ops.OP_SPECS`` / ``ops.OPS``);
* the shape rule (``shapes.registry.SHAPE_RULES``): ``shape(node, in_shapes, ctx) -> [shape]``;
* the reference kernel (``reference.kernels.registry.KERNELS``): ``kernel(node, inputs) ->
  [array]``, the source framework's semantics in numpy (the comparison treats it like any
  other kernel: it is what the Keras model is verified against);
* the mapping rule (``mapping.registry.RULES``): by default one Keras layer, the construct
  below, fed the node's inputs; or the plugin's own :class:`~migrator.core.mapping.registry.Rule`;
* the Keras construct (``keras_build.constructs.registry.CONSTRUCTS``): ``keras(xs, attrs,
  name) -> tensor`` of built-in Keras layers and ``keras.ops`` only, so the saved model loads
  with plain Keras, without the plugin;
* the importer entry: a Caffe layer type (``importers.caffe.registry.LAYER_HANDLERS``) whose
  parameter message (``prior_box_param { ... }``, which Migrator's schema does not know) the
  plugin reads as a dict of lists.

A second registration of a name (a built-in op or another plugin's) is a one-line
:class:`MigratorError` naming the plugin file; so is any exception the plugin raises while
loading, and a plugin's shape rule or kernel failing later names the file and the layer.
Loading the same file twice is a no-op.  See docs/plugins.md.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
from collections.abc import Callable
from typing import Any

from .errors import MigratorError
from .ops import FAMILIES, OP_SPECS, OPS, OpSpec

#: absolute path -> the loaded plugin
LOADED: dict[str, Plugin] = {}


class Plugin:
    """One loaded plugin file and what it registered (to unload it again)."""

    def __init__(self, path: str):
        self.path = path
        self.ops: list[str] = []
        self.added: list[tuple[Any, str]] = []     # (registry, name)
        self.caffe_types: dict[str, str] = {}      # Caffe type -> the op it imports as

    def __repr__(self) -> str:
        return f"Plugin({self.path!r}, ops={self.ops})"


def _fail(path: str, msg: str) -> MigratorError:
    return MigratorError(f"plugin: {msg}", file=path)


class PluginAPI:
    """What ``register(api)`` is given.  ``api.FAMILIES``: the op families an op may join;
    ``api.file``: the plugin's path."""

    FAMILIES = FAMILIES

    def __init__(self, plugin: Plugin):
        self._p = plugin
        self.file = plugin.path

    # ------------------------------------------------------------------------------
    def add_layer_type(self, op: str, *, family: str, doc: str, shape: Callable,
                       kernel: Callable, keras: Callable | None = None, rule: Any = None,
                       keras_layout: str = "source", caffe_type: str | None = None,
                       caffe_params: str | None = None, caffe_bottoms: tuple[int, int] = (1, 1),
                       caffe_attrs: Callable | None = None) -> None:
        """Register the layer type ``op`` (see the module docstring and docs/plugins.md).

        ``keras_layout``: 'source' (``keras`` gets and returns tensors in the source order,
        NCHW; Migrator transposes around it) or 'keras' (channels-last, as Keras holds them).
        ``caffe_type``: the Caffe ``type:`` this op imports; ``caffe_params``: the name of its
        parameter message (e.g. ``prior_box_param``); ``caffe_bottoms``: (min, max) bottoms;
        ``caffe_attrs(params, layer_name) -> attrs``: the node's attrs from the message as
        ``{field: [values]}`` (numbers as float/int, true/false as bool, strings and enum
        names as str; a nested message as a dict of lists); default: the dict as given."""
        path = self.file
        if not isinstance(op, str) or not op.isidentifier():
            raise _fail(path, f"the op name {op!r} is not an identifier")
        if family not in FAMILIES:
            raise _fail(path, f"op '{op}': family {family!r} is not one of {', '.join(FAMILIES)}")
        if op in OP_SPECS:
            raise _fail(path, f"op '{op}' is already registered ("
                        f"{_owner(op) or 'a built-in op'}); choose another name")
        if keras is None and rule is None:
            raise _fail(path, f"op '{op}': give keras= (a construct) or rule= (a mapping rule)")
        if keras_layout not in ("source", "keras"):
            raise _fail(path, f"op '{op}': keras_layout must be 'source' or 'keras'")
        from .importers.caffe.registry import LAYER_HANDLERS, LayerHandler
        from .keras_build.constructs.registry import CONSTRUCTS, LIST_INPUT_CONSTRUCTS
        from .mapping.registry import RULES
        from .reference.kernels.registry import KERNELS
        from .shapes.registry import SHAPE_RULES

        construct = f"{op}Plugin"
        for reg, name in ((SHAPE_RULES, op), (KERNELS, op), (RULES, op), (CONSTRUCTS, construct),
                          (LAYER_HANDLERS, caffe_type)):
            if name is not None and name in reg:
                raise _fail(path, f"{reg.aspect}: '{name}' is already registered "
                            f"({_owner(name) or 'built in'})")
        added: list[tuple[Any, str]] = []
        try:
            OP_SPECS[op] = OpSpec(op, family, ("plugin",), doc)
            OPS[op] = doc
            added += [(OP_SPECS, op), (OPS, op)]
            SHAPE_RULES.add(op, _guard_shape(shape, path))
            added.append((SHAPE_RULES, op))
            KERNELS.add(op, _guard_kernel(kernel, path))
            added.append((KERNELS, op))
            if keras is not None:
                CONSTRUCTS.add(construct, _construct(keras, keras_layout))
                added.append((CONSTRUCTS, construct))
                LIST_INPUT_CONSTRUCTS.add(construct)   # the list of inputs when several
                added.append((LIST_INPUT_CONSTRUCTS, construct))
            RULES.add(op, rule() if isinstance(rule, type) else
                      (rule if rule is not None else _default_rule(op, construct, doc, path)))
            added.append((RULES, op))
            if caffe_type is not None:
                handler = _caffe_handler(op, caffe_params, caffe_attrs, path)
                LAYER_HANDLERS.add(caffe_type, LayerHandler(
                    caffe_type, handler, (op,), f"plugin {os.path.basename(path)}",
                    tuple(caffe_bottoms), False, (caffe_params,) if caffe_params else ()))
                added.append((LAYER_HANDLERS, caffe_type))
        except Exception:
            for reg, name in reversed(added):
                _drop(reg, name)
            raise
        self._p.added += added
        self._p.ops.append(op)
        if caffe_type is not None:
            self._p.caffe_types[caffe_type] = op


def _owner(name: str) -> str | None:
    for p in LOADED.values():
        if any(n == name for _, n in p.added):
            return f"by the plugin {p.path}"
    return None


def _guard_shape(fn: Callable, path: str) -> Callable:
    def shape_rule(node, ins, ctx):
        try:
            out = fn(node, ins, ctx)
        except MigratorError:
            raise
        except Exception as e:  # noqa: BLE001 - the plugin's code
            raise MigratorError(f"the shape rule of the plugin {path} failed: "
                                f"{type(e).__name__}: {e}", file=ctx.file,
                                layer=node.provenance.layer or node.name) from None
        return [tuple(s) for s in out]
    shape_rule.plugin = path
    return shape_rule


def _guard_kernel(fn: Callable, path: str) -> Callable:
    def kernel(node, xs):
        try:
            out = fn(node, xs)
        except MigratorError:
            raise
        except Exception as e:  # noqa: BLE001 - the plugin's code
            raise MigratorError(f"the reference kernel of the plugin {path} failed: "
                                f"{type(e).__name__}: {e}", file=node.provenance.file,
                                layer=node.provenance.layer or node.name) from None
        return list(out)
    kernel.plugin = path
    return kernel


def _construct(fn: Callable, layout: str) -> Callable:
    from .keras_build.constructs.registry import to_keras_order, to_source_order

    def construct(xs, cfg, weights, name):
        attrs = cfg.get("attrs", {})
        if layout == "keras":
            return fn(list(xs), attrs, name)
        return to_keras_order(fn([to_source_order(x) for x in xs], attrs, name))
    return construct


def _default_rule(op: str, construct: str, doc: str, path: str):
    from .mapping.plan import ParamRow
    from .mapping.registry import Rule, keras_layout, rank_of
    from .mapping.rules.common import Chain

    class PluginRule(Rule):
        name = f"{op} (plugin)"
        description = f"the plugin's Keras construct {construct} ({os.path.basename(path)})"

        def map(self, node, ctx):
            chain = Chain(node, ctx)
            chain.add(construct, {"attrs": _jsonable(node.attrs)})
            rows = [ParamRow("operation", doc, f"{construct}: built-in Keras layers and keras.ops "
                             f"from the plugin {os.path.basename(path)}")]
            return chain.finish(rows=rows, layout=keras_layout(rank_of(node.out_shape)))
    return PluginRule()


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "tolist"):
        return v.tolist()
    return v


# ------------------------------------------------------------------------------------
# a parameter message the schema does not know, read from the prototxt text
# ------------------------------------------------------------------------------------
_TOK = re.compile(r'\s+|#[^\n]*|"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|[{}<>:\[\],;]|[^\s{}<>:\[\],;"\']+')


def parse_message(text: str) -> dict[str, list]:
    """``{ min_size: 30 flip: true sub { a: 1 } }`` -> ``{'min_size': [30], 'flip': [True],
    'sub': [{'a': [1]}]}`` (protobuf text format; repeated fields collect their values)."""
    toks = [t for t in _TOK.findall(text) if t.strip() and not t.startswith("#")]
    pos = 0

    def scalar(t: str):
        if t[:1] in "\"'":
            return t[1:-1]
        if t in ("true", "True"):
            return True
        if t in ("false", "False"):
            return False
        try:
            return int(t)
        except ValueError:
            pass
        try:
            return float(t)
        except ValueError:
            return t

    def body(end: str | None) -> dict[str, list]:
        nonlocal pos
        out: dict[str, list] = {}
        while pos < len(toks):
            t = toks[pos]
            if t == end:
                pos += 1
                return out
            if t in (",", ";"):
                pos += 1
                continue
            name = t
            pos += 1
            if pos < len(toks) and toks[pos] == ":":
                pos += 1
            vals = []
            if pos < len(toks) and toks[pos] == "[":
                pos += 1
                while toks[pos] != "]":
                    if toks[pos] != ",":
                        vals.append(one())
                    else:
                        pos += 1
                pos += 1
            else:
                vals.append(one())
            out.setdefault(name, []).extend(vals)
        if end is not None:
            raise ValueError("unbalanced braces")
        return out

    def one():
        nonlocal pos
        t = toks[pos]
        pos += 1
        if t in ("{", "<"):
            return body("}" if t == "{" else ">")
        return scalar(t)

    text = text.strip()
    if text.startswith(("{", "<")):
        pos = 1
        return body("}" if text[0] == "{" else ">")
    return body(None)


def _has_message(lp, name: str) -> bool:
    try:
        return lp.HasField(name)
    except ValueError:
        return False


def _caffe_handler(op: str, message: str | None, attrs_fn: Callable | None, path: str):
    def handler(b, lp):
        params: dict[str, list] = {}
        for it in getattr(b, "claimed_fields", []):
            if it.path == message:
                try:
                    for k, v in parse_message(it.raw or it.value).items():
                        params.setdefault(k, []).extend(v)
                except (ValueError, IndexError) as e:
                    raise b.err(f"cannot read {message}: {e}", lp.name) from None
        if message and not params and _has_message(lp, message):   # a message the schema knows
            from google.protobuf import text_format
            params = parse_message(text_format.MessageToString(getattr(lp, message)))
        if attrs_fn is None:
            return op, params, {}, 1
        try:
            attrs = attrs_fn(params, lp.name)
        except MigratorError:
            raise
        except Exception as e:  # noqa: BLE001 - the plugin's code
            raise MigratorError(f"the plugin {path} cannot read the layer: "
                                f"{type(e).__name__}: {e}", file=b.file, layer=lp.name) from None
        return op, dict(attrs), {}, 1
    return handler


# ------------------------------------------------------------------------------------
def load_plugin(path) -> Plugin:
    """Run the plugin file ``path`` and its ``register(api)``.  THIS RUNS THE USER'S CODE.
    Loading a file already loaded does nothing.  Raises a one-line MigratorError naming the
    file for a missing file, a missing ``register``, an exception inside the plugin or a name
    registered twice (nothing of a failed plugin stays registered)."""
    path = os.path.abspath(os.fspath(path))
    if path in LOADED:
        return LOADED[path]
    if not os.path.isfile(path):
        raise _fail(path, "file not found")
    modname = "migrator_plugin_" + hashlib.sha1(path.encode()).hexdigest()[:12]
    plugin = Plugin(path)
    try:
        spec = importlib.util.spec_from_file_location(modname, path)
        if spec is None or spec.loader is None:
            raise _fail(path, "not a Python file")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[modname] = mod
        spec.loader.exec_module(mod)
        reg = getattr(mod, "register", None)
        if not callable(reg):
            raise _fail(path, "the file defines no function register(api)")
        reg(PluginAPI(plugin))
    except MigratorError:
        _undo(plugin)
        sys.modules.pop(modname, None)
        raise
    except BaseException as e:   # the plugin's code, whatever it raises
        _undo(plugin)
        sys.modules.pop(modname, None)
        if isinstance(e, KeyboardInterrupt):
            raise
        where = ""
        tb = e.__traceback__
        while tb is not None:
            if os.path.abspath(tb.tb_frame.f_code.co_filename) == path:
                where = f" at line {tb.tb_lineno}"
            tb = tb.tb_next
        msg = " ".join(str(e).split())
        raise _fail(path, f"the plugin failed{where}: {type(e).__name__}"
                    + (f": {msg}" if msg else "")) from None
    if not plugin.ops:
        raise _fail(path, "register(api) added no layer type")
    LOADED[path] = plugin
    return plugin


def _drop(reg, name: str) -> None:
    if isinstance(reg, set):
        reg.discard(name)
    elif name in reg:
        if hasattr(reg, "remove"):
            reg.remove(name)
        else:
            del reg[name]


def _undo(plugin: Plugin) -> None:
    for reg, name in reversed(plugin.added):
        _drop(reg, name)
    plugin.added.clear()


def unload_plugin(path) -> None:
    """Take a loaded plugin's registrations out again (tests; the GUI when a plugin is
    removed from its settings)."""
    path = os.path.abspath(os.fspath(path))
    plugin = LOADED.pop(path, None)
    if plugin is not None:
        _undo(plugin)


def source_types(framework: str) -> dict[str, tuple[str, str]]:
    """The source layer types the loaded plugins import (``framework``: 'caffe'; plugins add no
    Lasagne classes yet): {type: (op, plugin path)} -- what ``migrator layers --plugin`` lists."""
    out: dict[str, tuple[str, str]] = {}
    if framework == "caffe":
        for p in LOADED.values():
            for t, op in p.caffe_types.items():
                out[t] = (op, p.path)
    return out


def load_plugins(paths) -> list[Plugin]:
    """:func:`load_plugin` for each path, in order."""
    return [load_plugin(p) for p in paths or ()]


__all__ = ["LOADED", "Plugin", "PluginAPI", "load_plugin", "load_plugins", "parse_message",
           "source_types", "unload_plugin"]
