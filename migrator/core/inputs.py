"""Input sets: a folder (or list file) of images, or ``.npy``/``.npz`` arrays with a batch
dimension, streamed in batches so memory stays bounded by the batch, not the set.

>>> s = open_input_set(graph, InputSpec(kind="images", path="val/", limit=200))  # doctest: +SKIP
>>> for batch in s.batches(16):                                                 # doctest: +SKIP
...     batch.x, batch.names, batch.start

* Images: the files of a folder with an image extension, in sorted (deterministic) order,
  not recursive; or a text file listing one path per line (relative paths are taken
  relative to the list file; blank lines and ``#`` comments are skipped), kept in its
  order.  Each image is preprocessed exactly as a single ``--image`` (see
  :class:`~migrator.core.pipeline.ImagePreprocessing`).
* ``.npy``: an NCHW array whose first axis is the set; opened memory-mapped, so only the
  current batch is read.  ``.npz``: one such array per network input name (a model with
  one input also accepts any single key); all arrays must have the same length.
* Everything else (random, one image) is a set of one batch.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import MigratorError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


@dataclass
class Batch:
    x: Any                 # np.ndarray (N, ...) source layout float32, or {input name: array}
    names: list[str]       # one per sample (file name, or 'name[i]' for arrays)
    start: int             # index of the first sample in the set

    def __len__(self) -> int:
        return len(self.names)


def image_files(path: str, limit: int | None = None) -> list[str]:
    """The images of folder ``path`` (sorted by file name) or of list file ``path``."""
    from .pipeline import _check_readable
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
        _check_readable(path)
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
            from .pipeline import make_input
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
            from .pipeline import preprocess_image
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
    return InputSet(graph, spec)


def _model_shape(graph):
    from .pipeline import model_input_shape
    return model_input_shape(graph, 1)


def _open_arrays(graph, path: str) -> dict[str, np.ndarray]:
    """Arrays with a leading set axis, keyed by input name; .npy memory-mapped."""
    from .pipeline import _check_readable
    _check_readable(path)
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
