"""Lasagne parameter files (pickle / .npz) read with bounded memory.

The builder script has already told us what the network needs (``expected``: one
``[layer, param name, shape]`` per parameter, in ``get_all_params`` order) before a single
value is read, so nothing much beyond that is ever materialized:

* **pickles** are read through :func:`.safe_pickle.load` with a byte budget per declared
  value (8 bytes at protocol >= 3: float64 files; 16 at protocol 2, 32 at protocols 0/1, whose
  array data is latin-1 or escaped text) plus a small margin for extras such as
  ``'synset words'``; a data block that would cross it is refused *before* it is read;
* **nested lists** (values pickled as Python lists) are walked with a node budget of the
  declared count: a list shared 2^27 times through the pickle memo, a ragged list or one
  nested deeper than the parameter's rank is refused without building an array;
* **.npz members** are checked from their zip entry and ``.npy`` header (dtype, shape, and
  header + data size == the member's uncompressed size) before anything is inflated, and
  against the declared shape of the parameter;
* every array must be numeric and finite; integer/bool arrays and float64 values outside
  the float32 range are reported naming the layer.

Errors are :class:`MigratorError` naming the file and (where known) the layer.
"""
from __future__ import annotations

import math
import os
import struct
import zipfile
import zlib

import numpy as np

from ...errors import MigratorError
from .safe_pickle import load as load_pickle

VALUE_KEYS = ("param values", "param_values", "values", "params", "parameters", "weights")
#: bytes a pickle may hold beyond 8 per declared value (pickle framing, labels, mean image)
PICKLE_MARGIN = 1 << 20
#: node budget for a nested list when nothing is declared (tests calling without a model)
_FALLBACK_NODES = 1 << 24
_F32_MAX = float(np.finfo(np.float32).max)


def _mb(n: float) -> str:
    if n >= 1 << 30:
        return f"{n / (1 << 30):.1f} GiB"
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f} MiB"
    return f"{int(n)} bytes"


def _count(shape) -> int:
    return math.prod(int(d) for d in shape)


def byte_budget(expected: list | None):
    """Most bytes a pickle for ``expected`` may hold, as a function of its protocol (None:
    no model known).  Per declared value: 8 bytes for protocol >= 3 (float64 as raw bytes);
    16 for protocol 2 (Python 3 writes array data as latin-1 text, up to 2 bytes per byte);
    32 for protocols 0/1 (escaped text, up to 4 characters per byte: Python 2's default)."""
    if expected is None:
        return None
    n = 0
    for _, _, shp in expected:
        if shp is None:
            return None
        n += _count(shp)

    def budget(protocol: int) -> int:
        per = 8 if protocol >= 3 else 16 if protocol == 2 else 32
        return per * n + PICKLE_MARGIN
    return budget


def load_param_values(params_path, expected: list | None = None
                      ) -> tuple[list[np.ndarray], dict, list[str]]:
    """Read a parameter file -> (arrays in file order, extra dict entries, warnings).

    ``expected``: ``[[layer, param, shape], ...]`` in get_all_params order (the child's
    ``desc['params']``); when given, the count and every shape are checked *before* values
    are materialized and errors name the layer."""
    path = os.fspath(params_path)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise MigratorError(f"cannot read the parameter file: {e.strerror or e}", file=path) from None
    if not head:
        raise MigratorError("not a readable pickle or .npz: the parameter file is empty (0 bytes)",
                            file=path)
    warnings: list[str] = []
    extra: dict = {}
    if head[:4] == b"PK\x03\x04":
        values = _load_npz(path, expected, warnings)
    else:
        obj = load_pickle(path, max_bytes=byte_budget(expected))
        if isinstance(obj, (list, tuple)):
            values = list(obj)
        elif isinstance(obj, dict):
            key = next((k for k in VALUE_KEYS if k in obj), None)
            if key is None:
                raise MigratorError("the pickle is a dict without a parameter list (looked for "
                                    f"{', '.join(repr(k) for k in VALUE_KEYS)}; found "
                                    f"{', '.join(repr(str(k)[:40]) for k in list(obj)[:10])})",
                                    file=path)
            values = obj[key]
            if isinstance(values, np.ndarray) and values.dtype == object and values.ndim == 1:
                values = list(values)
            if not isinstance(values, (list, tuple)):
                raise MigratorError(f"the entry {key!r} is a {type(values).__name__}, not a list "
                                    "of arrays", file=path)
            values = list(values)
            extra = {str(k)[:200]: v for k, v in obj.items() if k != key}
        elif isinstance(obj, np.ndarray) and obj.dtype == object and obj.ndim == 1:
            values = list(obj)
        else:
            raise MigratorError(f"the pickle holds a {type(obj).__name__}, not a list of parameter "
                                "arrays or a dict with one", file=path)
        for i, v in enumerate(values):   # cheap checks first (no values materialized)
            if isinstance(v, np.ndarray) and (v.dtype.hasobject or v.dtype.kind not in "fiub"):
                what, layer = _where(i, expected[i] if expected and i < len(expected) else None)
                raise MigratorError(f"{what} is not numeric (dtype {v.dtype})", file=path,
                                    layer=layer)
        _check_count(expected, len(values), path)
    out = []
    for i, v in enumerate(values):
        want = expected[i] if expected is not None else None
        out.append(_checked_array(v, i, want, path, warnings))
    return out, extra, warnings


# ---- checks ---------------------------------------------------------------------------
def _check_count(expected, m: int, path: str) -> None:
    if expected is None or len(expected) == m:
        return
    n = len(expected)
    detail, layer = "", None
    if m < n:
        lay, pn, shp = expected[m]
        layer = lay
        detail = (f"; the first parameter without a value is layer '{lay}' param '{pn}' "
                  f"{tuple(shp or ())}")
    raise MigratorError(f"the file holds {m} parameter arrays but the network built by the "
                        f"builder has {n} parameters{detail}", file=path, layer=layer)


def _where(i: int, want) -> tuple[str, str | None]:
    if want is None:
        return f"parameter array {i}", None
    return f"array {i} (param '{want[1]}')", want[0]


def _checked_array(v, i: int, want, path: str, warnings: list[str]) -> np.ndarray:
    what, layer = _where(i, want)
    shape = tuple(int(d) for d in want[2]) if want is not None and want[2] is not None else None
    if isinstance(v, np.ndarray):
        a = v
    elif isinstance(v, (list, tuple)):
        a = nested_to_array(v, shape, what=what, file=path, layer=layer)
    elif isinstance(v, (int, float, bool, np.generic)):
        a = np.asarray(v)
    else:
        raise MigratorError(f"{what} is a {type(v).__name__}, not an array of numbers",
                            file=path, layer=layer)
    if a.dtype.hasobject or a.dtype.kind not in "fiub":
        raise MigratorError(f"{what} is not numeric (dtype {a.dtype})", file=path, layer=layer)
    if shape is not None and tuple(a.shape) != shape:
        raise MigratorError(f"array {i} has shape {tuple(a.shape)} but param '{want[1]}' expects "
                            f"{shape}", file=path, layer=layer)
    check_values(a, what, path, layer, warnings)
    if a.dtype.kind in "iub":
        a = a.astype(np.float32)
    return a


def check_values(a: np.ndarray, what: str, path: str, layer: str | None,
                 warnings: list[str]) -> None:
    """Refuse NaN/Inf and float values outside float32; warn about integer/bool arrays."""
    kind = a.dtype.kind
    if kind in "iub":
        warnings.append(f"{os.path.basename(path)}: layer '{layer or '?'}': {what} holds "
                        f"{'booleans' if kind == 'b' else 'integers'} (dtype {a.dtype}), not "
                        "floats; used as float32")
        if kind in "iu" and a.size and int(np.abs(a).max()) > 1 << 24:
            raise MigratorError(f"{what} holds integers too large for float32 (max "
                                f"|v| = {int(np.abs(a).max())})", file=path, layer=layer)
        return
    if not a.size:
        return
    with np.errstate(all="ignore"):
        finite = np.isfinite(a)
        if not finite.all():
            bad = int(a.size - int(finite.sum()))
            kinds = [k for k, f in (("NaN", np.isnan), ("Inf", np.isinf)) if f(a).any()]
            raise MigratorError(f"{what} contains {'/'.join(kinds)} values ({bad} of {a.size})",
                                file=path, layer=layer)
        if a.dtype.itemsize > 4:
            big = float(np.abs(a).max())
            if big > _F32_MAX:
                raise MigratorError(f"{what} holds values beyond the float32 range (max |v| = "
                                    f"{big:.3g}): they would overflow to inf", file=path,
                                    layer=layer)


def nested_to_array(v, shape: tuple | None, *, what: str, file: str, layer: str | None,
                    max_nodes: int | None = None) -> np.ndarray:
    """A nested list/tuple of numbers -> ndarray, visiting at most the declared number of
    nodes (memo-shared lists are never expanded beyond it); ragged or too-deep nesting and
    non-numbers are MigratorErrors."""
    dims = []
    cur = v
    limit = len(shape) if shape is not None else 32
    while isinstance(cur, (list, tuple)):
        dims.append(len(cur))
        if len(dims) > limit:
            raise MigratorError(f"{what} is a list nested deeper than "
                                f"{'its ' + str(limit) + ' dimensions' if shape is not None else '32 levels'}",
                                file=file, layer=layer)
        if not cur:
            break
        cur = cur[0]
    dims_t = tuple(dims)
    if shape is not None and dims_t != shape:
        raise MigratorError(f"{what} is a nested list of shape {dims_t} but the param expects "
                            f"{shape}", file=file, layer=layer)
    leaves = _count(dims_t)
    budget = max_nodes if max_nodes is not None else (
        leaves if shape is not None else _FALLBACK_NODES)
    if leaves > budget:
        raise MigratorError(f"{what} is a nested list of {leaves} values, more than allowed "
                            f"({budget})", file=file, layer=layer)
    # rectangular and numeric: walk every node once (bounded: the sizes were checked level
    # by level against dims, so the walk visits at most prod(dims) leaves)
    stack = [(v, 0)]
    while stack:
        node, d = stack.pop()
        if d < len(dims_t):
            if not isinstance(node, (list, tuple)) or len(node) != dims_t[d]:
                raise MigratorError(f"{what} is a ragged nested list (not a rectangular array "
                                    f"of shape {dims_t})", file=file, layer=layer)
            stack.extend((x, d + 1) for x in node)
        elif isinstance(node, (list, tuple)):
            raise MigratorError(f"{what} is a ragged nested list (a list where a number of the "
                                f"shape {dims_t} is expected)", file=file, layer=layer)
        elif not isinstance(node, (int, float, np.number, np.bool_)) or isinstance(node, complex):
            raise MigratorError(f"{what} holds a {type(node).__name__} where a number is "
                                "expected", file=file, layer=layer)
    try:
        return np.asarray(v)
    except (ValueError, TypeError, OverflowError) as e:
        raise MigratorError(f"{what} is not an array of numbers: {' '.join(str(e).split())}",
                            file=file, layer=layer) from None


# ---- .npz -----------------------------------------------------------------------------
def _npy_header(fp, member: str, path: str):
    """(shape, fortran_order, dtype, header length) of an .npy stream, or MigratorError."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(fp)
        else:
            shape, fortran, dtype = fmt._read_array_header(fp, version)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, SyntaxError, TypeError) as e:
        raise MigratorError(f"the .npz member {member} is not a readable .npy array: "
                            f"{' '.join(str(e).split())[:200] or type(e).__name__}",
                            file=path) from None
    return tuple(int(d) for d in shape), bool(fortran), dtype, fp.tell()


_ZIP_ERRORS = (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError,
               NotImplementedError, RuntimeError, zlib.error, struct.error, UnicodeError)


def _load_npz(path: str, expected, warnings: list[str]) -> list[np.ndarray]:
    try:
        return _load_npz_unguarded(path, expected, warnings)
    except MigratorError:
        raise
    except _ZIP_ERRORS as e:
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        raise MigratorError(f"not a readable .npz file: {reason} (corrupt or truncated zip)",
                            file=path) from None


def _load_npz_unguarded(path: str, expected, warnings: list[str]) -> list[np.ndarray]:
    zf = zipfile.ZipFile(path)
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        names = [i.filename for i in infos]
        odd = [n for n in names if not n.endswith(".npy")]
        if odd:
            raise MigratorError(f"the .npz holds {odd[0]!r}, which is not a .npy array", file=path)
        keys = [n[:-4] for n in names]
        if len(set(keys)) != len(keys):
            raise MigratorError("the .npz holds two members with the same name", file=path)
        order = list(range(len(keys)))
        if all(k.startswith("arr_") and k[4:].isdigit() for k in keys):
            order.sort(key=lambda j: int(keys[j][4:]))
            if [int(keys[j][4:]) for j in order] != list(range(len(keys))):
                raise MigratorError("the .npz arrays arr_N are not numbered 0..n-1", file=path)
        else:
            warnings.append(f"{os.path.basename(path)}: arrays are not named arr_0, arr_1, ...; "
                            "using them in the order stored in the file")
        _check_count(expected, len(keys), path)
        # headers first: nothing is inflated until every member is known to fit
        plans = []
        for pos, j in enumerate(order):
            info = infos[j]
            want = expected[pos] if expected is not None else None
            what, layer = _where(pos, want)
            what = f"{what} ({info.filename})"
            try:
                with zf.open(info) as fp:
                    shape, fortran, dtype, hlen = _npy_header(fp, info.filename, path)
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError,
                    RuntimeError) as e:
                raise MigratorError(f"not a readable .npz file ({info.filename}): {e}",
                                    file=path) from None
            if dtype.hasobject or dtype.kind not in "fiub":
                raise MigratorError(f"{what} is not numeric (dtype {dtype})", file=path,
                                    layer=layer)
            if any(d < 0 for d in shape):
                raise MigratorError(f"{what} declares a negative dimension {shape}", file=path,
                                    layer=layer)
            if want is not None and want[2] is not None and shape != tuple(want[2]):
                raise MigratorError(f"array {pos} has shape {shape} but param '{want[1]}' "
                                    f"expects {tuple(want[2])}", file=path, layer=layer)
            nbytes = _count(shape) * dtype.itemsize
            if hlen + nbytes != info.file_size:
                raise MigratorError(f"{what} declares shape {shape} {dtype} "
                                    f"({_mb(nbytes)}) but holds {_mb(max(info.file_size - hlen, 0))} "
                                    "of data (corrupt or forged file)", file=path, layer=layer)
            plans.append((info, shape, fortran, dtype, hlen, nbytes, what, layer))
        out = []
        for info, shape, fortran, dtype, hlen, nbytes, what, layer in plans:
            try:
                with zf.open(info) as fp:
                    fp.read(hlen)
                    buf = bytearray(nbytes)
                    got = fp.readinto(buf) if nbytes else 0
                    while got < nbytes:
                        k = fp.readinto(memoryview(buf)[got:])
                        if not k:
                            break
                        got += k
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError,
                    RuntimeError, ValueError) as e:
                raise MigratorError(f"{what}: the compressed data is corrupt: {e}", file=path,
                                    layer=layer) from None
            if got != nbytes:
                raise MigratorError(f"{what}: the data ends early ({got} of {nbytes} bytes)",
                                    file=path, layer=layer)
            a = np.frombuffer(buf, dtype=dtype)
            a = a.reshape(shape[::-1]).transpose() if fortran else a.reshape(shape)
            out.append(a)
        return out
