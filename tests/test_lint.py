"""`make lint` is part of the tests: the code passes the pinned ruff with the project's rules."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ruff_passes():
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise",
                        "migrator", "tests", "benchmarks", "resources"],
                       cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-1000:]


# ---------------------------------------------------------------------------------------------
# The architecture, checked statically: no import cycle inside migrator/core, no reaching into
# another module's _private names, the reference and the Keras side independent of each other,
# no module named after a delivery and no issue numbers in the code.
# ---------------------------------------------------------------------------------------------
PKG = Path(REPO) / "migrator"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    out = {}
    for f in sorted(PKG.rglob("*.py")):
        if "lasagne_recorder" in f.parts or f.name.endswith("_pb2.py") or "resources" in f.parts:
            continue
        out[_module_name(f)] = f
    return out


def _resolve(mod: str, is_pkg: bool, level: int, target: str | None) -> str:
    if level == 0:
        return target or ""
    base = mod.split(".")
    if not is_pkg:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _edges(mods: dict[str, Path]):
    """(module, imported module, line, imported names) for every import of a migrator module,
    function-level imports included."""
    out = []
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("migrator"):
                        out.append((mod, a.name, node.lineno, []))
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(mod, is_pkg, node.level, node.module)
                if not target.startswith("migrator"):
                    continue
                names = [a.name for a in node.names]
                subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in mods]
                plain = [n for n in names if f"{target}.{n}" not in mods]
                for s in subs:
                    out.append((mod, s, node.lineno, []))
                if plain:
                    out.append((mod, target, node.lineno, plain))
    return out


def _graph(prefix: str):
    mods = _modules()
    g: dict[str, set[str]] = {m: set() for m in mods if m.startswith(prefix)}
    for a, b, _line, _names in _edges(mods):
        if a in g and b in g and a != b:
            g[a].add(b)
    return g


def _sccs(g: dict[str, set[str]]) -> list[list[str]]:
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):  # iterative Tarjan would be longer; the graph is small
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return [c for c in out if len(c) > 1]


def test_no_import_cycle_in_core():
    """Imports inside functions count: a lazy import that dodges a cycle is still a cycle."""
    cycles = _sccs(_graph("migrator.core"))
    assert not cycles, "import cycles in migrator/core:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_cross_module_private_imports():
    mods = _modules()
    bad = []
    for a, b, line, names in _edges(mods):
        for n in names:
            if n.startswith("_") and not n.startswith("__") and a != b:
                bad.append(f"{mods[a].relative_to(PKG.parent)}:{line}: from {b} import {n}")
    assert not bad, "imports of another module's private names:\n" + "\n".join(bad)


def _reach(g: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        v = todo.pop()
        for w in g.get(v, ()):
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


def test_reference_and_keras_side_share_no_code():
    """The verdict rests on it: the reference never imports the Keras side (mapping, keras_build),
    the Keras side never imports the reference — not even through a third module."""
    g = _graph("migrator.core")
    ref, keras_side = "migrator.core.reference", ("migrator.core.mapping", "migrator.core.keras_build")
    bad = []
    for m in g:
        reached = _reach(g, m)
        if m.startswith(ref):
            bad += [f"{m} -> {r}" for r in sorted(reached) if r.startswith(keras_side)]
        if m.startswith(keras_side):
            bad += [f"{m} -> {r}" for r in sorted(reached) if r.startswith(ref)]
    assert not bad, "reference <-> Keras side imports (direct or transitive):\n" + "\n".join(bad)


def test_modules_named_by_concept_not_by_delivery():
    named = [str(p.relative_to(PKG.parent)) for p in PKG.rglob("*.py")
             if re.search(r"(fork|catalogue|extra|round\d|issue)", p.stem)]
    assert not named, f"modules named after a delivery: {named}"
    refs = []
    for p in PKG.rglob("*.py"):
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"\b[Ii]ssue[ _-]?\d+", line):
                refs.append(f"{p.relative_to(PKG.parent)}:{i}: {line.strip()[:80]}")
    assert not refs, "issue numbers in code (history goes in CHANGELOG.md):\n" + "\n".join(refs)


def test_the_checks_above_can_fail():
    """The cycle finder and the edge reader see what they must (a check that cannot fail is a defect)."""
    assert _sccs({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _resolve("migrator.core.shapes.conv", False, 2, "ir") == "migrator.core.ir"
    assert _resolve("migrator.core.shapes", True, 1, "conv") == "migrator.core.shapes.conv"
    edges = _edges(_modules())
    assert any(a == "migrator.cli" and b.startswith("migrator.core") for a, b, _l, _n in edges)
