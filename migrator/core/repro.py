"""A repro bundle for a failed verification: the smallest set of files that shows the mismatch.

:func:`write_repro` picks the layer to blame (the root cause, else the first divergent
layer), runs the chosen reference runtime up to it and writes, into a new folder:

* ``layer.keras``: that layer's Keras counterpart alone (the built model's own layers and
  operations between the layer's inputs and its output, on fresh inputs), loadable with plain Keras (``safe_mode=True``) when its layers are
  standard Keras layers;
* ``inputs.npz`` / ``expected.npz``: the reference's inputs and output of the layer in the
  Keras (channels-last) layout (``in0``, ``in1``, ... / ``out``) and in the source layout
  (``in0_source``, ... / ``out_source``);
* ``source.json`` + ``params.npz``: the source definition (op, type, attributes, provenance,
  parameter shapes) and the mapping's rows (formulas) of the layer and the layers fused into it;
* ``README.txt``: what it is, the measured error and the tolerance;
* ``repro.py``: a few lines of numpy + Keras that print the error against ``expected.npz``.

The folder is written beside its destination and renamed into place; an existing non-empty
folder is refused without ``force``.  Nothing here touches Qt.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict

import numpy as np

from .compare.metrics import Tolerances, compare_arrays, to_keras_layout, to_source_layout
from .errors import MigratorError
from .mapping.plan import external_inputs
from .reference.runtimes import get_runtime

SCRIPT = '''\
"""Run the Keras layer on the reference's inputs and print its error (numpy + keras only)."""
import os, numpy as np, keras
here = os.path.dirname(os.path.abspath(__file__))
m = keras.saving.load_model(os.path.join(here, "layer.keras"), safe_mode=True)
x, ref = np.load(os.path.join(here, "inputs.npz")), np.load(os.path.join(here, "expected.npz"))["out"]
xs = [x[f"in{{i}}"] for i in range(len(m.inputs))]
got = np.asarray(m(xs if len(xs) > 1 else xs[0], training=False), dtype=np.float32)
err = np.abs(got - ref).reshape(len(ref), -1).max(axis=1).astype(np.float64)
scale = np.abs(ref).reshape(len(ref), -1).max(axis=1).astype(np.float64)
rel, ok = err / np.maximum(scale, 1e-30), bool(np.all(err <= {atol!r} + {rtol!r} * scale))
print(f"max abs error {{err.max():.9g}}  max rel error {{rel.max():.9g}}  ({{'within' if ok else 'OVER'}} "
      f"the tolerance atol {atol!r}, rtol {rtol!r} x max |expected|)")
'''


def check_target(out_dir: str, force: bool = False) -> None:
    """Refuse an existing non-empty ``out_dir`` (without ``force``) or a file in its place."""
    if os.path.isfile(out_dir):
        raise MigratorError("the repro folder is a file", file=out_dir)
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not force:
        raise MigratorError("the repro folder exists and is not empty (use --force to replace it)",
                            file=out_dir)


def pick_layer(result):
    """The layer a repro shows: the root cause, else the first divergent layer (None: passed)."""
    return result.root_cause or result.first_divergent


def _host_chain(plan, keras_name: str) -> list:
    """The specs of the mapping holding Keras layer ``keras_name``, up to and including it."""
    for m in plan.mappings:
        for i, spec in enumerate(m.layers):
            if spec.name == keras_name:
                return m.layers[: i + 1]
    return []


def _reference(graph, x, name: str, tensors: list[str], runtime, settings) -> tuple[dict, np.ndarray]:
    """Run the reference up to node ``name``: ``({tensor id: array}, output 0 of name)``."""
    rt = get_runtime(runtime, **(settings or {}))
    why = rt.check(graph)
    if why:
        raise MigratorError(f"the '{runtime}' reference runtime cannot run this model: {why}")
    want, held = set(tensors), {}
    it = rt.run(graph, x)
    try:
        for n, outs in it:
            for tid, arr in zip(graph.node(n).outputs, outs):
                if tid in want:
                    held[tid] = np.asarray(arr, dtype=np.float32)
            if n == name:
                return held, np.asarray(outs[0], dtype=np.float32)
    finally:
        close = getattr(it, "close", None)
        if close:
            close()
    raise MigratorError(f"the reference did not reach layer '{name}'")


def _standalone(model, plan, specs, ext: list[str], arrays: list[np.ndarray]):
    """A keras.Model of ``specs`` alone: the part of the built model's graph between the
    tensors ``ext`` and the last spec's output (the model's own layer objects and operations,
    on fresh inputs shaped like ``arrays``)."""
    import keras

    from .keras_build.plain import graph_tensor

    ins = [graph_tensor(model, plan, t) for t in ext]
    out = graph_tensor(model, plan, specs[-1].output)
    if len(ins) != len(arrays):      # pragma: no cover - ext and arrays come together
        raise MigratorError("repro: inputs and arrays disagree")
    return keras.Model(ins if len(ins) > 1 else ins[0], out, name=f"repro_{specs[-1].name}")


def _own_classes(layer) -> list[str]:
    """The classes inside ``layer`` (nested models included) that are not plain Keras."""
    own = [] if type(layer).__module__.startswith("keras") else [type(layer).__name__]
    for sub in getattr(layer, "layers", None) or []:
        own += [c for c in _own_classes(sub) if c not in own]
    return own


def _plain(v):
    """A JSON-able version of ``v`` (arrays as their shape, other objects as text)."""
    if isinstance(v, np.ndarray):
        return v.tolist() if v.size <= 16 else {"array_shape": list(v.shape), "dtype": str(v.dtype)}
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


def _source_entry(graph, plan, name: str, params: dict) -> dict:
    node, m = graph.node(name), plan.mapping(name)
    for p in node.params.values():
        params[f"{name}/{p.name}"] = np.asarray(p.value)
    rows = [{"key": r.key, "formula": r.formula, "value": _plain(r.value) if np.ndim(r.value) == 0 else None,
             "option": r.option, "overridden": r.overridden, "warnings": list(r.warnings)} for r in m.rows]
    return {"name": name, "op": node.op, "source_type": m.source_type, "inputs": list(node.inputs),
            "attrs": _plain(node.attrs), "provenance": _plain(asdict(node.provenance)),
            "out_shapes": _plain(node.out_shapes),
            "params": {p.name: {"shape": list(np.shape(p.value)), "layout": p.layout,
                                "source_name": p.source_name, "npz_key": f"{name}/{p.name}"}
                       for p in node.params.values()},
            "mapping": {"rule": m.rule, "fused_into": m.fused_into, "options": _plain(m.options),
                        "keras_layers": [{"name": s.name, "class_name": s.class_name,
                                          "config": _plain(s.config)} for s in m.layers],
                        "rows": rows}}


def write_repro(graph, plan, model, result, x, out_dir: str, *, runtime="builtin",
                runtime_settings: dict | None = None, tolerances: Tolerances | None = None,
                force: bool = False) -> str:
    """Write the repro bundle of ``result``'s root cause (else first divergent layer) into
    ``out_dir``; ``x`` is the compared input (source layout), ``runtime``/``runtime_settings``
    the reference the comparison used.  Returns ``out_dir``."""
    check_target(out_dir, force)
    lr = pick_layer(result)
    if lr is None:
        raise MigratorError("verification passed: there is no mismatch to reproduce")
    name = lr.source
    mapping = plan.mapping(name)
    specs = _host_chain(plan, mapping.keras_output or "")
    if not specs:
        raise MigratorError(f"layer '{name}' has no Keras layer of its own to reproduce")
    ext = external_inputs(specs)
    held, ref = _reference(graph, x, name, ext, runtime, runtime_settings)
    missing = [t for t in ext if t not in held]
    if missing:
        raise MigratorError(f"the reference gave no array for input(s) {', '.join(missing)} of '{name}'")
    src_in = [held[t] for t in ext]
    k_in = [to_keras_layout(a, plan.tensor_layouts.get(t)) for t, a in zip(ext, src_in)]
    tol = (tolerances or result.tolerances or Tolerances()).for_layer(name)

    part = _standalone(model, plan, specs, ext, k_in)
    got = np.asarray(part(k_in if len(k_in) > 1 else k_in[0], training=False), dtype=np.float32)
    expected = to_keras_layout(ref, mapping.layout) if got.ndim == ref.ndim else ref
    if expected.shape != got.shape:
        raise MigratorError(f"layer '{name}': Keras gives shape {got.shape}, the reference {ref.shape}")
    met = compare_arrays(ref, to_source_layout(got, ref.ndim, mapping.layout), tol)

    fused = [m.source for m in plan.mappings if m.fused_into == name]
    names = {s.name for s in specs}
    hosts = [m.source for m in plan.mappings if any(s.name in names for s in m.layers)]
    params: dict[str, np.ndarray] = {}
    nodes = [_source_entry(graph, plan, n, params) for n in dict.fromkeys([name, *fused, *hosts])]
    info = {"layer": name, "source_type": lr.source_type, "keras_layers": [s.name for s in specs],
            "framework": graph.framework, "files": list(graph.files),
            "reference": _plain(result.runtime), "input": _plain(result.input),
            "input_tensors": ext, "tolerance": tol.to_dict(),
            "comparison": {"status": lr.status, "max_abs": lr.max_abs, "max_rel": lr.max_rel,
                           "isolated": _plain(lr.isolated)},
            "measured": {"max_abs": met["max_abs"], "max_rel": met["max_rel"],
                         "worst_channel": met["worst_channel"], "passed": bool(met["passed"])},
            "nodes": nodes,
            "custom_layers": _own_classes(part)}

    parent = os.path.dirname(os.path.abspath(out_dir)) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(os.path.abspath(out_dir)) + ".", dir=parent)
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o777 & ~mask)          # a plain folder, not mkdtemp's private one
    try:
        part.save(os.path.join(tmp, "layer.keras"))
        np.savez(os.path.join(tmp, "inputs.npz"), **{f"in{i}": a for i, a in enumerate(k_in)},
                 **{f"in{i}_source": a for i, a in enumerate(src_in)})
        np.savez(os.path.join(tmp, "expected.npz"), out=expected, out_source=ref)
        np.savez(os.path.join(tmp, "params.npz"), **params)
        with open(os.path.join(tmp, "source.json"), "w", encoding="utf-8") as f:
            json.dump(_plain(info), f, indent=1)
        with open(os.path.join(tmp, "repro.py"), "w", encoding="utf-8") as f:
            f.write(SCRIPT.format(atol=tol.atol, rtol=tol.rtol))
        with open(os.path.join(tmp, "README.txt"), "w", encoding="utf-8") as f:
            f.write(_readme(info, lr, met, tol, specs, fused))
        if os.path.isdir(out_dir):
            check_target(out_dir, force)
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _readme(info: dict, lr, met: dict, tol, specs, fused: list[str]) -> str:
    what = "root cause" if lr.isolated is not None and not lr.isolated.get("passed", True) \
        else "first divergent layer"
    fused_txt = f" (with {', '.join(fused)} fused into it)" if fused else ""
    return (f"Migrator repro: source layer '{lr.source}' ({lr.source_type}){fused_txt}, the {what} of a "
            f"failed verification,\nconverted to the Keras layer(s) {', '.join(s.name for s in specs)}.\n\n"
            f"Reference: {info['reference'].get('name', '?')}; tolerance atol {tol.atol:g}, "
            f"rtol {tol.rtol:g} x max |expected| per sample.\n"
            f"Error of the Keras layer on the reference's own inputs: max abs {met['max_abs']:.6g}, "
            f"max rel {met['max_rel']:.6g}\n(in the full comparison: max abs {lr.max_abs:.6g}, "
            f"max rel {lr.max_rel:.6g}).\n\n"
            "Files:\n"
            "  layer.keras    the Keras layer(s) alone (keras.saving.load_model)\n"
            "  inputs.npz     the reference's inputs: in0, in1, ... channels-last; in0_source, ... "
            "source layout (NCHW)\n"
            "  expected.npz   the reference's output: out channels-last; out_source source layout\n"
            "  source.json    the source definition (op, type, attributes, provenance, parameter "
            "shapes) and the mapping rows (formulas)\n"
            "  params.npz     the source parameters, keyed 'layer/param'\n"
            "  repro.py       python repro.py: prints the error with plain numpy + Keras\n"
            + (f"\nNote: the Keras layer classes {', '.join(info['custom_layers'])} are Migrator's own: "
               "load layer.keras with Migrator imported (migrator.core.keras_build) to register them.\n"
               if info["custom_layers"] else ""))
