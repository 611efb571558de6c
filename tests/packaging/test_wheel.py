"""``pip install .`` gives both entry points and everything the app reads at run time.

Builds the wheel from this checkout with ``pip wheel --no-deps --no-build-isolation`` into a
temporary folder (about 2 s) and reads it as a zip file."""
from __future__ import annotations

import configparser
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

import migrator

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    pytest.importorskip("setuptools")
    out = tmp_path_factory.mktemp("wheel")
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "-q", "-w", str(out), str(ROOT)], check=False, capture_output=True, text=True, timeout=120)
    if p.returncode != 0 and "No module named pip" in p.stderr:
        pytest.skip("pip is not available in this interpreter")
    assert p.returncode == 0, p.stderr[-2000:]
    wheels = list(out.glob("migrator-*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as z:
        yield z


def _dist_info(z, name):
    (path,) = [n for n in z.namelist() if n.endswith(".dist-info/" + name)]
    return z.read(path).decode("utf-8")


def test_entry_points(wheel):
    cp = configparser.ConfigParser()
    cp.optionxform = str
    cp.read_string(_dist_info(wheel, "entry_points.txt"))
    assert cp["console_scripts"]["migrator"] == "migrator.cli:main"
    assert cp["gui_scripts"]["migrator-gui"] == "migrator.gui.app:main"
    # the targets exist (checked in the source, without importing the GUI)
    assert "def main(" in (ROOT / "migrator/cli.py").read_text()
    assert "def main(" in (ROOT / "migrator/gui/app.py").read_text()


def test_version_and_extras(wheel):
    meta = Parser().parsestr(_dist_info(wheel, "METADATA"))
    assert meta["Version"] == migrator.__version__
    extras = set(meta.get_all("Provides-Extra"))
    assert {"gui", "gpu", "opencv", "package"} <= extras
    reqs = meta.get_all("Requires-Dist")
    assert any(r.startswith("tensorflow[and-cuda]") and 'extra == "gpu"' in r for r in reqs), reqs


def test_every_module_is_packaged(wheel):
    names = set(wheel.namelist())
    missing = []
    for top in ("migrator", "resources"):
        for f in (ROOT / top).rglob("*.py"):
            rel = f.relative_to(ROOT).as_posix()
            if "__pycache__" in rel or rel.startswith(("resources/demo/", "migrator/resources/")):
                continue
            if top == "resources":          # shipped inside the migrator namespace
                rel = "migrator/" + rel
            if rel not in names:
                missing.append(rel)
    assert not missing, f"not in the wheel (a folder without __init__.py?): {missing}"


def test_runtime_data_is_packaged(wheel):
    names = set(wheel.namelist())
    needed = [
        "migrator/core/importers/caffe_proto/migrator_caffe.proto",
        "migrator/core/importers/lasagne/builder_child.py",    # run by path in a child process
        "migrator/core/importers/lasagne/recorder/lasagne/__init__.py",
        "migrator/core/importers/lasagne/recorder/theano/__init__.py",
        "migrator/core/reference/bridge_script.py",            # copied into legacy environments
        "migrator/resources/icons/migrator.svg",               # migrator/gui/theme.py
        "migrator/resources/style/app.qss",
        "migrator/resources/make_demos.py",                    # migrator/gui/app.py: demos
        *(f"migrator/resources/icons/png/migrator-{s}.png" for s in (16, 32, 48, 64, 128, 256, 512)),
    ]
    assert not [n for n in needed if n not in names]
    # generated or stray files stay out
    assert not [n for n in names if "resources/demo/" in n or n.endswith((".pyc", ".pyo"))]


def test_no_top_level_resources_package(wheel):
    """The app's resources ship inside the migrator namespace: installing Migrator must not
    add a top-level package that other distributions may also call ``resources``."""
    tops = {n.split("/", 1)[0] for n in wheel.namelist()}
    assert "resources" not in tops
    assert {t for t in tops if not t.endswith(".dist-info")} == {"migrator"}
