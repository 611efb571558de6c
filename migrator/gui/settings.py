"""Persistent settings (QSettings) with typed defaults in one place."""
from __future__ import annotations

import json
import os
from typing import Any

from PySide6.QtCore import QSettings

ORG = "Migrator"
APP = "Migrator"

DEFAULTS: dict[str, Any] = {
    "recent_files": [],          # list of lists of paths (one model = one entry)
    "recent_max": 8,
    "theme": "auto",             # 'auto' | 'light' | 'dark'
    "compare/input_kind": "random",
    "compare/seed": 0,
    "compare/npy_path": "",
    "compare/image_path": "",
    "compare/images_path": "",
    "compare/images_limit": 0,
    "compare/batch_size": 8,
    "compare/channel_order": "BGR",
    "compare/scale": 1.0,
    "compare/runtime": "builtin",
    "compare/legacy_command": "",
    "plots/log_scale": True,
    "export/formats": ["keras"],
    "plugins": [],               # plugin files (Python code Migrator runs: docs/plugins.md)
    "last_dir": "",
    "window/geometry": None,
    "window/state": None,
}


def _recent_key(paths: list[str]) -> tuple[str, ...]:
    return tuple(sorted(os.path.normcase(os.path.abspath(p)) for p in paths))


class Settings:
    """Typed wrapper over QSettings.  ``Settings(path)`` uses an INI file (tests)."""

    def __init__(self, path: str | None = None):
        if path is not None:
            self.q = QSettings(path, QSettings.Format.IniFormat)
        else:
            self.q = QSettings(ORG, APP)

    def get(self, key: str) -> Any:
        default = DEFAULTS.get(key)
        if not self.q.contains(key):
            return default
        raw = self.q.value(key)
        if isinstance(default, (list, dict)):
            if isinstance(raw, str):
                try:
                    val = json.loads(raw)
                except ValueError:
                    return default
                return val if isinstance(val, type(default)) else default
            return default
        if isinstance(default, bool):
            if isinstance(raw, str):
                return raw.lower() in ("1", "true", "yes")
            return bool(raw)
        if isinstance(default, int):
            try:
                return int(raw)
            except (TypeError, ValueError):
                return default
        if isinstance(default, float):
            try:
                return float(raw)
            except (TypeError, ValueError):
                return default
        return raw

    def set(self, key: str, value: Any) -> None:
        default = DEFAULTS.get(key)
        if isinstance(default, (list, dict)):
            value = json.dumps(value)
        self.q.setValue(key, value)

    def sync(self) -> None:
        self.q.sync()

    # ---- recent files -------------------------------------------------------------
    def recent(self) -> list[list[str]]:
        out, seen = [], set()
        for e in self.get("recent_files"):
            if isinstance(e, list) and e and all(isinstance(p, str) for p in e) \
                    and _recent_key(e) not in seen:
                seen.add(_recent_key(e))
                out.append(e)
        return out

    def add_recent(self, paths: list[str]) -> None:
        """Most recent first; the same model given with its files in another order (or by
        another spelling of the same path) is one entry."""
        paths = [str(p) for p in paths]
        key = _recent_key(paths)
        lst = [e for e in self.recent() if _recent_key(e) != key]
        lst.insert(0, paths)
        self.set("recent_files", lst[: int(self.get("recent_max"))])

    def clear_recent(self) -> None:
        self.set("recent_files", [])
