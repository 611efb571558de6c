"""The core never imports Qt: checked statically (AST of every module) and dynamically
(importing every migrator.core module in a fresh interpreter loads no Qt binding)."""
from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import migrator.core

CORE = Path(migrator.core.__file__).resolve().parent
QT_ROOTS = {"PySide6", "PySide2", "PyQt5", "PyQt6", "pyqtgraph", "shiboken6", "shiboken2", "qtpy",
            "sip"}


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) \
                in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            out.append((node.lineno, node.args[0].value))
    return out


def test_no_qt_import_in_core_sources():
    files = sorted(CORE.rglob("*.py"))
    assert len(files) > 10
    bad = []
    for f in files:
        tree = ast.parse(f.read_text(encoding="utf-8"), filename=str(f))
        for line, name in _imports(tree):
            if name.split(".")[0] in QT_ROOTS:
                bad.append(f"{f.relative_to(CORE.parent.parent)}:{line}: import {name}")
    assert not bad, "\n".join(bad)


def test_ast_check_catches_qt(tmp_path):
    # the checker itself must be able to fail
    src = "import os\nfrom PySide6.QtCore import QObject\nimport importlib\nimportlib.import_module('pyqtgraph')\n"
    names = [n for _, n in _imports(ast.parse(src))]
    assert "PySide6.QtCore" in names and "pyqtgraph" in names


def test_importing_every_core_module_loads_no_qt():
    mods = ["migrator.core"] + [m.name for m in pkgutil.walk_packages([str(CORE)], "migrator.core.")
                                if not m.name.endswith("_pb2")]
    code = (
        "import importlib, sys\n"
        f"mods = {mods!r}\n"
        "failed = []\n"
        "for m in mods:\n"
        "    try:\n"
        "        importlib.import_module(m)\n"
        "    except Exception as e:\n"
        "        failed.append((m, repr(e)))\n"
        f"qt = sorted(k for k in sys.modules if k.split('.')[0] in {sorted(QT_ROOTS)!r})\n"
        "print('QT', qt)\n"
        "print('FAILED', failed)\n"
        "assert not qt, qt\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False,
                       cwd=str(CORE.parent.parent))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "QT []" in r.stdout
    assert len(mods) > 10
