"""Lasagne/Theano importer: ``builder.py`` + ``params.{pkl,npz}`` -> IR :class:`Graph`.

A Lasagne model file holds *no architecture*: the network is rebuilt by the user's builder
function and the flat parameter list is zipped onto ``get_all_params(output)``.

1. The builder script (user code) runs in a **child process**
   (:mod:`migrator.core.importers.lasagne_child`) with Migrator's recording stand-ins for
   ``lasagne`` and ``theano`` first on ``sys.path``.  The child calls the builder function,
   walks ``get_all_layers(output)`` and writes a JSON description (layers, constructor
   settings, output shapes, params in ``add_param`` order) to a temp file.  No pickle.
2. The parent loads the parameter file itself -- pickles only through the restricted
   unpickler of :mod:`.safe_pickle` -- and zips the arrays onto the params in
   ``get_all_params`` order (a param shared by two layers appears once), reporting count
   and shape mismatches by layer and param name.
3. Every Lasagne layer becomes one canonical node (``ir.OPS``).

Layer names: ``name=`` when given; else the key under which a returned dict holds the
layer (Lasagne Recipes' ``net['conv1']``); else ``<ClassName>_<k>`` counting that class's
unnamed layers from 1 in ``get_all_layers`` order.  Duplicates get ``_2``, ``_3``...
A layer built on a shape tuple instead of an InputLayer gets an ``Input`` node
``<name>_input``.

Output layer: the builder may return a layer or a dict (or list) of layers; with a dict
``output_layer`` names the key, else the key ``prob``/``output``/``out`` is used, else the
returned layer that feeds no other (the choice is stated in ``graph.warnings``); when
several returned layers feed no other, a MigratorError lists them (never a silent pick).

``graph.meta``: ``builder``, ``builder_function``, ``params_file``, ``output_key`` (the dict
key of the output layer, when the builder returned a dict), ``param_order``
(``[(node, param key)]`` in get_all_params order), ``lasagne_impl``, ``output_layer``,
``lasagne_description`` (the child's JSON: Lasagne-level classes and constructor settings),
``lasagne_param_values`` (the arrays exactly as the file held them, in get_all_params order --
e.g. NINLayer's W before its 1x1-conv reshape), ``params_extra`` (every other entry of a dict pickle,
e.g. ``'synset words'``, ``'mean value'``), ``mean`` (the mean value/image when present,
used for image preprocessing) and ``labels`` (synset words as str).
"""
from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import MigratorError
from ..ir import Graph, Node, Param, Provenance
from . import lasagne_recurrent

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lasagne_child.py")

Progress = Callable[[float, str], None] | None

_CONV = {"Conv2DLayer", "Conv2DDNNLayer", "Conv2DMMLayer", "Conv2DCCLayer"}
_FLIP_DEFAULT = {"Conv2DLayer": True, "Conv2DDNNLayer": False, "Conv2DMMLayer": False,
                 "Conv2DCCLayer": False}
_POOL = {"Pool2DLayer", "MaxPool2DLayer", "Pool2DDNNLayer", "MaxPool2DDNNLayer",
         "MaxPool2DCCLayer"}
_VALUE_KEYS = ("param values", "param_values", "values", "params", "parameters", "weights")
_MEAN_KEYS = ("mean value", "mean_value", "mean image", "mean_image", "mean", "MEAN_IMAGE")
_LABEL_KEYS = ("synset words", "synset_words", "labels", "classes", "CLASSES")


class _Unsupported(Exception):
    """The layer cannot be expressed canonically: it becomes a ``Custom`` node."""


# ======================================================================================
# public API
# ======================================================================================
def load_lasagne(builder_path, params_path, *, builder_function: str = "build_model",
                 output_layer: str | None = None, progress: Progress = None,
                 timeout: float = 120, impl: str = "recorder",
                 python: str | None = None, cancel: Callable[[], bool] | None = None) -> Graph:
    """Rebuild a Lasagne network from its builder script and load its parameter file.

    ``impl``: 'recorder' (Migrator's stand-ins, default), 'auto' (a real Lasagne when the
    child interpreter imports one) or 'real'.  ``python``: the child interpreter
    (default: this one).  Raises :class:`MigratorError` naming the file (and the layer).
    """
    builder_path, params_path = os.fspath(builder_path), os.fspath(params_path)
    prog = progress or (lambda f, m: None)
    t0 = time.perf_counter()
    prog(0.0, f"running the builder script {os.path.basename(builder_path)}")
    desc = describe_builder(builder_path, builder_function=builder_function,
                            output_layer=output_layer, timeout=timeout, impl=impl, python=python,
                            progress=progress, cancel=cancel)
    t1 = time.perf_counter()
    prog(0.5, f"reading parameters from {os.path.basename(params_path)}")
    values, extra, pwarn = load_param_values(params_path, expected=desc["params"])
    prog(0.8, "building the graph")
    g = graph_from_description(desc, values, builder_path, params_path)
    g.warnings.extend(pwarn)
    g.meta["builder"] = os.path.abspath(builder_path)
    g.meta["builder_function"] = builder_function
    g.meta["params_file"] = os.path.abspath(params_path)
    out_desc = next((L for L in desc["layers"] if L["name"] == desc.get("output")), None)
    g.meta["output_key"] = out_desc.get("dict_key") if out_desc else None
    _attach_extras(g, extra)
    g.meta["timings"] = {"builder_s": t1 - t0, "total_s": time.perf_counter() - t0}
    prog(1.0, f"{len(g.nodes)} layers")
    return g


# ---- the builder child process ------------------------------------------------------
_LIVE: set = set()                  # running builder children (subprocess.Popen)
_LIVE_LOCK = threading.Lock()
_ABORT = threading.Event()          # set by kill_builder_processes: waits stop at once


def _kill_child(p: subprocess.Popen) -> None:
    """SIGKILL the child's whole process group (its own session), then the child itself."""
    if os.name == "posix":
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass
    try:
        p.kill()
    except OSError:
        pass


def kill_builder_processes() -> int:
    """Kill every builder child process still running; returns how many.  Called by the
    CLI's SIGTERM/SIGHUP/SIGINT handling and at interpreter exit; safe from any thread."""
    _ABORT.set()
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for p in procs:
        _kill_child(p)
    return len(procs)


atexit.register(kill_builder_processes)


def _run_child(cmd: list[str], cwd: str, env: dict, timeout: float, builder_path: str,
               progress: Progress, cancel) -> tuple[int, bytes]:
    """Run the builder child -> (exit code, last 64 KiB of its stderr).  stdout is
    discarded (user code may print), stderr goes to an unnamed temp file (no pipe to fill)."""
    env = dict(env)
    env["MIGRATOR_PARENT_PID"] = str(os.getpid())
    kw: dict[str, Any] = {}
    if os.name == "posix":
        kw["start_new_session"] = True          # its own process group: killpg reaches all
    else:  # pragma: no cover - Windows
        kw["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
    _ABORT.clear()
    with tempfile.TemporaryFile() as errf:
        try:
            p = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=errf, **kw)
        except OSError as e:
            raise MigratorError(f"cannot start the builder process: {e}", file=builder_path) from None
        with _LIVE_LOCK:
            _LIVE.add(p)
        t0 = time.monotonic()
        try:
            while True:
                try:
                    rc = p.wait(timeout=0.05)
                    break
                except subprocess.TimeoutExpired:
                    pass
                waited = time.monotonic() - t0
                if waited > timeout:
                    raise MigratorError(f"the builder script did not finish within {timeout:g} s "
                                        "(stopped)", file=builder_path)
                if _ABORT.is_set() or (cancel is not None and cancel()):
                    from ..errors import Cancelled
                    raise Cancelled()
                if progress is not None and waited > 0.5:
                    # a GUI progress callback raises Cancelled when the user cancels
                    progress(min(0.45, 0.45 * waited / max(timeout, 1e-9)),
                             f"running the builder script ({waited:.0f} s)")
        except BaseException:
            _kill_child(p)
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:  # pragma: no cover - unkillable (D state)
                pass
            raise
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(p)
        if os.name == "posix":   # grandchildren the builder may have started
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError, OSError):
                pass
        size = errf.seek(0, os.SEEK_END)
        errf.seek(max(0, size - 65536))
        return rc, errf.read()


def describe_builder(builder_path, *, builder_function: str = "build_model",
                     output_layer: str | None = None, timeout: float = 120,
                     impl: str = "recorder", python: str | None = None,
                     progress: Progress = None, cancel: Callable[[], bool] | None = None) -> dict:
    """Run the builder in a child process; return its JSON description (``ok`` True).

    The child runs in its own process group and dies with Migrator: on the time limit, on
    ``cancel()`` returning True, on any exception here (a GUI progress callback raising
    :class:`Cancelled`, KeyboardInterrupt), on :func:`kill_builder_processes` (the CLI's
    signal handlers) and, on Linux, when the parent dies even by SIGKILL (the child sets
    ``PR_SET_PDEATHSIG``)."""
    builder_path = os.path.abspath(os.fspath(builder_path))
    if not os.path.isfile(builder_path):
        raise MigratorError("builder script not found", file=builder_path)
    if not os.access(builder_path, os.R_OK):
        raise MigratorError("builder script is not readable", file=builder_path)
    from ..tempfiles import private_dir_prefix  # sweeps dirs of killed runs
    with tempfile.TemporaryDirectory(prefix=private_dir_prefix()) as td:
        out = os.path.join(td, "description.json")
        cmd = [python or sys.executable, CHILD, "--builder", builder_path,
               "--function", builder_function, "--output-layer", output_layer or "",
               "--impl", impl, "--out", out]
        env = dict(os.environ)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.setdefault("PYTHONIOENCODING", "utf-8")
        rc, stderr = _run_child(cmd, os.path.dirname(builder_path), env, timeout, builder_path,
                                progress, cancel)
        if not os.path.exists(out):
            tail = [ln for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
            raise MigratorError(f"the builder process ended (exit code {rc}) without "
                                f"describing the network: {tail[-1] if tail else 'no message'}",
                                file=builder_path)
        try:
            with open(out, encoding="utf-8") as f:
                desc = json.load(f)
        except (OSError, ValueError) as e:
            raise MigratorError(f"the builder process wrote an unreadable description: {e}",
                                file=builder_path) from None
    if not desc.get("ok"):
        err = desc.get("error", {})
        kind, msg = err.get("kind"), err.get("message", "unknown error")
        where = ""
        if err.get("line"):
            where = f" at line {err['line']}" + (f" ({err['source']})" if err.get("source") else "")
        if kind == "syntax":
            text = f"{msg}{where}"
        elif kind == "exception":
            text = f"the builder script failed{where}: {msg}"
        elif kind == "internal":
            text = f"cannot record the network{where}: {msg}"
        else:
            text = msg
        raise MigratorError(text, file=builder_path)
    return desc


# ======================================================================================
# parameter files
# ======================================================================================
def load_param_values(params_path, expected: list | None = None
                      ) -> tuple[list[np.ndarray], dict, list[str]]:
    """Read a Lasagne parameter file -> (flat list of arrays, extra entries, warnings).

    Accepted: a pickle holding a list, or a dict whose ``'param values'`` / ``'values'``
    (...) entry is the list (other entries returned as extras); ``.npz`` written by
    ``np.savez(f, *values)`` (``arr_0``, ``arr_1``, ... in numeric order).  Pickles go
    through the restricted unpickler; gzip-compressed pickles are accepted.  ``expected``
    (the builder's ``desc['params']``) bounds what is read: see :mod:`.lasagne_params`.
    """
    from .lasagne_params import load_param_values as _load
    return _load(params_path, expected)


def _attach_extras(g: Graph, extra: dict) -> None:
    if not extra:
        return
    g.meta["params_extra"] = extra
    from .lasagne_params import nested_to_array
    for k in _MEAN_KEYS:
        if k in extra and extra[k] is not None:
            v = extra[k]
            try:   # bounded: a memo-shared nested list is never expanded
                if isinstance(v, (list, tuple)):
                    v = nested_to_array(v, None, what=f"the entry {k!r}", file="",
                                        layer=None, max_nodes=1 << 24)
                g.meta["mean"] = np.asarray(v, dtype=np.float32)
                g.meta["mean_key"] = k
            except (TypeError, ValueError, MigratorError):
                g.warnings.append(f"the parameter file's {k!r} entry is not an array of numbers; "
                                  "not used as the mean")
            break
    for k in _LABEL_KEYS:
        v = extra.get(k)
        if isinstance(v, (list, tuple, np.ndarray)) and len(v) <= 1_000_000 and all(
                isinstance(x, (str, bytes, np.str_, np.bytes_)) for x in v):
            g.meta["labels"] = [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)
                                for x in v]
            break


# ======================================================================================
# description -> graph
# ======================================================================================
def graph_from_description(desc: dict, values: list[np.ndarray], builder_path: str,
                           params_path: str | None) -> Graph:
    """Turn the child's description plus the flat parameter list into a Graph."""
    builder_path = os.fspath(builder_path)
    params = desc["params"]
    _check_params(params, values, params_path)
    g = Graph(framework="lasagne", name=os.path.splitext(os.path.basename(builder_path))[0],
              files=[builder_path] + ([os.fspath(params_path)] if params_path else []))
    g.warnings.extend(desc.get("warnings", []))
    g.meta["lasagne_impl"] = desc.get("impl")
    g.meta["lasagne_description"] = desc
    g.meta["output_layer"] = desc.get("output")
    shapes: dict[str, tuple] = {}
    param_key: dict[int, tuple[str, str]] = {}
    owners: dict[int, str] = {}
    recognised = []
    for L in desc["layers"]:
        shapes[L["name"]] = _shape(L["output_shape"])
        inputs = list(L["inputs"])
        direct = L.get("input_shape_direct")
        if direct is not None and not inputs:
            inp = Node(name=_free_name(g, f"{L['name']}_input"), op="Input",
                       attrs={"shape": _shape(direct)},
                       provenance=Provenance(file=builder_path, layer=L["name"], type="shape tuple"))
            inp.out_shapes = [_shape(direct)]
            g.nodes.append(inp)
            shapes[inp.name] = _shape(direct)
            inputs = [inp.name]
        in_shapes = [shapes.get(i) for i in inputs]
        L.setdefault("lasagne_version", desc.get("lasagne_version"))   # recurrent semantics
        try:
            op, attrs, pmap = _canonical(L, in_shapes)
        except _Unsupported as e:
            op, attrs, pmap = _custom(L, str(e))
        if op == "BatchNorm" and attrs.get("form") == "gist":
            recognised.append(L["name"])
        node = Node(name=L["name"], op=op, inputs=inputs, attrs=attrs,
                    provenance=Provenance(file=builder_path, layer=L["name"], type=L["class"],
                                          weights_file=params_path))
        for p in L["params"]:
            idx = p["index"]
            key, transform, layout, *src = pmap.get(p["name"], (p["name"], None, ""))
            if key in node.params:
                key = f"{key}_{len(node.params)}"
            val = values[idx]
            if transform is not None:
                val = transform(val)
            node.params[key] = Param(name=key, value=val, layout=layout,
                                     source_name=src[0] if src else p["name"])
            if idx in owners:
                g.warnings.append(f"layer '{L['name']}' shares its parameter '{p['name']}' with "
                                  f"layer '{owners[idx]}'")
            else:
                owners[idx] = L["name"]
                param_key[idx] = (L["name"], key)
        node.out_shapes = [shapes[L["name"]]]
        if op == "Custom":
            g.warnings.append(f"layer '{L['name']}' ({L['class']}): {attrs.get('reason')}; "
                              "kept as a Custom layer (reported as unsupported)")
        g.nodes.append(node)
    for name in recognised:
        g.warnings.append(f"layer '{name}' recognised as the preliminary (2015 gist) batch "
                          "normalisation: (x - mean) * gamma / (std + epsilon) + beta")
    g.meta["param_order"] = [param_key[i] for i in range(len(values)) if i in param_key]
    g.meta["lasagne_param_values"] = list(values)   # as the file held them (same arrays)
    g.validate(builder_path)
    _infer_and_check(g, shapes, builder_path)
    from ..limits import check_tensor_sizes  # a forged size: refuse before allocating
    check_tensor_sizes(g, builder_path)
    return g


def _free_name(g: Graph, base: str) -> str:
    names = {n.name for n in g.nodes}
    nm, i = base, 1
    while nm in names:
        i += 1
        nm = f"{base}_{i}"
    return nm


def _check_params(params: list, values: list, params_path) -> None:
    n, m = len(params), len(values)
    if n != m:
        detail = ""
        if m < n:
            lay, pn, shp = params[m]
            detail = (f"; the first parameter without a value is layer '{lay}' param '{pn}' "
                      f"{tuple(shp or ())}")
        raise MigratorError(f"the file holds {m} parameter arrays but the network built by the "
                            f"builder has {n} parameters{detail}", file=params_path,
                            layer=params[m][0] if m < n else None)
    for i, ((lay, pn, shp), v) in enumerate(zip(params, values)):
        if shp is not None and tuple(shp) != tuple(v.shape):
            raise MigratorError(f"array {i} has shape {tuple(v.shape)} but param '{pn}' expects "
                                f"{tuple(shp)}", file=params_path, layer=lay)


def _infer_and_check(g: Graph, recorded: dict, file: str) -> None:
    """Run Migrator's shape inference and compare it with the shapes Lasagne computed."""
    try:
        g.infer_shapes(file)
    except MigratorError as e:
        g.warnings.append(f"shape inference: {e}")
    for n in g.nodes:
        want = recorded.get(n.name)
        got = n.out_shape
        if want is None:
            continue
        if got is None or len(got) != len(want) or any(
                a is not None and b is not None and a != b for a, b in zip(got, want)):
            if got is not None:
                g.warnings.append(f"layer '{n.name}': Migrator infers the output shape {got}, "
                                  f"Lasagne {want}; using Lasagne's")
            n.out_shapes = [want]


def _shape(s) -> tuple | None:
    if s is None:
        return None
    return tuple(None if d is None else int(d) for d in s)


# ---- attribute helpers ---------------------------------------------------------------
def _pair(v, what: str) -> tuple[int, int]:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (int(v), int(v))
    if isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v):
        return (int(v[0]), int(v[1]))
    raise _Unsupported(f"{what} {v!r} is not a pair of integers")


def _fn_name(d) -> str | None:
    if not isinstance(d, dict) or "__callable__" not in d:
        return None
    name = str(d["__callable__"]).replace("()", "")
    for sep in (".", " "):
        name = name.rsplit(sep, 1)[-1]
    return name


def activation_of(d) -> dict | None:
    """A Lasagne nonlinearity descriptor -> canonical activation dict (None = linear)."""
    if d is None:
        return None
    cls = d.get("class") if isinstance(d, dict) else None
    if cls == "LeakyRectify":
        a = float(d.get("leakiness", 0.01))
        return {"kind": "relu", "negative_slope": a}
    if cls in ("ScaledTanH", "ScaledTanh"):
        return {"kind": "scaled_tanh", "scale_in": float(d.get("scale_in", 1.0)),
                "scale_out": float(d.get("scale_out", 1.0))}
    name = _fn_name(d)
    table = {
        "rectify": {"kind": "relu", "negative_slope": 0.0},
        "relu": {"kind": "relu", "negative_slope": 0.0},
        "leaky_rectify": {"kind": "relu", "negative_slope": 0.01},
        "very_leaky_rectify": {"kind": "relu", "negative_slope": 1.0 / 3.0},
        "elu": {"kind": "elu", "alpha": 1.0},
        "sigmoid": {"kind": "sigmoid"},
        "tanh": {"kind": "tanh"},
        "softmax": {"kind": "softmax", "axis": 1},
        "softplus": {"kind": "softplus"},
        "linear": None,
        "identity": None,
    }
    if name in table:
        return None if table[name] is None else dict(table[name])
    raise _Unsupported(f"nonlinearity {name or d!r} has no canonical form")


def _kept_axis(axes, ndim: int, what: str) -> int:
    if axes is None:
        return 1
    axes = [int(a) % ndim for a in (axes if isinstance(axes, list) else [axes])]
    kept = [a for a in range(ndim) if a not in axes]
    if kept != [1]:
        raise _Unsupported(f"{what} over axes {axes} (only per-channel, axis 1, is supported)")
    return 1


def _ndim(in_shapes, i=0) -> int:
    s = in_shapes[i] if in_shapes else None
    if s is None:
        raise _Unsupported("input shape unknown")
    return len(s)


def _conv_pad(pad, kernel) -> tuple[int, int]:
    if pad in ("valid",):
        return (0, 0)
    if pad == "full":
        return (kernel[0] - 1, kernel[1] - 1)
    if pad == "same":
        return (kernel[0] // 2, kernel[1] // 2)
    if isinstance(pad, list):
        pad = [(0 if p == "valid" else p) for p in pad]
    return _pair(pad, "pad")


def _to_oihw_nin(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.T)[:, :, None, None]


# ---- one layer -----------------------------------------------------------------------
def _canonical(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """-> (op, attrs, {lasagne param name: (key, transform, layout[, source name])})."""
    cls, known, a = L["class"], L.get("known"), L.get("attrs", {})
    pnames = [p["name"] for p in L["params"]]
    if known is None or L.get("custom_output"):
        if "BatchNorm" in cls and sorted(pnames) == ["beta", "gamma", "mean", "std"]:
            return _gist_bn(L, in_shapes)
        raise _Unsupported("a custom layer class" if known is None else
                           f"a subclass of {known} with its own get_output_for")
    if known == "InputLayer":
        return "Input", {"shape": _shape(L["output_shape"])}, {}
    from . import lasagne_catalogue  # the rest of master's lasagne.layers (issue 14)
    got = lasagne_catalogue.canonical(L, in_shapes, _Unsupported, activation_of, _fn_name)
    if got is not None:
        return got
    if known == "TransposedConv2DLayer":
        return _transposed_conv(L, pnames, in_shapes)
    if known == "DilatedConv2DLayer":
        return _dilated_conv(L, pnames)
    if known == "Upscale2DLayer":
        if len(L["output_shape"]) != 4:
            raise _Unsupported("not a 2D upscaling")
        mode = a.get("mode", "repeat")
        if mode not in ("repeat", "dilate"):
            raise _Unsupported(f"upscale mode {mode!r}")
        return "Upscale", {"scale": _pair(a.get("scale_factor"), "scale_factor"), "mode": mode}, {}
    if known in _CONV:
        if len(L["output_shape"]) != 4:
            raise _Unsupported("not a 2D convolution")
        kernel = _pair(a.get("filter_size"), "filter_size")
        stride = _pair(a.get("stride", 1), "stride")
        pad = _conv_pad(a.get("pad", 0), kernel)
        untie = bool(a.get("untie_biases", False))
        flip = a.get("flip_filters", _FLIP_DEFAULT.get(known, True))
        attrs = {"kernel": kernel, "stride": stride, "pad": pad, "dilation": (1, 1),
                 "group": int(a.get("num_groups", 1) or 1), "bias": "b" in pnames,
                 "flip": bool(flip), "activation": activation_of(a.get("nonlinearity")),
                 "untie_biases": untie}
        return "Conv", attrs, {"W": ("weight", None, "OIHW"),
                               "b": ("bias", None, "OHW" if untie else "O")}
    if known == "DenseLayer":
        nd = _ndim(in_shapes)
        nla = int(a.get("num_leading_axes", 1))
        axis = nla if nla >= 0 else nd + nla
        return "Dense", {"num_output": int(a["num_units"]), "axis": axis, "bias": "b" in pnames,
                         "activation": activation_of(a.get("nonlinearity"))}, \
            {"W": ("weight", None, "IO"), "b": ("bias", None, "O")}
    if known == "NINLayer":
        if _ndim(in_shapes) != 4:
            raise _Unsupported("NINLayer on a non-4D input")
        untie = bool(a.get("untie_biases", False))
        attrs = {"kernel": (1, 1), "stride": (1, 1), "pad": (0, 0), "dilation": (1, 1),
                 "group": 1, "bias": "b" in pnames, "flip": False,
                 "activation": activation_of(a.get("nonlinearity")), "untie_biases": untie}
        return "Conv", attrs, {"W": ("weight", _to_oihw_nin, "OIHW"),
                               "b": ("bias", None, "OHW" if untie else "O")}
    if known in ("BatchNormLayer", "BatchNormDNNLayer"):
        nd = _ndim(in_shapes)
        axes = a.get("axes", "auto")
        if axes == "auto":
            axes = [0] + list(range(2, nd))
        axis = _kept_axis(axes, nd, "batch normalisation")
        return "BatchNorm", {"form": "lasagne", "axis": axis,
                             "epsilon": float(a.get("epsilon", 1e-4)),
                             "alpha": float(a.get("alpha", 0.1)),
                             "axes": tuple(int(x) % nd for x in axes)}, \
            {n: (n, None, "C") for n in ("beta", "gamma", "mean", "inv_std")}
    if known == "NonlinearityLayer":
        act = activation_of(a.get("nonlinearity"))
        if act is None:
            return "Identity", {}, {}
        if act["kind"] == "softmax":
            return "Softmax", {"axis": 1}, {}
        return "Activation", act, {}
    if known in _POOL:
        if len(L["output_shape"]) != 4:
            raise _Unsupported("not a 2D pooling")
        kernel = _pair(a.get("pool_size"), "pool_size")
        stride = kernel if a.get("stride") is None else _pair(a.get("stride"), "stride")
        pad = _pair(a.get("pad", 0) or 0, "pad")
        mode = a.get("mode", "max")
        ib = bool(a.get("ignore_border", True))
        if mode == "max":
            m, div = "max", None
        elif mode in ("average_inc_pad", "average_exc_pad"):
            m, div = "avg", "inc_pad" if mode == "average_inc_pad" else "exc_pad"
        else:
            raise _Unsupported(f"pooling mode {mode!r}")
        return "Pool", {"mode": m, "kernel": kernel, "stride": stride, "pad": pad,
                        "rounding": "floor" if ib else "lasagne_ceil",
                        "avg_divisor": div}, {}
    if known == "GlobalPoolLayer":
        fn = _fn_name(a.get("pool_function"))
        mode = {"mean": "avg", "max": "max"}.get(fn or "")
        if mode is None or _ndim(in_shapes) != 4:
            raise _Unsupported(f"global pooling with {fn!r}")
        return "GlobalPool", {"mode": mode, "keepdims": False}, {}
    if known in ("ElemwiseSumLayer", "ElemwiseMergeLayer"):
        if a.get("cropping") is not None:
            raise _Unsupported("cropping of merge inputs")
        if known == "ElemwiseSumLayer":
            coeffs = [float(c) for c in a.get("coeffs", [1] * len(L["inputs"]))]
            return "Eltwise", {"operation": "sum",
                               "coeffs": None if all(c == 1 for c in coeffs) else coeffs}, {}
        fn = _fn_name(a.get("merge_function"))
        op = {"add": "sum", "mul": "prod", "maximum": "max"}.get(fn or "")
        if op is None:
            raise _Unsupported(f"merge function {fn!r}")
        return "Eltwise", {"operation": op, "coeffs": None}, {}
    if known == "ConcatLayer":
        if a.get("cropping") is not None:
            raise _Unsupported("cropping of concatenated inputs")
        return "Concat", {"axis": int(a.get("axis", 1)) % _ndim(in_shapes)}, {}
    if known == "DropoutLayer":
        return "Dropout", {"ratio": float(a.get("p", 0.5))}, {}
    if known == "GaussianNoiseLayer":
        return "Identity", {}, {}
    if known == "PadLayer":
        nd, bnd = _ndim(in_shapes), int(a.get("batch_ndim", 2))
        w = a.get("width", 0)
        widths = [w] * (nd - bnd) if isinstance(w, (int, float)) else list(w)
        pads = []
        for x in widths:
            pads.append((int(x[0]), int(x[1])) if isinstance(x, list) else (int(x), int(x)))
        return "Pad", {"pad": pads, "value": float(a.get("val", 0)), "batch_ndim": bnd}, {}
    if known == "FlattenLayer":
        return "Flatten", {"axis": int(a.get("outdim", 2)) - 1, "end_axis": -1}, {}
    if known == "ReshapeLayer":
        ish = in_shapes[0] if in_shapes else None
        out = []
        for j, s in enumerate(a.get("shape", [])):
            if isinstance(s, list) and len(s) == 1 and isinstance(s[0], int):
                if s[0] == j:
                    out.append(0)
                elif ish is not None and ish[s[0]] is not None:
                    out.append(int(ish[s[0]]))
                else:
                    raise _Unsupported(f"reshape reference [{s[0]}] to an unknown dimension")
            elif isinstance(s, int):
                out.append(s)
            else:
                raise _Unsupported(f"reshape entry {s!r} is symbolic")
        return "Reshape", {"shape": out, "axis": 0, "num_axes": -1}, {}
    if known == "DimshuffleLayer":
        return "Transpose", {"pattern": [p if p == "x" else int(p) for p in a["pattern"]]}, {}
    if known == "LocalResponseNormalization2DLayer":
        alpha = float(a.get("alpha", 1e-4))
        return "LRN", {"region": "across", "size": int(a.get("n", 5)), "coeff": alpha,
                       "beta": float(a.get("beta", 0.75)), "k": float(a.get("k", 2)),
                       "source_alpha": alpha}, {}
    if known == "ScaleLayer":
        _kept_axis(a.get("shared_axes"), _ndim(in_shapes), "scaling")
        return "Scale", {"axis": 1, "num_axes": 1, "bias": False, "two_input": False}, \
            {"scales": ("scale", None, "C")}
    if known == "BiasLayer":
        if "b" not in pnames:
            return "Identity", {}, {}
        _kept_axis(a.get("shared_axes"), _ndim(in_shapes), "bias")
        return "Bias", {"axis": 1, "num_axes": 1}, {"b": ("bias", None, "C")}
    if known == "ParametricRectifierLayer":
        nd = _ndim(in_shapes)
        sa = a.get("shared_axes")
        sa = [int(x) % nd for x in (sa if isinstance(sa, list) else [sa])]
        if sorted(sa) == list(range(nd)):
            return "PReLU", {"channel_shared": True}, \
                {"alpha": ("slope", lambda v: np.reshape(v, (1,)), "C")}
        _kept_axis(sa, nd, "PReLU slopes")
        return "PReLU", {"channel_shared": False}, {"alpha": ("slope", None, "C")}
    if known == "SliceLayer":
        sl = a.get("slice")
        if isinstance(sl, int) and not isinstance(sl, bool):   # an index: the axis is dropped
            return "Slice", {"axis": int(a.get("axis", -1)) % _ndim(in_shapes), "index": sl}, {}
        if not isinstance(sl, dict) or "__slice__" not in sl:
            raise _Unsupported(f"SliceLayer with indices {sl!r}")
        start, stop, step = sl["__slice__"]
        return "Slice", {"axis": int(a.get("axis", -1)) % _ndim(in_shapes), "start": start,
                         "stop": stop, "step": step}, {}
    if known == "EmbeddingLayer" or known in lasagne_recurrent.RECURRENT:
        return lasagne_recurrent.canonical(L, in_shapes, _Unsupported, activation_of)
    if known in lasagne_recurrent.ONE_D:
        return lasagne_recurrent.canonical_1d(L, in_shapes, _Unsupported, activation_of)
    if known in lasagne_recurrent.THREE_D:
        return lasagne_recurrent.canonical_3d(L, in_shapes, _Unsupported, activation_of)
    raise _Unsupported(f"{known} has no canonical form")


def _transposed_conv(L: dict, pnames: list, in_shapes: list) -> tuple[str, dict, dict]:
    """Lasagne TransposedConv2DLayer (Deconv2DLayer): Theano's gradient of a Conv2D wrt its
    inputs with ``filter_flip = not flip_filters``, W ``(in, out, kh, kw)``, crop = the
    forward conv's pad; ``out = s*(L-1) + k - 2*crop``."""
    a = L.get("attrs", {})
    if len(L["output_shape"]) != 4:
        raise _Unsupported("not a 2D transposed convolution")
    if int(a.get("num_groups", 1) or 1) != 1:
        raise _Unsupported("grouped transposed convolution (num_groups != 1)")
    if bool(a.get("untie_biases", False)) and "b" in pnames:
        raise _Unsupported("untie_biases=True (a bias per output position) has no Keras "
                           "Conv2DTranspose equivalent")
    kernel = _pair(a.get("filter_size"), "filter_size")
    stride = _pair(a.get("stride", 1), "stride")
    crop = _conv_pad(a.get("crop", 0), kernel)
    natural = [s * (n - 1) + k - 2 * c if n is not None else None
               for n, k, s, c in zip(_spatial(in_shapes), kernel, stride, crop)]
    osz = a.get("output_size")
    if osz is not None:
        want = tuple(int(v) for v in (osz if isinstance(osz, list) else [osz, osz]))
        got = tuple(L["output_shape"][2:])
        if any(n is None for n in natural) or tuple(natural) != want or got != want:
            raise _Unsupported(f"output_size {list(want)} differs from the natural size "
                               f"s*(L-1) + k - 2*crop (the extra zero rows/cols are not mapped)")
    attrs = {"num_output": int(a["num_filters"]), "kernel": kernel, "stride": stride, "pad": crop,
             "dilation": (1, 1), "group": 1, "bias": "b" in pnames,
             "flip": not bool(a.get("flip_filters", False)),
             "activation": activation_of(a.get("nonlinearity"))}
    return "Deconv", attrs, {"W": ("weight", None, "IOHW"), "b": ("bias", None, "O")}


def _spatial(in_shapes: list) -> list:
    s = in_shapes[0] if in_shapes else None
    return list(s[2:4]) if s is not None and len(s) == 4 else [None, None]


def _to_oihw_dilated(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(w).transpose(1, 0, 2, 3))


def _dilated_conv(L: dict, pnames: list) -> tuple[str, dict, dict]:
    """Lasagne DilatedConv2DLayer: W ``(in, out, kh, kw)`` -> OIHW (``W.transpose(1, 0, 2,
    3)``), a dilated cross-correlation (flip_filters=False, pad 0, stride 1)."""
    a = L.get("attrs", {})
    if len(L["output_shape"]) != 4:
        raise _Unsupported("not a 2D dilated convolution")
    if bool(a.get("flip_filters", False)):
        raise _Unsupported("flip_filters=True (Lasagne itself refuses it)")
    pad = a.get("pad", 0)
    if pad not in (0, "valid", [0, 0]):
        raise _Unsupported(f"pad {pad!r} (Lasagne's DilatedConv2DLayer allows only 0/'valid')")
    if int(a.get("num_groups", 1) or 1) != 1:
        raise _Unsupported("grouped dilated convolution (num_groups != 1)")
    untie = bool(a.get("untie_biases", False))
    attrs = {"num_output": int(a["num_filters"]), "kernel": _pair(a.get("filter_size"), "filter_size"),
             "stride": (1, 1), "pad": (0, 0), "dilation": _pair(a.get("dilation", 1), "dilation"),
             "group": 1, "bias": "b" in pnames, "flip": False,
             "activation": activation_of(a.get("nonlinearity")), "untie_biases": untie}
    return "Conv", attrs, {"W": ("weight", _to_oihw_dilated, "OIHW",
                                 "W (in, out, kh, kw) stored; transposed to OIHW: W.transpose(1, 0, 2, 3)"),
                           "b": ("bias", None, "OHW" if untie else "O")}


def _gist_bn(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    a = L.get("attrs", {})
    nd = _ndim(in_shapes)
    axes = a.get("axes")
    if axes is None:
        axes = [0] + list(range(2, nd))
    _kept_axis(axes, nd, "gist batch normalisation")
    for p in L["params"]:
        shp = p["shape"] or []
        if len(shp) == nd and any(s != 1 for i, s in enumerate(shp) if i != 1):
            raise _Unsupported("gist batch normalisation params are not per channel")
    act = activation_of(a.get("nonlinearity"))
    return "BatchNorm", {"form": "gist", "axis": 1, "epsilon": float(a.get("epsilon", 0.01)),
                         "alpha": float(a.get("alpha", 0.5)), "activation": act,
                         "axes": tuple(int(x) % nd for x in axes)}, \
        {n: (n, None, "") for n in ("mean", "std", "beta", "gamma")}


def _custom(L: dict, reason: str) -> tuple[str, dict, dict]:
    attrs: dict[str, Any] = {"class_name": L["class"], "reason": reason}
    for k, v in L.get("attrs", {}).items():
        if k not in attrs:
            attrs[k] = v
    return "Custom", attrs, {}


def describe_time(builder_path, **kw) -> float:
    """Seconds to describe a builder (child start included); for benchmarks."""
    t = time.perf_counter()
    describe_builder(builder_path, **kw)
    return time.perf_counter() - t


__all__ = [
    "activation_of",
    "describe_builder",
    "graph_from_description",
    "load_lasagne",
    "load_param_values",
]
