"""Render the application icon ``resources/icons/migrator.svg`` to PNGs.

    python -m resources.make_icons          # writes resources/icons/png/migrator-<N>.png

Sizes are the freedesktop ``hicolor`` sizes 16, 22, 24, 32, 48, 64, 128, 256 and 512 pixels.
The PNGs are committed (a few kB each) so that packaging needs no Qt at build time; run this
again after editing the SVG.  Rendering uses PySide6's ``QSvgRenderer`` on a transparent
``QImage`` (no window is shown; the offscreen platform is used when no display is set).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SVG = HERE / "icons" / "migrator.svg"
PNG_DIR = HERE / "icons" / "png"
SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)


def png_path(size: int, out_dir: Path = PNG_DIR) -> Path:
    return out_dir / f"migrator-{size}.png"


def render(svg: Path = SVG, out_dir: Path = PNG_DIR, sizes=SIZES) -> list[Path]:
    """Render ``svg`` at every size into ``out_dir``; return the written paths."""
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication.instance() or QGuiApplication([sys.argv[0]])  # noqa: F841 - needed by QPainter
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"make_icons: {svg}: not a valid SVG")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for n in sizes:
        img = QImage(n, n, QImage.Format.Format_ARGB32)
        img.fill(Qt.GlobalColor.transparent)
        p = QPainter(img)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        renderer.render(p)
        p.end()
        path = png_path(n, out_dir)
        if not img.save(str(path), "PNG"):
            raise SystemExit(f"make_icons: cannot write {path}")
        written.append(path)
    return written


def main(argv=None) -> int:
    for p in render():
        print(p.relative_to(HERE.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
