"""File checks and atomic writes (the report, and each exported artifact: the export of every
format, re-checked in a fresh process, is :mod:`migrator.core.export`).

Every file is written to a temporary file in the destination directory and renamed into
place (``os.replace``), so a crash or a full disk never leaves a half-written file under
the final name.  An existing file is never overwritten unless ``force=True``.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from .errors import MigratorError
from .tempfiles import temp_path

MODEL_FORMATS = {"keras": ".keras", "h5": ".h5", "weights": ".weights.h5"}


def format_of(path: str) -> str:
    p = path.lower()
    if p.endswith(".weights.h5"):
        return "weights"
    if p.endswith(".keras"):
        return "keras"
    if p.endswith((".h5", ".hdf5")):
        return "h5"
    raise MigratorError("output must end in .keras, .h5 or .weights.h5", file=path)


def check_readable(path: str | None) -> None:
    """Raise a one-line MigratorError when ``path`` (if given) is missing, a directory or
    not readable."""
    if path is None:
        return
    if not os.path.exists(path):
        raise MigratorError("no such file", file=path)
    if os.path.isdir(path):
        raise MigratorError("is a directory, not a file", file=path)
    if not os.access(path, os.R_OK):
        raise MigratorError("permission denied (file is not readable)", file=path)


def check_writable(path: str, force: bool) -> None:
    d = os.path.dirname(os.path.abspath(path)) or "."
    if os.path.isdir(path):
        raise MigratorError("is a directory", file=path)
    if os.path.exists(path) and not force:
        raise MigratorError("file exists (use --force to overwrite)", file=path)
    if not os.path.isdir(d):
        raise MigratorError("the output directory does not exist", file=path)
    if not os.access(d, os.W_OK):
        raise MigratorError("the output directory is not writable", file=path)


def atomic_write(path: str, writer: Callable[[str], None], *, force: bool = False) -> str:
    """Call ``writer(tmp_path)`` then rename tmp_path to ``path``.  The temp file keeps the
    destination's suffix (Keras dispatches on it)."""
    check_writable(path, force)
    d = os.path.dirname(os.path.abspath(path)) or "."
    base = os.path.basename(path)
    suffix = ".weights.h5" if base.lower().endswith(".weights.h5") else os.path.splitext(base)[1]
    # .<base>.migrator-<pid>-<hex>.tmp<suffix>; stale ones (a killed save) are swept first
    tmp = temp_path(d, base, suffix)  # writers (Keras, h5py) create the file themselves
    try:
        writer(tmp)
        if not force and os.path.exists(path):
            raise MigratorError("file appeared while writing; not overwritten", file=path)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_text(path: str, text: str, *, force: bool = False) -> str:
    def w(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return atomic_write(path, w, force=force)


def companion_paths(out_path: str, formats: Iterable[str]) -> list[str]:
    """out.keras + formats ('keras','h5','weights') -> the list of model files to write."""
    stem = out_path
    for ext in (".weights.h5", ".keras", ".h5", ".hdf5"):
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
            break
    paths = [out_path]
    for f in formats:
        p = stem + MODEL_FORMATS[f]
        if p not in paths:
            paths.append(p)
    return paths

