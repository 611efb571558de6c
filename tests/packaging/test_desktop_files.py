"""Desktop integration files (packaging/linux/): validated by the freedesktop tools when they
are installed (apt-get install desktop-file-utils appstream shared-mime-info), and kept
consistent with each other, with the icons and with migrator.__version__."""
from __future__ import annotations

import configparser
import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import migrator

ROOT = Path(__file__).resolve().parents[2]
LINUX = ROOT / "packaging" / "linux"
APP_ID = "io.github.migrator.Migrator"
DESKTOP = LINUX / f"{APP_ID}.desktop"
METAINFO = LINUX / f"{APP_ID}.metainfo.xml"
MIME = LINUX / f"{APP_ID}.mime.xml"
ICONS = ROOT / "resources" / "icons"
SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)
SMI = "{http://www.freedesktop.org/standards/shared-mime-info}"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install "
                    f"{ {'desktop-file-validate': 'desktop-file-utils', 'appstreamcli': 'appstream'}.get(name, 'shared-mime-info')})")
    return path


def _desktop() -> configparser.SectionProxy:
    cp = configparser.ConfigParser(interpolation=None, strict=True)
    cp.optionxform = str
    cp.read(DESKTOP, encoding="utf-8")
    return cp["Desktop Entry"]


def _list(value: str) -> list[str]:
    return [v for v in value.split(";") if v]


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


# -- the freedesktop validators ------------------------------------------------------------
def test_desktop_entry_validates():
    tool = _tool("desktop-file-validate")
    p = subprocess.run([tool, str(DESKTOP)], check=False, capture_output=True, text=True)
    assert p.returncode == 0 and "error" not in p.stdout, p.stdout + p.stderr


def test_metainfo_validates():
    tool = _tool("appstreamcli")
    p = subprocess.run([tool, "validate", "--no-net", "--explain", str(METAINFO)],
                       check=False, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert not re.search(r"^[EW]:", p.stdout, re.MULTILINE), p.stdout


def test_mime_database_learns_both_globs(tmp_path):
    tool = _tool("update-mime-database")
    pk = tmp_path / "mime" / "packages"
    pk.mkdir(parents=True)
    shutil.copy(MIME, pk / f"{APP_ID}.xml")
    p = subprocess.run([tool, str(tmp_path / "mime")], check=False, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    globs = (tmp_path / "mime" / "globs2").read_text()
    assert re.search(r"^\d+:application/x-caffe-prototxt:\*\.prototxt$", globs, re.MULTILINE), globs
    assert re.search(r"^\d+:application/x-caffe-model:\*\.caffemodel$", globs, re.MULTILINE), globs
    subclasses = (tmp_path / "mime" / "subclasses").read_text()
    assert "application/x-caffe-prototxt text/plain" in subclasses


# -- consistency between the files ---------------------------------------------------------
def test_desktop_mime_and_metainfo_agree():
    d = _desktop()
    mime_types = [t.get("type") for t in ET.parse(MIME).getroot().findall(f"{SMI}mime-type")]
    assert sorted(_list(d["MimeType"])) == sorted(mime_types)
    meta = ET.parse(METAINFO).getroot()
    assert meta.findtext("id") == APP_ID == d["Icon"]
    assert meta.find("launchable").text == DESKTOP.name
    provides = meta.find("provides")
    assert sorted(m.text for m in provides.findall("mediatype")) == sorted(mime_types)
    assert {b.text for b in provides.findall("binary")} == {"migrator", "migrator-gui"}
    assert d["Exec"].split()[0] == d["TryExec"] == "migrator-gui"


def test_gui_script_declared_for_the_desktop_exec():
    import tomllib
    with open(ROOT / "pyproject.toml", "rb") as f:
        proj = tomllib.load(f)["project"]
    assert _desktop()["Exec"].split()[0] in proj["gui-scripts"]
    assert "migrator" in proj["scripts"]


def test_mime_globs_match_what_the_app_opens():
    from migrator.core import flow
    globs = {g.get("pattern") for g in ET.parse(MIME).getroot().iter(f"{SMI}glob")}
    exts = {"*" + e for e in flow.CAFFE_ARCH + flow.CAFFE_WEIGHTS}
    assert {"*.prototxt", "*.caffemodel"} <= globs <= exts


def test_metainfo_release_is_the_package_version_and_in_the_changelog():
    releases = ET.parse(METAINFO).getroot().find("releases").findall("release")
    newest = releases[0].get("version")
    assert newest == migrator.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?", migrator.__version__), "not SemVer"
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    versions = re.findall(r"^## \[(\d+\.\d+\.\d+[^\]]*)\]", changelog, re.MULTILINE)
    assert versions and versions[0] == migrator.__version__, versions


# -- icons ---------------------------------------------------------------------------------
@pytest.mark.parametrize("size", SIZES)
def test_png_icon_sizes(size):
    p = ICONS / "png" / f"migrator-{size}.png"
    assert p.is_file(), f"{p} missing (python -m resources.make_icons)"
    assert _png_size(p) == (size, size)


def test_pngs_are_renderings_of_the_svg():
    """The committed PNGs are up to date with the SVG (compared with Pillow after a fresh
    render into a temporary folder; antialiasing may differ by a few levels)."""
    import tempfile

    import numpy as np
    from PIL import Image
    from PySide6 import QtSvg  # noqa: F401  (the gui extra; Pillow and numpy are dependencies)

    from resources import make_icons
    with tempfile.TemporaryDirectory() as td:
        fresh = make_icons.render(out_dir=Path(td), sizes=(32, 256))
        for f in fresh:
            a = np.asarray(Image.open(f).convert("RGBA"), dtype=np.int16)
            b = np.asarray(Image.open(ICONS / "png" / f.name).convert("RGBA"), dtype=np.int16)
            assert a.shape == b.shape
            assert np.abs(a - b).max() <= 8, f"{f.name} is stale: run python -m resources.make_icons"
    # and the icon is the app's: the blue tile covers the centre-left, transparent corners
    big = np.asarray(Image.open(ICONS / "png" / "migrator-256.png").convert("RGBA"))
    assert big[0, 0, 3] == 0 and big[128, 16, 3] == 255 and big[128, 16, 2] > 150


# -- the per-user installer ----------------------------------------------------------------
def test_install_desktop_script_installs_and_removes(tmp_path):
    script = LINUX / "install-desktop.sh"
    exe = "/opt/My Apps/Migrator/migrator-gui"
    p = subprocess.run(["sh", str(script), "--prefix", str(tmp_path), "--exec", exe],
                       check=False, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    desk = tmp_path / "applications" / DESKTOP.name
    text = desk.read_text()
    assert f'Exec="{exe}" %F' in text and f"TryExec={exe}" in text
    assert (tmp_path / "metainfo" / METAINFO.name).is_file()
    assert (tmp_path / "mime" / "packages" / f"{APP_ID}.xml").is_file()
    assert (tmp_path / "icons/hicolor/scalable/apps" / f"{APP_ID}.svg").is_file()
    for s in SIZES:
        assert _png_size(tmp_path / f"icons/hicolor/{s}x{s}/apps/{APP_ID}.png") == (s, s)
    if shutil.which("desktop-file-validate"):
        v = subprocess.run(["desktop-file-validate", str(desk)], check=False, capture_output=True, text=True)
        assert v.returncode == 0, v.stdout
    p = subprocess.run(["sh", str(script), "--prefix", str(tmp_path), "--uninstall"],
                       check=False, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    left = [f for f in tmp_path.rglob("*") if f.is_file() and APP_ID in f.name]
    assert left == []
    bad = subprocess.run(["sh", str(script), "--bogus"], check=False, capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown argument" in bad.stderr
