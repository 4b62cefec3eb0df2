"""Dark (reading room, default) and light themes: Fusion style plus a small style sheet."""

from __future__ import annotations

from PySide6.QtGui import QColor, QIcon, QPalette
from PySide6.QtWidgets import QApplication


def style_sheet(theme: str) -> str:
    from engine.resources import resources_dir

    path = resources_dir() / f"{'light' if theme == 'light' else 'dark'}.qss"
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""  # a missing style sheet leaves plain Fusion: still usable


def apply(app: QApplication | None, theme: str) -> None:
    if app is None:
        return
    app.setStyle("Fusion")
    app.setPalette(_palette(theme))  # Fusion draws check boxes, arrows and focus from this
    app.setStyleSheet(style_sheet(theme))


def _palette(theme: str) -> QPalette:
    if theme == "light":
        p = QApplication.style().standardPalette()
        # as light.qss: dark text on the pale selection, for widgets the style sheet misses
        p.setColor(QPalette.ColorRole.Highlight, QColor("#bcd4ee"))
        p.setColor(QPalette.ColorRole.HighlightedText, QColor("#1d1d1b"))
        return p
    p = QPalette()
    role, group = QPalette.ColorRole, QPalette.ColorGroup
    for r, colour in ((role.Window, "#1b1d20"), (role.WindowText, "#d6d6d0"),
                      (role.Base, "#131417"), (role.AlternateBase, "#17191c"),
                      (role.Text, "#d6d6d0"), (role.Button, "#262a30"),
                      (role.ButtonText, "#d6d6d0"), (role.Highlight, "#3b5b7a"),
                      (role.HighlightedText, "#ffffff"), (role.ToolTipBase, "#262a30"),
                      (role.ToolTipText, "#d6d6d0"), (role.Link, "#7fb2e5"),
                      (role.PlaceholderText, "#7a7a74")):
        p.setColor(r, QColor(colour))
    for r in (role.WindowText, role.Text, role.ButtonText):
        p.setColor(group.Disabled, r, QColor("#6a6a66"))
    return p


def canvas_background(theme: str) -> QColor:
    """Behind the image: black in the reading room, near-black in the light theme too, since a
    bright surround changes how grey levels are perceived."""
    return QColor(0, 0, 0) if theme != "light" else QColor(24, 24, 24)


def app_icon() -> QIcon:
    from engine.resources import resources_dir

    path = resources_dir() / "icons" / "cxr-enhance.svg"
    return QIcon(str(path)) if path.is_file() else QIcon()
