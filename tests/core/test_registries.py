"""The shape-rule and reference-kernel registries: one entry per op, in the module of its family.

* every op of :data:`migrator.core.ops.OP_SPECS` has a shape rule in
  ``migrator.core.shapes.<family>`` and (except ``Input``) a kernel in
  ``migrator.core.reference.kernels.<family>``;
* registering an op a second time raises :class:`RegistrationError`;
* the reference never imports the mapping or the Keras builder (the verdict rests on their
  independence), nor the importers; the shape formulas import none of them, nor the IR.
"""
from __future__ import annotations

import ast
import pathlib

import pytest

from migrator.core.ops import OP_SPECS
from migrator.core.reference.kernels import KERNELS, kernel
from migrator.core.registry import RegistrationError
from migrator.core.shapes import SHAPE_RULES, shape_rule

CORE = pathlib.Path(__file__).resolve().parents[2] / "migrator" / "core"

#: ops without a reference kernel, and why
NO_KERNEL = {"Input": "the executor binds the given input arrays; there is nothing to compute"}


def test_every_op_has_a_shape_rule_in_its_family_module():
    assert set(SHAPE_RULES) == set(OP_SPECS)
    for op, spec in OP_SPECS.items():
        assert SHAPE_RULES[op].__module__ == f"migrator.core.shapes.{spec.family}", op


def test_every_op_has_a_kernel_in_its_family_module():
    assert set(KERNELS) == set(OP_SPECS) - set(NO_KERNEL)
    for op in KERNELS:
        fam = OP_SPECS[op].family
        assert KERNELS[op].__module__ == f"migrator.core.reference.kernels.{fam}", op


@pytest.mark.parametrize("registry, decorator", [(SHAPE_RULES, shape_rule), (KERNELS, kernel)],
                         ids=["shape rules", "kernels"])
def test_a_second_registration_is_refused(registry, decorator):
    fake = "FakeOpForRegistryTest"
    assert fake not in registry

    def first(node, ins, *rest):
        return ins

    def second(node, ins, *rest):
        return ins

    decorator(fake)(first)
    try:
        with pytest.raises(RegistrationError, match=fake):
            decorator(fake)(second)
        assert registry[fake] is first
        # an existing op cannot be replaced either
        with pytest.raises(RegistrationError):
            decorator("Conv")(second)
        assert registry["Conv"] is not second
    finally:
        registry.remove(fake)
    assert fake not in registry


def _imported_modules(path: pathlib.Path) -> set[str]:
    """Absolute names of every module ``path`` imports (module level and inside functions)."""
    rel = path.relative_to(CORE.parent.parent).with_suffix("")
    parts = list(rel.parts)
    package = parts[:-1]   # the package a relative import starts from (also for __init__)
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def _import_closure(start: list[pathlib.Path]) -> set[str]:
    """Every migrator module reachable from ``start`` through imports (function-level included)."""
    seen: set[str] = set()
    todo = list(start)
    done: set[pathlib.Path] = set()
    while todo:
        p = todo.pop()
        if p in done:
            continue
        done.add(p)
        for mod in _imported_modules(p):
            if not mod.startswith("migrator."):
                continue
            seen.add(mod)
            base = CORE.parent.parent.joinpath(*mod.split("."))
            for cand in (base.with_suffix(".py"), base / "__init__.py"):
                if cand.exists():
                    todo.append(cand)
    return seen


@pytest.mark.parametrize("aspect, forbidden", [
    ("reference", ("migrator.core.mapping", "migrator.core.keras_build", "migrator.core.importers")),
    # the IR calls infer_shapes: shapes importing the IR would be a cycle
    ("shapes", ("migrator.core.mapping", "migrator.core.keras_build", "migrator.core.importers",
                "migrator.core.reference", "migrator.core.ir")),
])
def test_aspect_independence(aspect, forbidden):
    reached = _import_closure(sorted((CORE / aspect).rglob("*.py")))
    bad = sorted(m for m in reached if m.startswith(forbidden))
    assert not bad, f"{aspect} imports {bad}"
