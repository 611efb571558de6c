"""The one flow, as plain functions the CLI and the GUI workers call.

    files --open_model--> Graph --make_plan(+overrides)--> Plan --build_keras--> keras.Model
                                  reference runtime + Keras --compare--> ComparisonResult
                                                      --save--> .keras/.h5 + report

Long steps take ``progress(fraction, message)`` and ``cancel() -> bool`` callables; a
cancelled step raises :class:`~migrator.core.errors.Cancelled`.  Nothing here touches Qt.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import MigratorError
from .ir import Graph

Progress = Callable[[float, str], None] | None
Cancel = Callable[[], bool] | None

CAFFE_ARCH = (".prototxt", ".pbtxt")
CAFFE_WEIGHTS = (".caffemodel",)
LASAGNE_BUILDER = (".py",)
LASAGNE_PARAMS = (".pkl", ".pickle", ".npz")


def _ext(p: str) -> str:
    return os.path.splitext(str(p))[1].lower()


def detect_format(paths: Sequence[str]) -> tuple[str, dict[str, str | None]]:
    """Recognise MODEL... by extension: ('caffe', {prototxt, caffemodel}) or
    ('lasagne', {builder, params})."""
    paths = [str(p) for p in paths]
    if not paths:
        raise MigratorError("no model files given (Caffe: deploy.prototxt weights.caffemodel; "
                            "Lasagne: builder.py params.pkl|.npz)")
    by = {}
    for p in paths:
        e = _ext(p)
        if e in CAFFE_ARCH:
            by.setdefault("prototxt", p)
        elif e in CAFFE_WEIGHTS:
            by.setdefault("caffemodel", p)
        elif e in LASAGNE_BUILDER:
            by.setdefault("builder", p)
        elif e in LASAGNE_PARAMS:
            by.setdefault("params", p)
        else:
            raise MigratorError("unrecognised model file extension (expected .prototxt, .caffemodel, "
                                ".py, .pkl or .npz)", file=p)
    if "prototxt" in by or "caffemodel" in by:
        if "builder" in by or "params" in by:
            raise MigratorError("mixed Caffe and Lasagne files given", file=paths[0])
        if "prototxt" not in by:
            raise MigratorError("a Caffe model needs its .prototxt next to the .caffemodel",
                                file=by["caffemodel"])
        return "caffe", {"prototxt": by["prototxt"], "caffemodel": by.get("caffemodel")}
    if "builder" not in by:
        raise MigratorError("a Lasagne model needs its builder script (.py)", file=by.get("params"))
    if "params" not in by:
        raise MigratorError("a Lasagne model needs its parameter file (.pkl or .npz)", file=by["builder"])
    return "lasagne", {"builder": by["builder"], "params": by["params"]}


def _check_readable(path: str | None) -> None:
    if path is None:
        return
    if not os.path.exists(path):
        raise MigratorError("no such file", file=path)
    if os.path.isdir(path):
        raise MigratorError("is a directory, not a file", file=path)
    if not os.access(path, os.R_OK):
        raise MigratorError("permission denied (file is not readable)", file=path)


def open_model(paths: Sequence[str], *, builder_function: str = "build_model",
               output_layer: str | None = None, progress: Progress = None,
               legacy_command: str | None = None, accept_unknown: Sequence[str] | None = None,
               input_shapes: dict | None = None, unknown: str = "error") -> Graph:
    """``accept_unknown``: Caffe fields Migrator does not know that the user accepts
    (importers/caffe_fields.py); ``unknown='collect'`` records the others instead of
    raising (GUI).  ``input_shapes``: ``{input name or '': shape}`` (input_shape.py)."""
    kind, files = detect_format(paths)
    for p in files.values():
        _check_readable(p)
    if kind == "caffe":
        from .importers.caffe import load_caffe
        from .input_shape import apply_input_shapes
        graph = load_caffe(files["prototxt"], files["caffemodel"], progress=progress,
                           accept_unknown=accept_unknown, unknown=unknown)
        apply_input_shapes(graph, input_shapes)
        return graph
    from .importers.lasagne import load_lasagne
    graph = load_lasagne(files["builder"], files["params"], builder_function=builder_function,
                         output_layer=output_layer, progress=progress)
    # the legacy bridge re-runs the same builder function in the user's real Lasagne
    graph.meta.setdefault("builder_function", builder_function)
    if output_layer is not None:
        graph.meta.setdefault("output_layer", output_layer)
    from .input_shape import apply_input_shapes
    apply_input_shapes(graph, input_shapes)
    return graph


def load_overrides(path: str | None):
    from .mapping.overrides import Overrides
    if path is None:
        return Overrides()
    _check_readable(path)
    return Overrides.load(path)


def make_plan(graph: Graph, overrides=None):
    from .input_shape import finish_plan
    from .mapping.planner import make_plan as _mp
    plan = _mp(graph, overrides)
    finish_plan(graph, plan, overrides)   # unknown-field marks; open Keras input sizes
    return plan


class deep_recursion:
    """Keras builds, calls and saves functional models recursively (a few Python frames per
    layer): a 1,000-layer model needs more than Python's default limit of 1,000.  Raise the
    limit for the duration (run deep work on a thread with a big stack: the CLI and the GUI
    workers do)."""

    def __init__(self, plan_or_layers):
        n = plan_or_layers if isinstance(plan_or_layers, int) else \
            len(getattr(plan_or_layers, "keras_layers", []) or [])
        self.need = 20 * n + 2000

    def __enter__(self):
        import sys
        self.old = sys.getrecursionlimit()
        if self.need > self.old:
            sys.setrecursionlimit(self.need)
        return self

    def __exit__(self, *exc):
        import sys
        if sys.getrecursionlimit() != self.old:
            sys.setrecursionlimit(self.old)


def build_keras(plan, progress: Progress = None, *, release_weights: bool = False):
    """Build the Keras model; ``release_weights`` (one-shot CLI runs) frees the plan's copies
    of the weight arrays once the model holds them."""
    from .keras_build.builder import build_keras as _bk
    with deep_recursion(plan):
        return _bk(plan, progress=progress, release_weights=release_weights)


# ------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------
@dataclass
class ImagePreprocessing:
    """How an image becomes the network input (documented in the user guide):
    1. load (Pillow), convert to RGB; 2. resize to the network's input H x W (bilinear);
    3. to float32 in [0, 255]; 4. channel order ('BGR' for Caffe models by default, 'RGB');
    5. subtract ``mean`` (per channel, in the chosen order; or a full mean image (C,H,W));
    6. multiply by ``scale``; 7. HWC -> CHW and add the batch axis."""

    channel_order: str = "BGR"
    mean: Any = None          # None | sequence of C floats | np.ndarray (C,H,W)
    scale: float = 1.0
    resize: tuple[int, int] | None = None   # None = the model's input size

    def to_dict(self):
        m = self.mean
        if isinstance(m, np.ndarray):
            m = {"shape": list(m.shape), "per_channel_mean": m.reshape(m.shape[0], -1).mean(1).tolist()} \
                if m.ndim > 1 else m.tolist()
        return {"channel_order": self.channel_order, "mean": m, "scale": self.scale,
                "resize": list(self.resize) if self.resize else None}


@dataclass
class InputSpec:
    kind: str = "random"                      # 'random' | 'npy' | 'image' | 'images' | 'arrays'
    seed: int = 0
    path: str | None = None                   # images: a folder or a list file; arrays: .npy/.npz
    batch: int = 1
    preprocessing: ImagePreprocessing = field(default_factory=ImagePreprocessing)
    distribution: str = "normal"              # random: 'normal' (N(0,1)) | 'uniform' ([0, 255))
    limit: int | None = None                  # input sets: the first N samples only
    batch_size: int = 8                       # input sets: samples per batch (memory bound)


def input_shapes(graph: Graph, batch: int = 1) -> dict[str, tuple[int, ...]]:
    """Source-layout shape of every network input (batch dimension set to ``batch``)."""
    ins = graph.input_nodes
    if not ins:
        raise MigratorError("the model has no input layer", file=graph.files[0] if graph.files else None)
    out = {}
    for node in ins:
        shp = list(node.attrs["shape"])
        shp[0] = batch
        if any(d is None for d in shp):
            raise MigratorError("the input shape has unknown dimensions; give --input X.npy",
                                layer=node.name)
        out[node.name] = tuple(int(d) for d in shp)
    return out


def model_input_shape(graph: Graph, batch: int = 1) -> tuple[int, ...]:
    """The shape of the only input (images and single-array inputs need exactly one)."""
    shapes = input_shapes(graph, batch)
    if len(shapes) != 1:
        raise MigratorError(f"the model has {len(shapes)} inputs ({', '.join(shapes)}): give them as "
                            "--input X.npz with one array per input name",
                            file=graph.files[0] if graph.files else None)
    return next(iter(shapes.values()))


def default_mean(graph: Graph):
    m = graph.meta.get("mean")
    return None if m is None else np.asarray(m, dtype=np.float32)


def make_input(graph: Graph, spec: InputSpec) -> tuple[np.ndarray, dict[str, Any]]:
    """Return (x in source layout NCHW float32, a description for the report)."""
    if spec.kind == "random":
        shapes = input_shapes(graph, spec.batch)
        rng = np.random.default_rng(spec.seed)
        xs = {}
        from .shapes import index_inputs
        vocab = index_inputs(graph)             # inputs of embedding lookups: valid indices
        for name, shp in shapes.items():       # in graph order: reproducible per seed
            if name in vocab:
                xs[name] = rng.integers(0, vocab[name], size=shp).astype(np.float32)
            elif spec.distribution == "uniform":
                xs[name] = rng.uniform(0, 255, size=shp).astype(np.float32)
            else:
                xs[name] = rng.standard_normal(size=shp).astype(np.float32)
        desc = {"kind": "random", "seed": spec.seed, "distribution": spec.distribution}
        if len(xs) == 1:
            return next(iter(xs.values())), {**desc, "shape": list(next(iter(shapes.values())))}
        return xs, {**desc, "shape": {k: list(v) for k, v in shapes.items()}}
    if spec.kind == "npy" and str(spec.path).lower().endswith(".npz"):
        return _load_npz(graph, spec)
    if spec.kind == "npy":
        _check_readable(spec.path)
        try:
            x = np.load(spec.path, allow_pickle=False)
        except Exception as e:  # noqa: BLE001 - user file
            raise MigratorError(f"cannot read .npy input: {e}", file=spec.path) from None
        x = np.asarray(x, dtype=np.float32)
        want = graph.input_nodes[0].attrs["shape"] if graph.input_nodes else None
        if want is not None and x.ndim == len(want) - 1:
            x = x[None]
        if want is not None and (x.ndim != len(want) or any(
                w is not None and i > 0 and w != d for i, (w, d) in enumerate(zip(want, x.shape)))):
            raise MigratorError(f"input shape {tuple(x.shape)} does not fit the model input "
                                f"{tuple(want)} (give NCHW, the source layout)", file=spec.path)
        return x, {"kind": "npy", "path": os.path.abspath(spec.path), "shape": list(x.shape)}
    if spec.kind == "image":
        return _load_image(graph, spec)
    raise MigratorError(f"unknown input kind {spec.kind!r}")


def _load_npz(graph: Graph, spec: InputSpec):
    """Several inputs: an .npz with one array per source input name (NCHW)."""
    _check_readable(spec.path)
    try:
        with np.load(spec.path, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k], dtype=np.float32) for k in z.files}
    except Exception as e:  # noqa: BLE001 - user file
        raise MigratorError(f"cannot read .npz input: {e}", file=spec.path) from None
    names = [n.name for n in graph.input_nodes]
    missing = [n for n in names if n not in arrays]
    extra = [k for k in arrays if k not in names]
    if missing or extra:
        raise MigratorError(f"the .npz must hold one array per input ({', '.join(names)})"
                            + (f"; missing {', '.join(missing)}" if missing else "")
                            + (f"; unknown {', '.join(extra)}" if extra else ""), file=spec.path)
    for node in graph.input_nodes:
        want, a = node.attrs["shape"], arrays[node.name]
        if a.ndim == len(want) - 1:
            a = arrays[node.name] = a[None]
        if a.ndim != len(want) or any(w is not None and i > 0 and w != d
                                      for i, (w, d) in enumerate(zip(want, a.shape))):
            raise MigratorError(f"input '{node.name}' has shape {tuple(a.shape)}, the model wants "
                                f"{tuple(want)} (NCHW)", file=spec.path)
    desc = {"kind": "npz", "path": os.path.abspath(spec.path),
            "shape": {k: list(v.shape) for k, v in arrays.items()}}
    if len(arrays) == 1:
        return next(iter(arrays.values())), desc
    return arrays, desc


def preprocess_image(graph: Graph, path: str, pp: ImagePreprocessing) -> tuple[np.ndarray, str]:
    """One image file -> (CHW float32 in the source layout, where the mean came from:
    'given' | 'model' | 'none'), following :class:`ImagePreprocessing`."""
    from PIL import Image
    _check_readable(path)
    shp = model_input_shape(graph, 1)
    if len(shp) != 4 or shp[1] not in (1, 3):
        raise MigratorError(f"image input needs a 1- or 3-channel NCHW model input, got {shp}",
                            file=path)
    h, w = pp.resize or (shp[2], shp[3])
    try:
        with Image.open(path) as im:
            im = im.convert("RGB" if shp[1] == 3 else "L").resize((w, h), Image.BILINEAR)
            a = np.asarray(im, dtype=np.float32)
    except Exception as e:  # noqa: BLE001 - user file
        raise MigratorError(f"cannot read image: {e}", file=path) from None
    if a.ndim == 2:
        a = a[:, :, None]
    if shp[1] == 3 and pp.channel_order.upper() == "BGR":
        a = a[:, :, ::-1]
    chw = np.ascontiguousarray(a.transpose(2, 0, 1))
    mean = pp.mean if pp.mean is not None else default_mean(graph)
    if mean is not None:
        mean = np.asarray(mean, dtype=np.float32)
        if mean.ndim == 1:
            chw = chw - mean.reshape(-1, 1, 1)
        elif mean.ndim == 3:
            if mean.shape[1:] != chw.shape[1:]:
                # centre-crop or resize the mean image to the input size
                from PIL import Image as _I
                mean = np.stack([np.asarray(_I.fromarray(c).resize((w, h), _I.BILINEAR))
                                 for c in mean.astype(np.float32)])
            chw = chw - mean
    chw = chw * np.float32(pp.scale)
    src = "given" if pp.mean is not None else ("model" if mean is not None else "none")
    return chw.astype(np.float32, copy=False), src


def _load_image(graph: Graph, spec: InputSpec):
    chw, mean_source = preprocess_image(graph, spec.path, spec.preprocessing)
    x = chw[None].astype(np.float32)
    desc = {"kind": "image", "path": os.path.abspath(spec.path), "shape": list(x.shape),
            "preprocessing": {**spec.preprocessing.to_dict(), "mean_source": mean_source}}
    return x, desc


def make_input_batches(graph: Graph, spec: InputSpec):
    """The streaming successor of :func:`make_input`: an
    :class:`~migrator.core.inputs.InputSet` whose ``batches()`` yields
    :class:`~migrator.core.inputs.Batch` es (x, names, start) of ``spec.batch_size``
    samples; single inputs (random, one image, one array) are a set of one batch."""
    from .inputs import open_input_set
    return open_input_set(graph, spec)


# ------------------------------------------------------------------------------------
# Comparison
# ------------------------------------------------------------------------------------
def compare(graph: Graph, plan, model, x: np.ndarray, *, runtime: str = "builtin",
            runtime_settings: dict | None = None, tolerances=None,
            input_desc: dict | None = None, progress: Progress = None,
            cancel: Cancel = None, precision: str = "failing"):
    from .compare.engine import run_comparison
    return run_comparison(graph, plan, model, x, runtime=runtime,
                          runtime_settings=runtime_settings or {}, tolerances=tolerances,
                          input_desc=input_desc, progress=progress, cancel=cancel,
                          precision=precision)


def compare_set(graph: Graph, plan, model, spec_or_set, *, runtime: str = "builtin",
                runtime_settings: dict | None = None, tolerances=None, batch_size: int | None = None,
                progress: Progress = None, cancel: Cancel = None, precision: str = "failing"):
    """Compare on an input set (an :class:`InputSpec` or an opened
    :class:`~migrator.core.inputs.InputSet`), batch by batch; returns one set-level
    ComparisonResult (per layer the worst over the set and which sample, per-channel worst,
    top-1 agreement / top-k overlap over N, samples whose top-1 differs)."""
    from .compare.sets import run_set_comparison
    from .inputs import InputSet
    iset = spec_or_set if isinstance(spec_or_set, InputSet) else make_input_batches(graph, spec_or_set)
    return run_set_comparison(graph, plan, model, iset, runtime=runtime,
                              runtime_settings=runtime_settings or {}, tolerances=tolerances,
                              batch_size=batch_size, progress=progress, cancel=cancel,
                              precision=precision)
