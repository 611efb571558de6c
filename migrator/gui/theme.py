"""Light and dark palettes, status colours and small painted status icons."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPainterPath, QPalette, QPen, QPixmap
from PySide6.QtWidgets import QApplication

RESOURCES = Path(__file__).resolve().parent.parent / "resources"   # package migrator.resources

_state = {"dark": False}

# status -> (light colour, dark colour)
STATUS_COLOURS = {
    "fail": ("#c62828", "#ff6b6b"),
    "unsupported": ("#b45f00", "#ffb74d"),
    "overridden": ("#1858b8", "#74b0ff"),
    "pass": ("#2e7d32", "#7bd88f"),
    "stale": ("#7a6400", "#e6cf5c"),
    "warning": ("#b45f00", "#ffb74d"),
    "muted": ("#6b6b6b", "#9a9a9a"),
    "fused": ("#6b6b6b", "#9a9a9a"),    # compared as part of another layer's Keras layer
    # the selected channel or layer in the plots: unlike pass/fail/tolerance, bright on dark
    "selected": ("#7b1fa2", "#ffd54f"),
}


def is_dark() -> bool:
    return _state["dark"]


def colour(status: str) -> QColor:
    light, dark = STATUS_COLOURS.get(status, STATUS_COLOURS["muted"])
    return QColor(dark if _state["dark"] else light)


#: palette role -> (light colour, dark colour)
PALETTE_COLOURS = {
    "Window": ("#f3f3f3", "#2b2d30"), "WindowText": ("#1e1e1e", "#e6e6e6"),
    "Base": ("#ffffff", "#1e1f22"), "AlternateBase": ("#f2f5f9", "#26282b"),
    "ToolTipBase": ("#ffffe6", "#3c3f41"), "ToolTipText": ("#1e1e1e", "#e6e6e6"),
    "PlaceholderText": ("#8a8a8a", "#8c8c8c"), "Text": ("#1e1e1e", "#e6e6e6"),
    "Button": ("#e9e9e9", "#3a3d41"), "ButtonText": ("#1e1e1e", "#e6e6e6"),
    "BrightText": ("#ffffff", "#ffffff"), "Highlight": ("#2f6fd0", "#3d6fb8"),
    "HighlightedText": ("#ffffff", "#ffffff"), "Link": ("#1858b8", "#74b0ff"),
}
#: the colour of disabled text (light, dark)
DISABLED_TEXT = ("#9a9a9a", "#6f6f6f")


def _palette(dark: bool) -> QPalette:
    """The light (``dark=False``) or dark application palette."""
    p = QPalette()
    for role, colours in PALETTE_COLOURS.items():
        p.setColor(getattr(QPalette.ColorRole, role), QColor(colours[dark]))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.WindowText, QPalette.ColorRole.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor(DISABLED_TEXT[dark]))
    return p


def light_palette() -> QPalette:
    return _palette(False)


def dark_palette() -> QPalette:
    return _palette(True)


def system_is_dark() -> bool:
    app = QApplication.instance()
    if app is None:
        return False
    try:
        return app.styleHints().colorScheme() == Qt.ColorScheme.Dark
    except AttributeError:
        return app.palette().color(QPalette.ColorRole.Window).lightness() < 128


def apply_theme(theme: str = "auto") -> bool:
    """Apply 'light', 'dark' or 'auto' (follow the system).  Returns True when dark."""
    app = QApplication.instance()
    dark = system_is_dark() if theme == "auto" else theme == "dark"
    _state["dark"] = dark
    app.setStyle("Fusion")
    app.setPalette(dark_palette() if dark else light_palette())
    qss = RESOURCES / "style" / "app.qss"
    if qss.is_file():
        app.setStyleSheet(qss.read_text(encoding="utf-8"))
    _ICONS.clear()
    try:
        import pyqtgraph as pg
        pg.setConfigOptions(background=QColor("#1e1f22" if dark else "#ffffff"),
                            foreground=QColor("#d0d0d0" if dark else "#303030"), antialias=False)
    except Exception as e:  # noqa: BLE001 - plots are optional for theming
        import logging
        logging.getLogger(__name__).debug("pyqtgraph colours not set: %s", e)
    return dark


# --------------------------------------------------------------------------------------
_ICONS: dict[str, QIcon] = {}


def status_icon(status: str) -> QIcon:
    """A small painted icon: pass (check), fail (cross), unsupported (!), overridden (pencil
    dot), stale (clock-ish ring), fused (two linked dots)."""
    if status in _ICONS:
        return _ICONS[status]
    size = 16
    pm = QPixmap(size * 2, size * 2)
    pm.setDevicePixelRatio(2.0)
    pm.fill(Qt.GlobalColor.transparent)
    p = QPainter(pm)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    col = colour(status)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(col)
    r = QRectF(1.5, 1.5, size - 3, size - 3)
    if status == "unsupported" or status == "warning":
        path = QPainterPath()
        path.moveTo(size / 2, 1.5)
        path.lineTo(size - 1.5, size - 2)
        path.lineTo(1.5, size - 2)
        path.closeSubpath()
        p.drawPath(path)
    else:
        p.drawEllipse(r)
    pen = QPen(QColor("#ffffff"), 1.8)
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    p.setPen(pen)
    if status == "pass":
        p.drawPolyline([QPointF(4.5, 8.5), QPointF(7, 11), QPointF(11.5, 5.5)])
    elif status == "fail":
        p.drawLine(QPointF(5.5, 5.5), QPointF(10.5, 10.5))
        p.drawLine(QPointF(10.5, 5.5), QPointF(5.5, 10.5))
    elif status in ("unsupported", "warning"):
        p.drawLine(QPointF(8, 6), QPointF(8, 10))
        p.drawPoint(QPointF(8, 12.3))
    elif status == "overridden":        # a small pencil
        p.drawLine(QPointF(5, 11), QPointF(10.5, 5.5))
        pen.setWidthF(1.2)
        p.setPen(pen)
        p.drawLine(QPointF(4.5, 11.5), QPointF(5.5, 11.5))
    elif status == "stale":
        p.drawLine(QPointF(8, 4.5), QPointF(8, 8))
        p.drawLine(QPointF(8, 8), QPointF(10.5, 9.5))
    elif status == "fused":             # a link: two dots and the line between them
        p.drawLine(QPointF(5.5, 8), QPointF(10.5, 8))
        p.setBrush(QColor("#ffffff"))
        p.setPen(Qt.PenStyle.NoPen)
        p.drawEllipse(QPointF(5, 8), 1.7, 1.7)
        p.drawEllipse(QPointF(11, 8), 1.7, 1.7)
    p.end()
    icon = QIcon(pm)
    _ICONS[status] = icon
    return icon


def app_icon() -> QIcon:
    svg = RESOURCES / "icons" / "migrator.svg"
    return QIcon(str(svg)) if svg.is_file() else QIcon()
