"""Temporary names Migrator writes next to the user's files, and the removal of leftovers.

A save writes ``.<name>.migrator-<pid>-<random>.tmp<suffix>`` in the destination folder and
renames it into place.  A process killed with SIGKILL (or a power cut) in the middle of a
save cannot remove its temp file, so every new save first sweeps the folder: a file is
removed only when its name matches this pattern exactly **and** the process that created it
is gone (pid not running) and it is older than a few seconds, or it is older than a day
(pid reuse).  Files left by Migrator versions before the pid was in the name
(``.<name>.<8 random chars>.tmp<model/report suffix>``) are removed when older than 10 minutes.
Nothing else is ever touched.  Private temp folders (``migrator-lasagne-<pid>-*`` in the
system temp dir) are swept the same way.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
import time

_SUFFIXES = r"(?:\.weights\.h5|\.keras|\.h5|\.hdf5|\.json|\.md|\.html|\.svg|\.tflite|\.txt|\.npz|\.npy)?"
_OURS = re.compile(r"^\..+\.migrator-(\d+)-[0-9a-f]{8}\.tmp" + _SUFFIXES + r"$")
_LEGACY = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp" + _SUFFIXES + r"$")
_DIR_OURS = re.compile(r"^migrator-lasagne-(\d+)-[a-z0-9_]{8}$")
_DIR_LEGACY = re.compile(r"^migrator-lasagne-[a-z0-9_]{8}$")

MIN_AGE_S = 5.0          # never touch anything younger (a save starting right now)
LEGACY_AGE_S = 600.0
MAX_AGE_S = 86400.0


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True      # exists (another user's) or cannot tell: keep
    return True


def _stale(m: re.Match | None, legacy: bool, age: float) -> bool:
    if age < MIN_AGE_S:
        return False
    if m is not None:
        return age > MAX_AGE_S or not pid_alive(int(m.group(1)))
    return legacy and age > LEGACY_AGE_S


def _stale_entries(directory: str, candidate, ours: re.Pattern, legacy_re: re.Pattern, dirs: bool):
    """The entries of ``directory`` that are Migrator's stale leftovers: a name ``candidate``
    accepts that ``ours`` (with the owner's pid) or ``legacy_re`` matches, a directory if
    ``dirs`` else a file (links never), old enough for :func:`_stale`."""
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    now = time.time()
    for e in entries:
        if not candidate(e.name):
            continue
        m = ours.match(e.name)
        legacy = m is None and legacy_re.match(e.name) is not None
        if m is None and not legacy:
            continue
        try:
            if not (e.is_dir if dirs else e.is_file)(follow_symlinks=False):
                continue
            age = now - e.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        if _stale(m, legacy, age):
            yield e


def sweep(directory: str) -> list[str]:
    """Remove Migrator's stale temp files in ``directory``; returns the removed paths."""
    removed = []
    for e in _stale_entries(directory, lambda n: n.startswith(".") and ".tmp" in n, _OURS, _LEGACY,
                            dirs=False):
        try:
            os.unlink(e.path)
        except OSError:
            continue
        removed.append(e.path)
    return removed


def temp_path(directory: str, base: str, suffix: str) -> str:
    """A fresh temp path ``<directory>/.<base>.migrator-<pid>-<hex8>.tmp<suffix>`` (nothing
    created; the name is free at return), after sweeping stale leftovers."""
    sweep(directory)
    for _ in range(100):
        p = os.path.join(directory, f".{base}.migrator-{os.getpid()}-{secrets.token_hex(4)}"
                                    f".tmp{suffix}")
        if not os.path.lexists(p):
            return p
    raise FileExistsError(f"no free temporary name in {directory}")  # pragma: no cover


def private_dir_prefix() -> str:
    """Prefix for a private ``tempfile.TemporaryDirectory`` (after sweeping stale ones)."""
    sweep_private_dirs()
    return f"migrator-lasagne-{os.getpid()}-"


def sweep_private_dirs(root: str | None = None) -> list[str]:
    """Remove Migrator's stale private temp directories in ``root`` (the system temp folder);
    returns the removed paths."""
    removed = []
    for e in _stale_entries(root or tempfile.gettempdir(), lambda n: n.startswith("migrator-lasagne-"),
                            _DIR_OURS, _DIR_LEGACY, dirs=True):
        shutil.rmtree(e.path, ignore_errors=True)
        removed.append(e.path)
    return removed
