"""The mapping-rule and Keras-construct registries are organised by op family, one entry per
op, and the Keras side never reaches the reference implementation (the verification compares
two independent computations)."""
from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

import pytest

import migrator
from migrator.core.ops import FAMILIES, OP_SPECS
from migrator.core.registry import RegistrationError

CORE = Path(migrator.__file__).resolve().parent / "core"


def _rules():
    from migrator.core.mapping import rules  # noqa: F401  (registers every rule)
    from migrator.core.mapping.registry import RULES
    return RULES


def test_every_rule_lives_in_the_module_of_its_family():
    rules = _rules()
    assert len(rules) > 0
    assert set(rules) <= set(OP_SPECS), sorted(set(rules) - set(OP_SPECS))
    wrong = {op: type(rule).__module__ for op, rule in rules.items()
             if type(rule).__module__ != f"migrator.core.mapping.rules.{OP_SPECS[op].family}"}
    assert not wrong, wrong


def test_every_catalogue_op_but_custom_has_a_rule():
    rules = _rules()
    missing = sorted(op for op in OP_SPECS if op not in rules and op != "Custom")
    assert not missing, missing


def test_a_second_registration_of_an_op_is_refused():
    from migrator.core.mapping.registry import Rule, register
    rules = _rules()
    before = rules["Conv"]

    class Variant(Rule):
        pass

    with pytest.raises(RegistrationError, match="Conv"):
        register("Conv")(Variant)
    assert rules["Conv"] is before


def test_rule_modules_are_the_families_plus_common():
    from migrator.core.mapping import rules
    names = {m.name for m in pkgutil.iter_modules(rules.__path__)}
    assert names - {"common"} <= set(FAMILIES), sorted(names - {"common"} - set(FAMILIES))


def test_construct_modules_are_the_families_plus_registry():
    from migrator.core.keras_build import constructs
    names = {m.name for m in pkgutil.iter_modules(constructs.__path__)}
    assert names - {"registry"} <= set(FAMILIES), sorted(names - {"registry"} - set(FAMILIES))


def test_constructs_are_registered_once_each_from_their_family_module():
    import migrator.core.keras_build  # noqa: F401  (registers the constructs)
    from migrator.core.keras_build.constructs.registry import CONSTRUCTS, SOURCE_OPS
    assert len(CONSTRUCTS) > 0 and len(SOURCE_OPS) > 0
    allowed = {f"migrator.core.keras_build.constructs.{f}" for f in (*FAMILIES, "registry")}
    bad = {name: fn.__module__ for name, fn in [*CONSTRUCTS.items(), *SOURCE_OPS.items()]
           if fn.__module__ not in allowed}
    assert not bad, bad
    # a Lasagne source op is an op of the catalogue, kept in its family's module
    wrong = {op: fn.__module__ for op, fn in SOURCE_OPS.items() if op in OP_SPECS
             and fn.__module__ != f"migrator.core.keras_build.constructs.{OP_SPECS[op].family}"}
    assert not wrong, wrong


# ---- aspect independence ----------------------------------------------------------------
def _module_name(path: Path) -> str:
    rel = path.relative_to(CORE.parent.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in CORE.rglob("*.py")}


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Modules of migrator.core that ``name`` imports (anywhere in the file, functions included)."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            # importing a.b.c runs the packages a.b and a too
            parts = t.split(".")
            for i in range(len(parts), 0, -1):
                cand = ".".join(parts[:i])
                if cand in known:
                    out.add(cand)
    return out


def test_mapping_and_keras_build_never_import_the_reference():
    known = _modules()
    graph = {n: _imports(n, p, known) for n, p in known.items()}
    for root in ("migrator.core.mapping", "migrator.core.keras_build"):
        starts = [n for n in known if n == root or n.startswith(root + ".")]
        assert starts, root
        for start in starts:
            seen, todo, via = {start}, [start], {start: None}
            while todo:
                cur = todo.pop()
                for nxt in graph[cur]:
                    if nxt not in seen:
                        seen.add(nxt)
                        via[nxt] = cur
                        todo.append(nxt)
            bad = sorted(n for n in seen if n == "migrator.core.reference"
                         or n.startswith("migrator.core.reference."))
            if bad:
                chain, cur = [], bad[0]
                while cur is not None:
                    chain.append(cur)
                    cur = via[cur]
                pytest.fail(f"{start} reaches the reference: {' <- '.join(chain)}")
