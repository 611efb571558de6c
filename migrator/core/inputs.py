"""Input sets: a folder (or list file) of images, or ``.npy``/``.npz`` arrays with a batch
dimension, streamed in batches so memory stays bounded by the batch, not the set.

>>> s = open_input_set(graph, InputSpec(kind="images", path="val/", limit=200))  # doctest: +SKIP
>>> for batch in s.batches(16):                                                 # doctest: +SKIP
...     batch.x, batch.names, batch.start

* Images: the files of a folder with an image extension, in sorted (deterministic) order,
  not recursive; or a text file listing one path per line (relative paths are taken
  relative to the list file; blank lines and ``#`` comments are skipped), kept in its
  order.  Each image is preprocessed exactly as a single ``--image`` (see
  :class:`ImagePreprocessing`).
* ``.npy``: an NCHW array whose first axis is the set; opened memory-mapped, so only the
  current batch is read.  ``.npz``: one such array per network input name (a model with
  one input also accepts any single key); all arrays must have the same length.
* Everything else (random, one image) is a set of one batch.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import MigratorError
from .ir import Graph
from .saving import check_readable
from .shapes import index_inputs

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


@dataclass
class ImagePreprocessing:
    """How an image becomes the network input (documented in the user guide), as Caffe's
    ``transform_param`` / ``caffe.io.Transformer`` do it:
    1. load (Pillow), convert to RGB; 2. resize (bilinear) to ``resize``, else to the size of a
    mean image larger than the network input (Caffe's data was made at the mean's size), else
    to the network's input H x W; 3. centre-crop to the input H x W (Caffe's TEST-phase
    ``crop_size``: offset ``(size - crop) // 2``); 4. to float32 in [0, 255] (=
    ``caffe.io.load_image`` with ``raw_scale`` 255); 5. channel order ('BGR' for Caffe models
    by default = ``channel_swap (2, 1, 0)``, or 'RGB'); 6. subtract ``mean`` (per channel in the
    chosen order, or a mean image (C, H, W) as stored -- Caffe's are BGR --, centre-cropped like
    the image: at the crop offsets when it has the resized size, else around its centre);
    7. multiply by ``scale`` (``input_scale``); 8. HWC -> CHW and add the batch axis."""

    channel_order: str = "BGR"
    mean: Any = None          # None | sequence of C floats | np.ndarray (C,) or (C,H,W)
    scale: float = 1.0
    resize: tuple[int, int] | None = None   # None = the model's input size (or the mean image's)
    mean_file: str | None = None            # where ``mean`` was read from (the report says so)

    def to_dict(self):
        m = self.mean
        if isinstance(m, np.ndarray):
            m = {"shape": list(m.shape), "per_channel_mean": m.reshape(m.shape[0], -1).mean(1).tolist()} \
                if m.ndim > 1 else m.tolist()
        d = {"channel_order": self.channel_order, "mean": m, "scale": self.scale,
             "resize": list(self.resize) if self.resize else None}
        if self.mean_file:
            d["mean_file"] = os.path.abspath(self.mean_file)
        return d


def parse_mean(text: str | None) -> tuple[Any, str | None]:
    """A --mean value (CLI or GUI): comma-separated numbers, or a mean file (``.binaryproto``,
    ``.npy``) read safely.  Returns ``(mean or None, the file or None)``."""
    from .importers.caffe.mean_file import is_mean_file, read_mean_file
    s = (text or "").strip()
    if not s:
        return None, None
    if is_mean_file(s):
        return read_mean_file(s), s
    try:
        vals = [float(t) for t in s.replace(";", ",").replace(" ", ",").split(",") if t]
    except ValueError:
        raise MigratorError(f"--mean expects comma-separated numbers or a mean file "
                            f"(.binaryproto, .npy), got {text!r}") from None
    if not vals:
        raise MigratorError(f"--mean expects comma-separated numbers, got {text!r}")
    return vals, None


def crop_box(size: tuple[int, int], crop: tuple[int, int]) -> tuple[int, int]:
    """(top, left) of Caffe's TEST-phase centre crop of ``crop`` out of ``size``."""
    return (size[0] - crop[0]) // 2, (size[1] - crop[1]) // 2


def resize_target(pp: ImagePreprocessing, mean, h: int, w: int, file: str | None = None) -> tuple[int, int]:
    """The size an image is resized to before the centre crop to the (h, w) input."""
    if pp.resize:
        rh, rw = (int(v) for v in pp.resize)
    elif mean is not None and np.ndim(mean) == 3 and mean.shape[1] >= h and mean.shape[2] >= w:
        rh, rw = int(mean.shape[1]), int(mean.shape[2])
    else:
        rh, rw = h, w
    if rh < h or rw < w:
        raise MigratorError(f"resize {rh}x{rw} is smaller than the network input {h}x{w} "
                            "(the image is centre-cropped to the input, never padded)", file=file)
    return rh, rw


def input_mean(mean, h: int, w: int, file: str | None = None):
    """The mean subtracted from an (h, w) network input: a (C, 1, 1) per-channel mean, or the
    mean image cropped as the image was (at the crop offsets when it has the resized size,
    else centre-cropped; a smaller mean image is resized, bilinear)."""
    if mean is None:
        return None
    mean = np.asarray(mean, dtype=np.float32)
    if mean.ndim == 1:
        return mean.reshape(-1, 1, 1)
    if mean.ndim != 3:
        raise MigratorError(f"a mean is (C,) or (C, H, W), got shape {mean.shape}", file=file)
    hm, wm = mean.shape[1:]
    if (hm, wm) == (h, w):
        return mean
    if hm >= h and wm >= w:
        top, left = crop_box((hm, wm), (h, w))
        return np.ascontiguousarray(mean[:, top:top + h, left:left + w])
    from PIL import Image
    return np.stack([np.asarray(Image.fromarray(c).resize((w, h), Image.BILINEAR)) for c in mean])


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
        check_readable(spec.path)
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
    check_readable(spec.path)
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
    check_readable(path)
    shp = model_input_shape(graph, 1)
    if len(shp) != 4 or shp[1] not in (1, 3):
        raise MigratorError(f"image input needs a 1- or 3-channel NCHW model input, got {shp}",
                            file=path)
    h, w = int(shp[2]), int(shp[3])
    mean = pp.mean if pp.mean is not None else default_mean(graph)
    rh, rw = resize_target(pp, mean, h, w, path)
    try:
        with Image.open(path) as im:
            im = im.convert("RGB" if shp[1] == 3 else "L").resize((rw, rh), Image.BILINEAR)
            a = np.asarray(im, dtype=np.float32)
    except Exception as e:  # noqa: BLE001 - user file
        raise MigratorError(f"cannot read image: {e}", file=path) from None
    if a.ndim == 2:
        a = a[:, :, None]
    if (rh, rw) != (h, w):          # Caffe's TEST-phase crop_size: the centre
        top, left = crop_box((rh, rw), (h, w))
        a = a[top:top + h, left:left + w]
    if shp[1] == 3 and pp.channel_order.upper() == "BGR":
        a = a[:, :, ::-1]
    chw = np.ascontiguousarray(a.transpose(2, 0, 1))
    m = input_mean(mean, h, w, pp.mean_file or path)
    if m is not None:
        if m.shape[0] not in (1, chw.shape[0]):
            raise MigratorError(f"the mean has {m.shape[0]} channels, the network input "
                                f"{chw.shape[0]}", file=pp.mean_file or path)
        chw = chw - m
    chw = chw * np.float32(pp.scale)
    src = "given" if pp.mean is not None else ("model" if mean is not None else "none")
    return chw.astype(np.float32, copy=False), src


def _load_image(graph: Graph, spec: InputSpec):
    chw, mean_source = preprocess_image(graph, spec.path, spec.preprocessing)
    x = chw[None].astype(np.float32)
    desc = {"kind": "image", "path": os.path.abspath(spec.path), "shape": list(x.shape),
            "preprocessing": {**spec.preprocessing.to_dict(), "mean_source": mean_source}}
    return x, desc


def array_shapes(path: str, graph: Graph) -> dict:
    """The shapes of an .npy / .npz input (by input name; ``''`` for an .npy), used to size
    a model whose input size is open; {} when the file cannot be read (making the input
    then reports the problem)."""
    names = {n.name for n in graph.input_nodes}
    try:
        if str(path).lower().endswith(".npz"):
            with np.load(path) as z:
                return {k: tuple(z[k].shape) for k in z.files if k in names}
        return {"": tuple(int(d) for d in np.load(path, mmap_mode="r").shape)}
    except (OSError, ValueError):
        return {}


@dataclass
class Batch:
    x: Any                 # np.ndarray (N, ...) source layout float32, or {input name: array}
    names: list[str]       # one per sample (file name, or 'name[i]' for arrays)
    start: int             # index of the first sample in the set

    def __len__(self) -> int:
        return len(self.names)


def image_files(path: str, limit: int | None = None) -> list[str]:
    """The images of folder ``path`` (sorted by file name) or of list file ``path``."""
    if not os.path.exists(path):
        raise MigratorError("no such folder or list file", file=path)
    if os.path.isdir(path):
        try:
            names = sorted(e.name for e in os.scandir(path)
                           if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS)
        except OSError as e:
            raise MigratorError(f"cannot list the folder: {e.strerror or e}", file=path) from None
        files = [os.path.join(path, n) for n in names]
        if not files:
            raise MigratorError("no image files in the folder (looked for "
                                f"{', '.join(IMAGE_EXTENSIONS)})", file=path)
    else:
        check_readable(path)
        base = os.path.dirname(os.path.abspath(path))
        files = []
        try:
            with open(path, encoding="utf-8") as f:
                for line in f:
                    line = line.strip()
                    if not line or line.startswith("#"):
                        continue
                    files.append(line if os.path.isabs(line) else os.path.join(base, line))
        except UnicodeDecodeError:
            raise MigratorError("not a text list of image paths (give a folder or a .txt list)",
                                file=path) from None
        if not files:
            raise MigratorError("the list file names no images", file=path)
    if limit is not None:
        if limit < 1:
            raise MigratorError(f"--limit must be at least 1, got {limit}")
        files = files[:limit]
    return files


def is_set(spec) -> bool:
    """Does ``spec`` describe more than what one ``make_input`` call returns at once?"""
    return spec.kind in ("images", "arrays")


class InputSet:
    """A lazily read, batched input set.  ``len()`` samples; :meth:`batches` streams them;
    :meth:`sample` reads one (e.g. to jump to the worst sample)."""

    def __init__(self, graph, spec):
        self.graph = graph
        self.spec = spec
        self._arrays: dict[str, np.ndarray] | None = None
        self._single = None
        if spec.kind == "images":
            self.files = image_files(spec.path, spec.limit)
            self.n = len(self.files)
        elif spec.kind == "arrays":
            self._arrays = _open_arrays(graph, spec.path)
            n = len(next(iter(self._arrays.values())))
            self.n = n if spec.limit is None else min(n, spec.limit)
            if spec.limit is not None and spec.limit < 1:
                raise MigratorError(f"--limit must be at least 1, got {spec.limit}")
        else:
            x, desc = make_input(graph, spec)
            self._single = (x, desc)
            first = next(iter(x.values())) if isinstance(x, dict) else x
            self.n = int(first.shape[0])

    def __len__(self) -> int:
        return self.n

    def names(self) -> list[str]:
        if self.spec.kind == "images":
            return [os.path.basename(f) for f in self.files]
        if self.spec.kind == "arrays":
            stem = os.path.basename(self.spec.path)
            return [f"{stem}[{i}]" for i in range(self.n)]
        return [f"sample {i}" for i in range(self.n)]

    def describe(self) -> dict[str, Any]:
        if self._single is not None:
            return self._single[1]
        d = {"kind": self.spec.kind, "path": os.path.abspath(self.spec.path), "samples": self.n,
             "limit": self.spec.limit}
        if self.spec.kind == "images":
            d["order"] = "sorted by file name" if os.path.isdir(self.spec.path) else "as listed"
            d["preprocessing"] = self.spec.preprocessing.to_dict()
            d["shape"] = list(_model_shape(self.graph))
        else:
            d["shape"] = {k: list(v.shape) for k, v in self._arrays.items()}
        return d

    def _load(self, lo: int, hi: int):
        if self.spec.kind == "images":
            xs = [preprocess_image(self.graph, f, self.spec.preprocessing)[0] for f in self.files[lo:hi]]
            return np.stack(xs).astype(np.float32, copy=False)
        arrs = {k: np.ascontiguousarray(v[lo:hi], dtype=np.float32) for k, v in self._arrays.items()}
        return next(iter(arrs.values())) if len(arrs) == 1 else arrs

    def batches(self, batch_size: int | None = None) -> Iterator[Batch]:
        """Yield :class:`Batch` es of at most ``batch_size`` samples in set order."""
        names = self.names()
        if self._single is not None:
            yield Batch(self._single[0], names, 0)
            return
        bs = int(batch_size or self.spec.batch_size or 1)
        if bs < 1:
            raise MigratorError(f"--batch-size must be at least 1, got {bs}")
        for lo in range(0, self.n, bs):
            hi = min(self.n, lo + bs)
            yield Batch(self._load(lo, hi), names[lo:hi], lo)

    def sample(self, i: int):
        """(x of one sample with its batch axis, its name)."""
        if not 0 <= i < self.n:
            raise MigratorError(f"sample {i} is outside the set (0..{self.n - 1})")
        if self._single is not None:
            x = self._single[0]
            x = {k: v[i:i + 1] for k, v in x.items()} if isinstance(x, dict) else x[i:i + 1]
            return x, self.names()[i]
        return self._load(i, i + 1), self.names()[i]


def open_input_set(graph, spec) -> InputSet:
    """The :class:`InputSet` of ``spec`` (validated now: the files exist, the arrays fit);
    single inputs (random, one image, one array) are a set of one batch."""
    return InputSet(graph, spec)


def _model_shape(graph):
    return model_input_shape(graph, 1)


def _open_arrays(graph, path: str) -> dict[str, np.ndarray]:
    """Arrays with a leading set axis, keyed by input name; .npy memory-mapped."""
    check_readable(path)
    ins = graph.input_nodes
    if not ins:
        raise MigratorError("the model has no input layer", file=path)
    if path.lower().endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as z:
                keys = list(z.files)
                names = [n.name for n in ins]
                if len(ins) == 1 and len(keys) == 1:
                    arrays = {names[0]: np.asarray(z[keys[0]])}
                else:
                    missing = [n for n in names if n not in keys]
                    if missing:
                        raise MigratorError(f"the .npz must hold one array per input ({', '.join(names)});"
                                            f" missing {', '.join(missing)}", file=path)
                    arrays = {n: np.asarray(z[n]) for n in names}
        except MigratorError:
            raise
        except Exception as e:  # noqa: BLE001 - user file
            raise MigratorError(f"cannot read .npz input: {e}", file=path) from None
    else:
        try:
            a = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as e:  # noqa: BLE001 - user file
            raise MigratorError(f"cannot read .npy input: {e}", file=path) from None
        if len(ins) != 1:
            raise MigratorError(f"the model has {len(ins)} inputs: give an .npz with one array per "
                                "input name", file=path)
        arrays = {ins[0].name: a}
    lengths = set()
    for node in ins:
        a, want = arrays[node.name], node.attrs.get("shape")
        if want is not None and a.ndim == len(want) - 1:
            raise MigratorError(f"input '{node.name}' has shape {tuple(a.shape)}: an input set needs a "
                                f"leading sample axis, {tuple(want)} (NCHW)", file=path)
        if want is not None and (a.ndim != len(want) or any(
                w is not None and i > 0 and w != d for i, (w, d) in enumerate(zip(want, a.shape)))):
            raise MigratorError(f"input '{node.name}' has shape {tuple(a.shape)}, the model wants "
                                f"{tuple(want)} (NCHW, any number of samples)", file=path)
        lengths.add(int(a.shape[0]))
    if len(lengths) != 1:
        raise MigratorError(f"the arrays hold different numbers of samples ({sorted(lengths)})", file=path)
    if lengths == {0}:
        raise MigratorError("the input set is empty (0 samples)", file=path)
    return arrays
