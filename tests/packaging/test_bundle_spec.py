"""The PyInstaller spec, its launcher and the Makefile targets (no bundle is built here:
``make package`` takes many minutes; ``make package-check`` smoke-tests a built bundle)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import ClassVar

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "packaging" / "migrator.spec"


class _Rec:
    """Stand-in for PyInstaller's spec classes: records its arguments."""
    made: ClassVar[list] = []

    def __init__(self, *args, **kw):
        self.args, self.kw = args, kw
        self.scripts, self.pure, self.binaries, self.datas = ["s"], [], [], kw.get("datas", [])
        _Rec.made.append((type(self).__name__, self))


def _exec_spec(monkeypatch):
    hooks = types.ModuleType("PyInstaller.utils.hooks")
    hooks.collect_data_files = lambda pkg, **kw: [(f"<{pkg} data>", pkg)]
    hooks.collect_submodules = lambda pkg, filter=None: [
        n for n in ("migrator.cli", "migrator.core.keras_build.custom_layers",
                    "migrator.core.importers.lasagne.recorder.lasagne.layers", "migrator.gui.app")
        if filter is None or filter(n)]
    for name in ("PyInstaller", "PyInstaller.utils"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "PyInstaller.utils.hooks", hooks)
    monkeypatch.setattr(sys, "path", list(sys.path))
    _Rec.made = []
    ns = {"SPECPATH": str(SPEC.parent), "__file__": str(SPEC)}
    for cls in ("Analysis", "PYZ", "EXE", "COLLECT"):
        ns[cls] = type(cls, (_Rec,), {})
    exec(compile(SPEC.read_text(), str(SPEC), "exec"), ns)  # noqa: S102 - our own spec file
    return ns, _Rec.made


def test_spec_collects_existing_files_and_two_executables(monkeypatch):
    ns, made = _exec_spec(monkeypatch)
    kinds = [k for k, _ in made]
    assert kinds.count("Analysis") == 1 and kinds.count("EXE") == 2 and kinds[-1] == "COLLECT"
    exes = {o.kw["name"]: o.kw for k, o in made if k == "EXE"}
    assert set(exes) == {"migrator", "migrator-gui"}
    assert exes["migrator"]["console"] is True and exes["migrator-gui"]["console"] is False
    assert all(e["exclude_binaries"] for e in exes.values())       # one-folder, not one-file
    assert made[-1][1].kw["name"] == "Migrator"
    datas = ns["a"].kw["datas"]
    own = [(s, d) for s, d in datas if not s.startswith("<")]
    for src, _dest in own:
        assert os.path.isfile(src), src
    dests = {(Path(s).name, d) for s, d in own}
    # files the code finds next to its own modules (same relative place as in the source tree)
    for name, dest in [("builder_child.py", "migrator/core/importers/lasagne"),
                       ("bridge_script.py", "migrator/core/reference"),
                       ("migrator.svg", "migrator/resources/icons"),
                       ("app.qss", "migrator/resources/style"),
                       ("migrator-256.png", "migrator/resources/icons/png"),
                       ("install-desktop.sh", "linux")]:
        assert (name, dest) in dests, (name, dest)
    assert ("__init__.py", "migrator/core/importers/lasagne/recorder/lasagne") in dests
    assert not [s for s, _ in own if s.endswith(".pyc") or "__pycache__" in s]
    hidden = ns["a"].kw["hiddenimports"]
    assert "migrator.core.keras_build.custom_layers" in hidden and "migrator.resources.make_demos" in hidden
    assert not [h for h in hidden if "lasagne.recorder" in h]
    assert {"lasagne", "theano"} <= set(ns["a"].kw["excludes"])


def test_launcher_dispatch(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "packaging"))
    try:
        import launcher
    finally:
        sys.path.remove(str(ROOT / "packaging"))
    child = tmp_path / "builder_child.py"
    child.write_text("import sys, json\nopen(sys.argv[2], 'w').write(json.dumps(sys.argv))\n")
    assert launcher._child_script(["x", str(child), "--out", "y"]) == str(child)
    assert launcher._child_script(["x", str(tmp_path / "other.py")]) is None
    assert launcher._child_script(["x", str(tmp_path / "missing" / "builder_child.py")]) is None
    assert launcher._child_script(["x", "--version"]) is None
    # child mode runs the script by path with its own argv, like `python builder_child.py ...`
    out = tmp_path / "argv.json"
    monkeypatch.setattr(sys, "argv", ["/bundle/migrator", str(child), "--out", str(out)])
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert launcher.main() == 0
    assert out.read_text() == f'["{child}", "--out", "{out}"]'
    # CLI mode (program name 'migrator'): --help of the real CLI, in a fresh process
    p = subprocess.run([sys.executable, str(ROOT / "packaging" / "launcher.py"), "--help"],
                       check=False, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 0 and "usage: migrator" in p.stdout


def test_makefile_package_targets_not_in_test():
    mk = (ROOT / "Makefile").read_text()

    def recipe(target):
        m = re.search(rf"^{re.escape(target)}:[^\n]*\n((?:\t[^\n]*\n)*)", mk, re.MULTILINE)
        assert m, f"no {target} target"
        return m.group(1)
    assert "packaging/migrator.spec" in recipe("package")
    assert "packaging/check_bundle.py" in recipe("package-check")
    for t in ("test", "test-fast"):
        r = re.search(rf"^{t}:([^\n]*)\n((?:\t[^\n]*\n)*)", mk, re.MULTILINE)
        assert r and "package" not in r.group(1) + r.group(2)


def test_check_bundle_refuses_a_missing_bundle(tmp_path):
    p = subprocess.run([sys.executable, str(ROOT / "packaging" / "check_bundle.py"), str(tmp_path)],
                       check=False, capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "make package" in p.stderr


def test_check_bundle_png_reader(tmp_path):
    from PIL import Image  # Pillow is a dependency
    sys.path.insert(0, str(ROOT / "packaging"))
    try:
        import check_bundle
    finally:
        sys.path.remove(str(ROOT / "packaging"))
    Image.new("RGB", (640, 480)).save(tmp_path / "a.png")
    assert check_bundle._png_size(str(tmp_path / "a.png")) == (640, 480)
    (tmp_path / "b.png").write_bytes(b"GIF89a" + bytes(30))
    assert check_bundle._png_size(str(tmp_path / "b.png")) is None
