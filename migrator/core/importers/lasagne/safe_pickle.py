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
import zlib

from ...errors import MigratorError


def _allowed() -> dict[tuple[str, str], object]:
    """numpy's array/dtype/scalar builders and plain-data builtins (one table, shared with the
    whole-network unpickler of :mod:`.network_pickle`)."""
    from .network_pickle import numpy_globals
    return numpy_globals()


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


class _TooMuch(Exception):
    """The pickle wants more data than allowed (budget) or than the file holds."""


class _BoundedReader:
    """File-like view the C unpickler reads through: every read is checked *before* it
    happens against the bytes the file still holds (plain files) and against a budget
    (the bytes the model's parameters can need), so a forged length or a decompression
    bomb stops without materializing the data."""

    def __init__(self, f, *, size: int | None, budget):
        self._f = f
        self._size = size          # bytes in the stream (None: unknown, e.g. gzip)
        if callable(budget):       # budget by pickle protocol (0 when there is no PROTO)
            try:
                head = f.peek(2)[:2]
            except (OSError, EOFError, zlib.error):   # reported by the unpickler's read
                head = b""
            budget = budget(head[1] if len(head) == 2 and head[0] == 0x80 else 0)
        self._budget = budget
        self.consumed = 0

    def _take(self, n: int) -> None:
        if n is None or n < 0:
            n = (self._size - self.consumed) if self._size is not None else (1 << 62)
        if self._size is not None and self.consumed + n > self._size and n > 1 << 16:
            raise _TooMuch(f"the pickle declares a data block of {_human(n)} but the file "
                           f"holds only {_human(self._size - self.consumed)} more "
                           "(truncated or corrupt file)")
        if self._budget is not None and self.consumed + n > self._budget and n > 0:
            nxt = f"; the next block alone is {_human(n)}" if n >= 1 << 20 else ""
            raise _TooMuch(f"the pickle holds more data than the network's parameters can need "
                           f"(over {_human(self._budget)}{nxt}): not a parameter file for this "
                           "network, or a corrupt or hostile file")

    def read(self, n=-1):
        self._take(n)
        data = self._f.read(n)
        self.consumed += len(data)
        return data

    def readinto(self, b):
        self._take(len(b))
        k = self._f.readinto(b)
        self.consumed += k or 0
        return k

    def readline(self, limit=-1):
        room = -1 if self._budget is None else max(self._budget - self.consumed, 0) + 1
        line = self._f.readline(room)
        self.consumed += len(line)
        if self._budget is not None and self.consumed > self._budget:
            raise _TooMuch(f"the pickle holds more data than the network's parameters can need "
                           f"(over {_human(self._budget)}): not a parameter file for this "
                           "network, or a corrupt or hostile file")
        return line

    def peek(self, n=0):
        return self._f.peek(n)


def _human(n: float) -> str:
    for unit, k in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= k:
            return f"{n / k:.1f} {unit}"
    return f"{int(n)} bytes"


def _reason(e: BaseException) -> str:
    """A worded reason for an unpickling failure (never an empty message)."""
    text = " ".join(str(e).split())
    if isinstance(e, MemoryError):
        return ("it declares an object larger than the available memory "
                "(a forged length: corrupt or hostile file)")
    if isinstance(e, RecursionError):
        return "its objects are nested too deeply"
    if isinstance(e, EOFError):
        return "the file ends in the middle of the pickle (truncated?)"
    if text.startswith("unregistered extension code"):
        code = text.rsplit(" ", 1)[-1]
        return (f"it refers to extension code {code} of Python's copyreg registry, which is "
                "not registered here (not a parameter file written by numpy/Lasagne, or corrupt)")
    if "truncated" in text:
        return "the pickle data is truncated (the file ends early)"
    if isinstance(e, UnicodeDecodeError):
        return f"its text cannot be decoded ({text[:120]})"
    if not text:
        return f"{type(e).__name__} with no detail (corrupt data)"
    return f"{text[:200]}"


def _unpickle(f, *, file: str | None, encoding: str):
    try:
        return RestrictedUnpickler(f, encoding=encoding).load()
    except _Refused as e:
        raise MigratorError(f"refusing to load this pickle: the pickle asks for {e.what}, "
                            "which could run code (only numpy arrays and plain containers "
                            "are accepted)", file=file) from None
    except _TooMuch as e:
        raise MigratorError(str(e), file=file) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, UnicodeDecodeError, MemoryError, OSError, RecursionError,
            OverflowError, zlib.error, gzip.BadGzipFile) as e:
        raise MigratorError(f"not a readable pickle: {_reason(e)}", file=file) from None


def loads(data: bytes, *, file: str | None = None, encoding: str = "latin1",
          max_bytes=None):
    """Unpickle ``data`` with the restricted unpickler; MigratorError when refused."""
    if data[:2] == b"\x1f\x8b":
        stream = io.BufferedReader(gzip.GzipFile(fileobj=io.BytesIO(data)))
        return _unpickle(_BoundedReader(stream, size=None, budget=max_bytes), file=file,
                         encoding=encoding)
    return _unpickle(_BoundedReader(io.BufferedReader(io.BytesIO(data)), size=len(data),
                                    budget=max_bytes), file=file, encoding=encoding)


def load(path: str | os.PathLike, *, encoding: str = "latin1", max_bytes=None):
    """Load a pickle file with the restricted unpickler (gzip-compressed files too).

    Streams from the file (no second copy of a large file in memory).  ``max_bytes``: the
    most (uncompressed) pickle bytes to read; a block that would cross it is refused before
    it is read (a gzip bomb or forged length never gets materialized); an int, or a function
    of the pickle protocol (0 for protocols 0/1, whose text escapes take more bytes)."""
    path = os.fspath(path)
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as e:
        raise MigratorError(f"cannot read the file: {e.strerror or e}", file=path) from None
    with f:
        head = f.read(2)
        size = os.fstat(f.fileno()).st_size
        f.seek(0)
        if head == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=f) as gz:
                return _unpickle(_BoundedReader(io.BufferedReader(gz), size=None, budget=max_bytes),
                                 file=path, encoding=encoding)
        return _unpickle(_BoundedReader(f, size=size, budget=max_bytes), file=path,
                         encoding=encoding)
