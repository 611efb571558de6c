"""A model and its report are one set: the files of one save replaced together.

A save writes every file of the set (the model, its ``--also`` formats, the JSON/Markdown/HTML
report and its figures) under temporary names beside the targets, checks them, and only then
*commits*: it writes a journal (``.<name>.migrator-set.json``, atomically) listing every
``temp -> target`` move, makes the moves (``os.replace``: microseconds each) and removes the
journal.  A process killed at any moment leaves either

* no journal: the old set untouched (the temporaries are swept by the next save into that
  folder, :mod:`migrator.core.tempfiles`), or
* a journal: the next save into that folder (or :func:`recover`) finishes the moves first, so the
  folder holds the complete new set.

Never a model beside another run's report.
"""
from __future__ import annotations

import json
import os
import re
import shutil

from .tempfiles import pid_alive

_JOURNAL = re.compile(r"^\..+\.migrator-set\.json$")


def journal_path(target: str) -> str:
    d = os.path.dirname(os.path.abspath(target)) or "."
    return os.path.join(d, f".{os.path.basename(target.rstrip('/'))}.migrator-set.json")


def _replace(tmp: str, target: str) -> None:
    if os.path.isdir(tmp) and os.path.isdir(target) and not os.path.islink(target):
        old = target.rstrip("/\\") + f".old-{os.getpid()}"
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
        return
    os.replace(tmp, target)


def _write_journal(path: str, moves: list[tuple[str, str]]) -> None:
    tmp = path + f".{os.getpid()}.part"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"pid": os.getpid(), "moves": [[os.path.abspath(a), os.path.abspath(b)] for a, b in moves]}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def commit(moves: list[tuple[str, str]], journal: str) -> None:
    """Move every ``(temp, target)`` into place as one set (see the module docstring)."""
    _write_journal(journal, moves)
    for tmp, target in moves:
        _replace(tmp, target)
    os.remove(journal)


def recover(directory: str) -> list[str]:
    """Finish the commits a killed save left in ``directory`` (journals whose process is gone);
    returns the targets completed."""
    done: list[str] = []
    try:
        names = os.listdir(directory or ".")
    except OSError:
        return done
    for name in names:
        if not _JOURNAL.match(name):
            continue
        path = os.path.join(directory, name)
        try:
            with open(path, encoding="utf-8") as f:
                j = json.load(f)
        except (OSError, ValueError):
            continue
        if pid_alive(int(j.get("pid", 0))) and int(j.get("pid", 0)) != os.getpid():
            continue                       # a save in progress in another process
        for tmp, target in j.get("moves", []):
            if os.path.lexists(tmp):
                _replace(tmp, target)
                done.append(target)
        os.remove(path)
    return done
