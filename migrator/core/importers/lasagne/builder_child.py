"""Child-process entry: run a Lasagne builder script and describe the network as JSON.

Run by path as ``python .../importers/lasagne/builder_child.py ...`` (it only
needs the standard library, plus numpy for the recorder), so it also runs under a legacy
interpreter with real Lasagne.  The builder script is user code: it runs here, never in the
Migrator process.  Unless ``--impl real`` is given, Migrator's recording stand-ins for
``lasagne`` and ``theano`` (``recorder/``) are put first on ``sys.path``
(``--impl auto`` uses a real Lasagne when one imports).

The description goes to the file named by ``--out`` (never stdout: user code may print).
Its layout::

    {"ok": true, "impl": "recorder"|"real", "output": name, "warnings": [...],
     "layers": [{"name", "user_name", "dict_key", "class", "module", "known", "custom_output",
                 "inputs": [names], "input_shape_direct": shape|None, "output_shape": shape,
                 "attrs": {...}, "params": [{"name", "full_name", "shape", "tags", "index",
                 "attr"}]}],
     "params": [[layer name, param name, shape], ...]}      # get_all_params order
    {"ok": false, "error": {"kind", "message", "type", "line", "source"}}

Layer names: the layer's ``name=`` if given; else the key under which the builder's
returned dict holds the layer; else ``<ClassName>_<k>`` with k counting that class's
unnamed layers from 1 in get_all_layers order.  A name already taken gets ``_2``, ``_3``...
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import linecache
import os
import runpy
import sys
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
RECORDER_DIR = os.path.join(HERE, "recorder")

#: attributes holding sub-layers whose parameters the layer's get_params adds
#: (CustomRecurrentLayer): described inline, parameters named '<attr>.<param>'
SUBLAYER_ATTRS = ("input_to_hidden", "hidden_to_hidden")
SKIP_ATTRS = {"params", "input_layer", "input_layers", "input_shape", "input_shapes", "name",
              "get_output_kwargs", "input_var", "convolution"}


class BuilderFailed(Exception):
    def __init__(self, kind, message, exc=None, line=None, source=None):
        super().__init__(message)
        self.info = {"kind": kind, "message": message,
                     "type": type(exc).__name__ if exc is not None else None,
                     "line": line, "source": source}


# --------------------------------------------------------------------------------------
def _choose_impl(impl: str) -> str:
    if impl in ("auto", "real"):
        if importlib.util.find_spec("lasagne") is not None:
            try:
                import lasagne
                import lasagne.layers
                if not getattr(lasagne, "MIGRATOR_RECORDER", False):
                    return "real"
            except Exception as e:  # noqa: BLE001 - a broken real install: fall back to the recorder
                if impl == "real":
                    raise BuilderFailed("impl", f"real Lasagne does not import: {e}", e)
                for k in [k for k in sys.modules if k.split(".")[0] in ("lasagne", "theano")]:
                    del sys.modules[k]
        elif impl == "real":
            raise BuilderFailed("impl", "real Lasagne is not installed in this interpreter")
    sys.path.insert(0, RECORDER_DIR)
    import lasagne
    import lasagne.layers
    return "recorder"


def _script_frame(tb, script):
    """(line, source) of the innermost traceback frame inside the builder script."""
    best = None
    for fr in traceback.extract_tb(tb):
        if os.path.realpath(fr.filename) == script:
            best = fr
    if best is None:
        return None, None
    return best.lineno, (best.line or linecache.getline(best.filename, best.lineno)).strip()


def _run_builder(script: str, function: str):
    sys.argv = [script]
    sys.path.insert(0, os.path.dirname(script))
    try:
        with open(script, "rb") as f:
            source = f.read()
        compile(source, script, "exec")
    except SyntaxError as e:
        raise BuilderFailed("syntax", f"syntax error: {e.msg}", e, e.lineno,
                            (e.text or "").strip())
    except OSError as e:
        raise BuilderFailed("unreadable", f"cannot read the builder script: {e.strerror or e}", e)
    try:
        glb = runpy.run_path(script, run_name="__migrator_builder__")
    except BaseException as e:  # noqa: BLE001 - user code
        line, src = _script_frame(e.__traceback__, script)
        raise BuilderFailed("exception", f"{type(e).__name__}: {e}", e, line, src)
    fn = glb.get(function)
    if fn is None or not callable(fn):
        funcs = sorted(k for k, v in glb.items()
                       if callable(v) and getattr(v, "__module__", None) == "__migrator_builder__"
                       and not isinstance(v, type))
        raise BuilderFailed("missing_function",
                            f"the script defines no function '{function}'"
                            + (f" (functions: {', '.join(funcs)})" if funcs else ""))
    try:
        return fn()
    except BaseException as e:  # noqa: BLE001 - user code
        line, src = _script_frame(e.__traceback__, script)
        raise BuilderFailed("exception", f"{type(e).__name__}: {e}", e, line, src)


# --------------------------------------------------------------------------------------
def _is_layer(obj) -> bool:
    return (isinstance(getattr(type(obj), "output_shape", None), property)
            and isinstance(getattr(obj, "__dict__", {}).get("params"), dict))


def _inputs_of(layer):
    if hasattr(layer, "input_layers"):
        return list(layer.input_layers)
    return [getattr(layer, "input_layer", None)]


def _pick_output(ret, output_layer, warnings):
    """-> (output layer, {id(layer): dict key})."""
    keys = {}
    if _is_layer(ret):
        if output_layer:
            warnings.append(f"output_layer '{output_layer}' ignored: the builder returned one layer")
        return ret, keys
    if isinstance(ret, dict):
        items = [(str(k), v) for k, v in ret.items() if _is_layer(v)]
    elif isinstance(ret, (list, tuple)):
        items = [(str(i), v) for i, v in enumerate(ret) if _is_layer(v)]
    else:
        raise BuilderFailed("bad_return", "the builder function returned "
                            f"{type(ret).__name__}, not a Lasagne layer or a dict of layers")
    if not items:
        raise BuilderFailed("bad_return", "the builder function returned no Lasagne layer")
    if isinstance(ret, dict):   # dict keys name unnamed layers (Recipes' net['conv1'])
        for k, v in items:
            keys.setdefault(id(v), k)
    bykey = dict(items)
    if output_layer:
        if output_layer not in bykey:
            raise BuilderFailed("bad_output", f"no layer under the key '{output_layer}' "
                                f"(keys: {', '.join(k for k, _ in items)})")
        return bykey[output_layer], keys
    for k in ("prob", "output", "out"):
        if k in bykey:
            warnings.append(f"output layer: the builder returned {len(items)} layers; "
                            f"using the one under the key '{k}' (choose another with output_layer)")
            return bykey[k], keys
    # the layers no other returned layer consumes (walk everything below the returned layers)
    consumed = set()
    stack, seen = [v for _, v in items], set()
    while stack:
        lyr = stack.pop()
        if id(lyr) in seen:
            continue
        seen.add(id(lyr))
        for i in _inputs_of(lyr):
            if i is not None:
                consumed.add(id(i))
                stack.append(i)
    sinks = [(k, v) for k, v in items if id(v) not in consumed]
    k, v = sinks[-1] if sinks else items[-1]
    if len(sinks) > 1:   # ambiguous: never pick one silently
        raise BuilderFailed("bad_output", f"the builder returned {len(items)} layers and "
                            f"{len(sinks)} of them feed no other layer "
                            f"({', '.join(repr(s) for s, _ in sinks)}): choose the output "
                            "layer by its key (CLI: --output-layer KEY)")
    else:
        warnings.append(f"output layer: using '{k}', the returned layer that feeds no other")
    return v, keys


def _jsonable(v, names, depth=0):
    """Plain JSON for an attribute value, or raise TypeError."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float(v)
    tname = type(v).__module__ + "." + type(v).__name__
    if tname.startswith("numpy."):
        import numpy as np
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, np.ndarray) and v.size <= 64:
            return {"__array__": v.tolist(), "shape": list(v.shape)}
    if depth > 4:
        raise TypeError
    if isinstance(v, (list, tuple)):
        return [_jsonable(x, names, depth + 1) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x, names, depth + 1) for k, x in v.items()}
    if isinstance(v, slice):
        return {"__slice__": [_jsonable(v.start, names), _jsonable(v.stop, names),
                              _jsonable(v.step, names)]}
    if id(v) in names:
        return {"__layer__": names[id(v)]}
    if callable(v):
        return _describe_callable(v)
    raise TypeError


def _describe_callable(f):
    d = {"__callable__": getattr(f, "_sym_name", None) or getattr(f, "__name__", None)
         or type(f).__name__,
         "module": getattr(f, "__module__", None) or type(f).__module__}
    if not hasattr(f, "__name__") or type(f).__name__ in ("LeakyRectify", "ScaledTanH",
                                                          "ScaledTanh", "SELU"):
        d["class"] = type(f).__name__
        for k, x in vars(f).items() if hasattr(f, "__dict__") else []:
            if isinstance(x, (int, float)) and not isinstance(x, bool):
                d[k] = float(x)
    if d["__callable__"] and not isinstance(d["__callable__"], str):
        d["__callable__"] = str(d["__callable__"])
    if not isinstance(d.get("__callable__"), str) or d["__callable__"] in ("Elemwise", "function"):
        d["__callable__"] = str(f)
    return d


def _sub_param_attr(sub, p):
    """The attribute name under which a sub-layer keeps parameter ``p`` ('W', 'b')."""
    for k, v in vars(sub).items():
        if v is p:
            return k
    return (getattr(p, "name", None) or "param").rsplit(".", 1)[-1]


def _sub_tags(sub, p):
    for lyr in _all_below(sub):
        if p in getattr(lyr, "params", {}):
            return lyr.params[p]
    return set()


def _all_below(layer):
    import lasagne.layers as LL
    return LL.get_all_layers(layer)


def _describe_sublayer(sub, names):
    """A sub-layer that is not part of the network graph (CustomRecurrentLayer's
    input_to_hidden / hidden_to_hidden): class, settings, parameter names and shapes."""
    attrs = {}
    for k, v in vars(sub).items():
        if k in SKIP_ATTRS or k.startswith("__") or type(v).__name__.endswith("SharedVariable"):
            continue
        if _is_layer(v):
            continue
        try:
            attrs[k] = _jsonable(v, names)
        except TypeError:
            attrs[k] = {"__repr__": repr(v)[:120]}
    below = [type(x).__name__ for x in _all_below(sub)]
    return {"__sublayer__": type(sub).__name__, "layers": below, "attrs": attrs,
            "params": [_sub_param_attr(sub, p) for p in sub.params],
            "input_shape": list(sub.input_shape) if getattr(sub, "input_shape", None) else None,
            "output_shape": list(sub.output_shape)}


def _param_shape(p):
    try:
        return [int(s) for s in p.get_value(borrow=True).shape]
    except Exception:  # noqa: BLE001
        return None


def describe(ret, output_layer=None, impl="recorder", known_classes=frozenset()):
    import lasagne.layers as LL
    warnings = []
    out, keys = _pick_output(ret, output_layer, warnings)
    layers = LL.get_all_layers(out)
    names, taken, counters = {}, set(), {}
    for lyr in layers:   # explicit names first so defaults never steal them
        if getattr(lyr, "name", None):
            base = str(lyr.name)
            nm, i = base, 1
            while nm in taken:
                i += 1
                nm = f"{base}_{i}"
            if nm != base:
                warnings.append(f"two layers are named '{base}': the later one is called '{nm}'")
            names[id(lyr)] = nm
            taken.add(nm)
    for lyr in layers:
        if id(lyr) in names:
            continue
        base = keys.get(id(lyr))
        if base is None:
            cls = type(lyr).__name__
            counters[cls] = counters.get(cls, 0) + 1
            base = f"{cls}_{counters[cls]}"
        nm, i = base, 1
        while nm in taken:
            i += 1
            nm = f"{base}_{i}"
        names[id(lyr)] = nm
        taken.add(nm)

    all_params = LL.get_all_params(out)
    pindex = {id(p): i for i, p in enumerate(all_params)}
    powner = {}
    descs = []
    user_names = {str(lyr.name) for lyr in layers if getattr(lyr, "name", None)}
    for lyr in layers:
        cls = type(lyr)
        known = None
        custom_output = False
        for c in cls.__mro__:
            if c.__module__.split(".")[0] == "lasagne" and c.__name__ in known_classes:
                known = c.__name__
                break
            if "get_output_for" in c.__dict__:
                custom_output = True
        name = names[id(lyr)]
        attr_of = {}
        attrs = {}
        for k, v in vars(lyr).items():
            if k in SKIP_ATTRS or k.startswith("__"):
                continue
            if id(v) in pindex or type(v).__name__.endswith("SharedVariable"):
                attr_of[id(v)] = k
                continue
            if _is_layer(v):
                if k in SUBLAYER_ATTRS and id(v) not in names:
                    attrs[k] = _describe_sublayer(v, names)
                    continue
                attrs[k] = {"__layer__": names.get(id(v), "?")}
                continue
            try:
                attrs[k.lstrip("_") if k in ("_output_shape",) else k] = _jsonable(v, names)
            except TypeError:
                attrs[k] = {"__repr__": repr(v)[:120]}
        params = []
        lname = getattr(lyr, "name", None)
        for p, tags in lyr.params.items():
            full = getattr(p, "name", None) or ""
            base = full
            if lname and full.startswith(f"{lname}."):
                base = full[len(lname) + 1:]
            elif "." in full and full.rsplit(".", 1)[0] in user_names:   # shared from another layer
                base = full.rsplit(".", 1)[1]
            idx = pindex.get(id(p))
            params.append({"name": base or attr_of.get(id(p)) or f"param{len(params)}",
                           "full_name": full, "shape": _param_shape(p),
                           "tags": sorted(tags), "index": idx, "attr": attr_of.get(id(p))})
            if idx is not None:
                powner.setdefault(idx, (name, params[-1]["name"]))
        for sub_attr in SUBLAYER_ATTRS:
            sub = getattr(lyr, sub_attr, None)
            if sub is None or not _is_layer(sub) or id(sub) in names:
                continue
            for sp in LL.get_all_params(sub):
                idx = pindex.get(id(sp))
                pname = f"{sub_attr}.{_sub_param_attr(sub, sp)}"
                params.append({"name": pname, "full_name": getattr(sp, "name", None) or "",
                               "shape": _param_shape(sp), "tags": sorted(_sub_tags(sub, sp)),
                               "index": idx, "attr": None})
                if idx is not None:
                    powner.setdefault(idx, (name, pname))
        inputs = [names[id(i)] for i in _inputs_of(lyr) if i is not None]
        direct = None
        if type(lyr).__name__ != "InputLayer" and known != "InputLayer":
            if hasattr(lyr, "input_layers"):
                if any(i is None for i in lyr.input_layers):
                    direct = [list(s) for s in lyr.input_shapes]
            elif getattr(lyr, "input_layer", None) is None:
                direct = list(lyr.input_shape)
        try:
            oshape = [int(d) if type(d).__module__ == "numpy" else d   # 0.1: np.prod sizes
                      for d in lyr.output_shape]
        except Exception as e:  # noqa: BLE001
            raise BuilderFailed("shape", f"layer '{name}': cannot compute its output shape: "
                                f"{type(e).__name__}: {e}", e)
        descs.append({"name": name, "user_name": lname, "dict_key": keys.get(id(lyr)),
                      "class": cls.__name__, "module": cls.__module__, "known": known,
                      "custom_output": custom_output, "inputs": inputs,
                      "input_shape_direct": direct, "output_shape": oshape,
                      "attrs": attrs, "params": params})
    plist = []
    for i, p in enumerate(all_params):
        owner = powner.get(i, ("?", getattr(p, "name", None) or f"param{i}"))
        plist.append([owner[0], owner[1], _param_shape(p)])
    import lasagne
    return {"ok": True, "impl": impl, "lasagne_version": str(getattr(lasagne, "__version__", "")),
            "output": names[id(out)], "warnings": warnings,
            "layers": descs, "params": plist}


def _describe_pickle(path, output_layer, known, out):
    """A whole pickled network (see network_pickle.py): describe it like a builder's return
    value and write its parameter values, in get_all_params order, to ``out + '.npz'``."""
    import importlib.util
    _choose_impl("recorder")
    spec = importlib.util.spec_from_file_location("migrator_network_pickle",
                                                  os.path.join(HERE, "network_pickle.py"))
    NP = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(NP)
    import pickle
    import zlib
    try:
        top = NP.load(path)
    except NP.Refused as e:
        raise BuilderFailed("refused", f"refusing to load this pickle: it asks for {e.what}, "
                            "which is not part of a Lasagne network (only Lasagne layers, "
                            "nonlinearities and initializers, Theano shared variables and numpy "
                            "arrays are accepted; nothing named by the file is imported or run)", e)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, UnicodeDecodeError, MemoryError, OSError, RecursionError, OverflowError,
            zlib.error) as e:
        text = " ".join(str(e).split())[:200] or type(e).__name__
        raise BuilderFailed("unreadable", f"not a readable network pickle: {text}", e)
    try:
        ret, what, warnings = NP.network_of(top)
    except ValueError as e:
        raise BuilderFailed("bad_return", str(e), e)
    import lasagne.layers as LL
    out_layer, _ = _pick_output(ret, output_layer, [])
    version = NP.fill_missing_attributes(out_layer)
    result = describe(ret, output_layer, "pickle", known)
    result["lasagne_version"] = version
    result["pickle_holds"] = what
    said = (f"network read from the pickle ({what}) with no builder script; its layers look "
            f"like Lasagne {'0.1' if version == '0.1' else '0.2 or later'}")
    result["warnings"] = [*warnings, *result["warnings"], said]
    import numpy as np
    values = [np.asarray(p.get_value(borrow=True)) for p in LL.get_all_params(out_layer)]
    with open(out + ".npz.part", "wb") as f:
        np.savez(f, *values)
    os.replace(out + ".npz.part", out + ".npz")
    return result


def _die_with_parent() -> None:
    """Never outlive Migrator: on Linux the kernel SIGKILLs this process when its parent
    dies (``PR_SET_PDEATHSIG``, even on SIGKILL of the parent); elsewhere a watchdog thread
    polls the parent pid.  A parent already gone before this ran means exit now."""
    want = os.environ.get("MIGRATOR_PARENT_PID")
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)   # PR_SET_PDEATHSIG = 1
        except Exception:  # noqa: BLE001, S110 - best effort; the watchdog below still runs
            pass
    if not want or not want.isdigit():
        return
    if os.getppid() != int(want):
        os._exit(3)

    def watch():
        import time
        while True:
            time.sleep(0.5)
            if os.getppid() != int(want):
                os._exit(3)
    import threading
    threading.Thread(target=watch, name="migrator-parent-watch", daemon=True).start()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--builder", default="")
    ap.add_argument("--pickle", default="", help="a whole pickled network instead of a builder "
                    "(read by network_pickle.py's allow-list unpickler, with the recorder)")
    ap.add_argument("--function", default="build_model")
    ap.add_argument("--output-layer", default="")
    ap.add_argument("--impl", default="recorder", choices=("recorder", "real", "auto"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--known", default="", help="comma-separated names of the lasagne.layers classes "
                    "Migrator converts (the parent's registry of converters)")
    a = ap.parse_args(argv)
    _die_with_parent()
    # run by path, sys.path[0] is this directory, whose modules (the importer's) must not
    # shadow what the builder script imports
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.getcwd()) != HERE]
    script = os.path.realpath(a.builder or a.pickle)
    try:
        known = frozenset(k for k in a.known.split(",") if k)
        if a.pickle:
            result = _describe_pickle(script, a.output_layer or None, known, a.out)
        else:
            impl = _choose_impl(a.impl)
            ret = _run_builder(script, a.function)
            result = describe(ret, a.output_layer or None, impl, known)
    except BuilderFailed as e:
        result = {"ok": False, "error": e.info}
    except Exception as e:  # noqa: BLE001 - a recorder bug or odd user object
        line, src = _script_frame(e.__traceback__, script)
        result = {"ok": False, "error": {"kind": "internal", "message": f"{type(e).__name__}: {e}",
                                         "type": type(e).__name__, "line": line, "source": src,
                                         "traceback": traceback.format_exc()[-2000:]}}
    tmp = a.out + ".part"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f)
    os.replace(tmp, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
