"""Lasagne/Theano importer: ``builder.py`` + ``params.{pkl,npz}`` -> IR :class:`Graph`.

A Lasagne model file holds *no architecture*: the network is rebuilt by the user's builder
function and the flat parameter list is zipped onto ``get_all_params(output)``.

1. The builder script (user code) runs in a **child process**
   (:mod:`migrator.core.importers.lasagne.builder_child`) with Migrator's recording stand-ins for
   ``lasagne`` and ``theano`` first on ``sys.path``.  The child calls the builder function,
   walks ``get_all_layers(output)`` and writes a JSON description (layers, constructor
   settings, output shapes, params in ``add_param`` order) to a temp file.  No pickle.
2. The parent loads the parameter file itself -- pickles only through the restricted
   unpickler of :mod:`.safe_pickle` -- and zips the arrays onto the params in
   ``get_all_params`` order (a param shared by two layers appears once), reporting count
   and shape mismatches by layer and param name.
3. Every Lasagne layer becomes one canonical node (``ir.OPS``) by its class's converter
   (:data:`.registry.CONVERTERS`, one module per op family).

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

from ...errors import Cancelled, MigratorError
from ...ir import Graph, Node, Param, Provenance
from ...limits import check_tensor_sizes
from ...tempfiles import private_dir_prefix  # sweeps dirs of killed runs
from .common import Unsupported, shape
from .norm import gist_batch_norm, is_gist_batch_norm
from .params import load_param_values as _read_param_values
from .params import nested_to_array
from .registry import CONVERTERS

#: the builder child script, run by path (see :mod:`.builder_child`)
CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "builder_child.py")

Progress = Callable[[float, str], None] | None

_MEAN_KEYS = ("mean value", "mean_value", "mean image", "mean_image", "mean", "MEAN_IMAGE")
_LABEL_KEYS = ("synset words", "synset_words", "labels", "classes", "CLASSES")


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


def load_lasagne_pickle(pickle_path, *, output_layer: str | None = None,
                        progress: Progress = None, timeout: float = 120,
                        cancel: Callable[[], bool] | None = None) -> Graph:
    """Open a whole Lasagne network pickled without its builder script (the output layer, a
    dict or list of layers, or a nolearn ``NeuralNet``): read by the allow-list unpickler of
    :mod:`.network_pickle` in the child process, then converted like a builder's network.
    ``graph.meta['builder']`` is None and ``graph.meta['network_pickle']`` names the file."""
    pickle_path = os.path.abspath(os.fspath(pickle_path))
    prog = progress or (lambda f, m: None)
    t0 = time.perf_counter()
    prog(0.0, f"reading the network from {os.path.basename(pickle_path)}")
    desc, values = describe_pickle(pickle_path, output_layer=output_layer, timeout=timeout,
                                   progress=progress, cancel=cancel)
    prog(0.8, "building the graph")
    g = graph_from_description(desc, values, pickle_path, None)
    g.meta["builder"] = None
    g.meta["network_pickle"] = pickle_path
    g.meta["params_file"] = pickle_path
    g.meta["pickle_holds"] = desc.get("pickle_holds")
    out_desc = next((L for L in desc["layers"] if L["name"] == desc.get("output")), None)
    g.meta["output_key"] = out_desc.get("dict_key") if out_desc else None
    g.meta["timings"] = {"builder_s": 0.0, "total_s": time.perf_counter() - t0}
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
        if _ABORT.is_set():      # killed by kill_builder_processes as it ended: not the script's doing
            raise Cancelled()
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
    desc, _ = _describe_in_child(["--builder", builder_path, "--function", builder_function],
                                 builder_path, output_layer=output_layer, timeout=timeout,
                                 impl=impl, python=python, progress=progress, cancel=cancel)
    return desc


def describe_pickle(pickle_path, *, output_layer: str | None = None, timeout: float = 120,
                    progress: Progress = None, cancel: Callable[[], bool] | None = None
                    ) -> tuple[dict, list[np.ndarray]]:
    """A whole network pickled without its builder script -> (the child's JSON description,
    the parameter values in get_all_params order).  The child reads the pickle with the
    allow-list unpickler of :mod:`.network_pickle` (nothing named by the file is imported or
    run); the values come back in an ``.npz`` read with ``allow_pickle=False``."""
    pickle_path = os.path.abspath(os.fspath(pickle_path))
    if not os.path.isfile(pickle_path):
        raise MigratorError("network pickle not found", file=pickle_path)
    desc, values = _describe_in_child(["--pickle", pickle_path], pickle_path,
                                      output_layer=output_layer, timeout=timeout,
                                      impl="recorder", python=None, progress=progress,
                                      cancel=cancel, values=True)
    return desc, values


def _describe_in_child(args: list[str], path: str, *, output_layer, timeout, impl, python,
                       progress, cancel, values: bool = False) -> tuple[dict, list]:
    with tempfile.TemporaryDirectory(prefix=private_dir_prefix()) as td:
        out = os.path.join(td, "description.json")
        cmd = [python or sys.executable, CHILD, *args, "--output-layer", output_layer or "",
               "--impl", impl, "--out", out, "--known", ",".join(sorted(CONVERTERS))]
        env = dict(os.environ)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.setdefault("PYTHONIOENCODING", "utf-8")
        rc, stderr = _run_child(cmd, os.path.dirname(path), env, timeout, path,
                                progress, cancel)
        if not os.path.exists(out):
            tail = [ln for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
            raise MigratorError(f"the {'reading' if values else 'builder'} process ended (exit "
                                f"code {rc}) without describing the network: "
                                f"{tail[-1] if tail else 'no message'}", file=path)
        try:
            with open(out, encoding="utf-8") as f:
                desc = json.load(f)
        except (OSError, ValueError) as e:
            raise MigratorError(f"the {'reading' if values else 'builder'} process wrote an "
                                f"unreadable description: {e}", file=path) from None
        arrays: list = []
        if values and desc.get("ok"):
            try:
                with np.load(out + ".npz", allow_pickle=False) as z:
                    arrays = [z[f"arr_{i}"] for i in range(len(z.files))]
            except (OSError, ValueError, KeyError) as e:
                raise MigratorError(f"the reading process wrote unreadable values: {e}",
                                    file=path) from None
    _raise_child_error(desc, path)
    return desc, arrays


def _raise_child_error(desc: dict, builder_path: str) -> None:
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
    (the builder's ``desc['params']``) bounds what is read: see :mod:`.params`.
    """
    return _read_param_values(params_path, expected)


def _attach_extras(g: Graph, extra: dict) -> None:
    if not extra:
        return
    g.meta["params_extra"] = extra
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
        shapes[L["name"]] = shape(L["output_shape"])
        inputs = list(L["inputs"])
        direct = L.get("input_shape_direct")
        if direct is not None and not inputs:
            inp = Node(name=_free_name(g, f"{L['name']}_input"), op="Input",
                       attrs={"shape": shape(direct)},
                       provenance=Provenance(file=builder_path, layer=L["name"], type="shape tuple"))
            inp.out_shapes = [shape(direct)]
            g.nodes.append(inp)
            shapes[inp.name] = shape(direct)
            inputs = [inp.name]
        in_shapes = [shapes.get(i) for i in inputs]
        L.setdefault("lasagne_version", desc.get("lasagne_version"))   # recurrent semantics
        try:
            op, attrs, pmap = canonical(L, in_shapes)
        except Unsupported as e:
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
    check_tensor_sizes(g, builder_path)   # a forged size: refuse before allocating
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


# ---- one layer -----------------------------------------------------------------------
def canonical(L: dict, in_shapes: list) -> tuple[str, dict, dict]:
    """One described layer -> (op, attrs, {lasagne param name: (key, transform, layout[, source
    name])}) by its class's entry in :data:`.registry.CONVERTERS`; raises
    :class:`.common.Unsupported` for a layer without a canonical form."""
    cls, known = L["class"], L.get("known")
    if known is None or L.get("custom_output"):
        if is_gist_batch_norm(L):
            return gist_batch_norm(L, in_shapes)
        raise Unsupported("a custom layer class" if known is None else
                          f"a subclass of {known} with its own get_output_for")
    entry = CONVERTERS.get(known)
    if entry is None:
        raise Unsupported(f"{known} has no canonical form")
    if entry.refused is not None:
        return "Custom", {"class_name": cls, "reason": f"refused: {entry.refused}",
                          "refused": entry.refused}, {}
    return entry.fn(L, in_shapes)


def _custom(L: dict, reason: str) -> tuple[str, dict, dict]:
    attrs: dict[str, Any] = {"class_name": L["class"], "reason": reason}
    for k, v in L.get("attrs", {}).items():
        if k not in attrs:
            attrs[k] = v
    return "Custom", attrs, {}


__all__ = [
    "CHILD",
    "canonical",
    "describe_builder",
    "describe_pickle",
    "graph_from_description",
    "kill_builder_processes",
    "load_lasagne",
    "load_lasagne_pickle",
    "load_param_values",
]
