"""A restricted unpickler for parameter files: numpy arrays and builtin containers only.

Pickles can run arbitrary code while loading (any global callable can be named by the
file).  :func:`load` admits only the handful of globals numpy needs to rebuild arrays,
dtypes and scalars (under both the numpy 1 ``numpy.core`` and numpy 2 ``numpy._core``
names) plus a few harmless builtins; any other global makes it raise
:class:`MigratorError` *before* anything is called.  Python 2 pickles (Lasagne Recipes)
load with ``encoding='latin1'``.
"""
from __future__ import annotations

import gzip
import io
import os
import pickle

from ..errors import MigratorError


def _allowed() -> dict[tuple[str, str], object]:
    import collections

    import numpy as np
    try:
        from numpy._core import multiarray as ma
        from numpy._core import numeric as nm
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray as ma  # type: ignore
        from numpy.core import numeric as nm  # type: ignore
    table: dict[tuple[str, str], object] = {}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(mod, "_reconstruct")] = ma._reconstruct
        table[(mod, "scalar")] = ma.scalar
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        if hasattr(nm, "_frombuffer"):
            table[(mod, "_frombuffer")] = nm._frombuffer
    table[("numpy", "ndarray")] = np.ndarray
    table[("numpy", "dtype")] = np.dtype
    # numpy >= 1.25 pickles dtypes as numpy.dtypes.Float32DType etc. is not used by dtype
    # pickling; builtins that only build plain data:
    table[("builtins", "set")] = set
    table[("builtins", "frozenset")] = frozenset
    table[("builtins", "complex")] = complex
    table[("builtins", "slice")] = slice
    table[("builtins", "bytearray")] = bytearray
    table[("collections", "OrderedDict")] = collections.OrderedDict
    # Python 3 pickles of bytes at protocol < 3 call _codecs.encode(text, 'latin1')
    table[("_codecs", "encode")] = _safe_encode
    return table


def _safe_encode(obj, encoding="utf-8", errors="strict"):
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1", "iso-8859-1", "utf-8"):
        raise pickle.UnpicklingError("unexpected _codecs.encode call")
    return obj.encode(encoding, errors)


class _Refused(Exception):
    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


class RestrictedUnpickler(pickle.Unpickler):
    """Only admits the globals of :func:`_allowed`."""

    def __init__(self, f, **kw):
        super().__init__(f, **kw)
        self._table = _allowed()

    def find_class(self, module, name):
        obj = self._table.get((module, name))
        if obj is None:
            raise _Refused(f"{module}.{name}")
        return obj

    def persistent_load(self, pid):
        raise _Refused(f"persistent id {str(pid)[:40]!r}")


def _unpickle(f, *, file: str | None, encoding: str):
    try:
        return RestrictedUnpickler(f, encoding=encoding).load()
    except _Refused as e:
        raise MigratorError(f"refusing to load this pickle: the pickle asks for {e.what}, "
                            "which could run code (only numpy arrays and plain containers "
                            "are accepted)", file=file) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, UnicodeDecodeError, MemoryError, OSError) as e:
        raise MigratorError(f"not a readable pickle: {type(e).__name__}: {e}", file=file) from None


def loads(data: bytes, *, file: str | None = None, encoding: str = "latin1"):
    """Unpickle ``data`` with the restricted unpickler; MigratorError when refused."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise MigratorError(f"not a readable gzip file: {e}", file=file) from None
    return _unpickle(io.BytesIO(data), file=file, encoding=encoding)


def load(path: str | os.PathLike, *, encoding: str = "latin1"):
    """Load a pickle file with the restricted unpickler (gzip-compressed files too).

    Streams from the file (no second copy of a large file in memory)."""
    path = os.fspath(path)
    try:
        f = open(path, "rb")
    except OSError as e:
        raise MigratorError(f"cannot read the file: {e.strerror or e}", file=path) from None
    with f:
        head = f.read(2)
        f.seek(0)
        if head == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=f) as gz:
                return _unpickle(io.BufferedReader(gz), file=path, encoding=encoding)
        return _unpickle(f, file=path, encoding=encoding)
