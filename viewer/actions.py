"""The window's commands: actions with OHIF-style shortcuts, the menus and the toolbar.

The help dialog lists these actions' shortcuts, so what it shows cannot drift from what works.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMenu

from viewer.canvas import Tool

PRESET_KEYS = 5
ZOOM_STEP = 1.25


def _action(window: Any, text: str, slot: Any, shortcuts: list[str] | str | None = None, *,
            tip: str = "", checkable: bool = False) -> QAction:
    action = QAction(text, window)
    if shortcuts:
        keys = [shortcuts] if isinstance(shortcuts, str) else shortcuts
        action.setShortcuts([QKeySequence(k) for k in keys])
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
    if tip:
        action.setStatusTip(tip)
        action.setToolTip(tip)
    action.setCheckable(checkable)
    action.triggered.connect(slot)
    window.addAction(action)  # shortcuts work even with the menu bar hidden
    return action


def build_actions(window: Any) -> dict[str, QAction]:
    """Every command with its shortcuts, added to the window so keys work without menus."""
    view = window.view

    def a(text: str, slot: Any, shortcuts: list[str] | str | None = None, *, tip: str = "",
          checkable: bool = False) -> QAction:
        return _action(window, text, slot, shortcuts, tip=tip, checkable=checkable)

    n: dict[str, QAction] = {}
    n["open_file"] = a("&Open file\N{HORIZONTAL ELLIPSIS}", window.open_file_dialog,
                       "Ctrl+O")
    n["open_folder"] = a("Open &folder\N{HORIZONTAL ELLIPSIS}", window.open_folder_dialog,
                         "Ctrl+Shift+O")
    n["open_dicomdir"] = a("Open &DICOMDIR\N{HORIZONTAL ELLIPSIS}", window.open_dicomdir_dialog)
    n["open_samples"] = a("Open the &sample study", window.open_samples)
    n["export"] = a("&Export enhanced\N{HORIZONTAL ELLIPSIS}", window.export_dialog, "Ctrl+S",
                    tip="Save the enhanced image as derived DICOM, PNG or TIFF")
    n["copy"] = a("&Copy image", window.copy_image, "Ctrl+C",
                  tip="Copy the image as shown to the clipboard")
    n["settings"] = a("Se&ttings\N{HORIZONTAL ELLIPSIS}", window.settings_dialog, "Ctrl+,")
    n["quit"] = a("&Quit", window.close, "Ctrl+Q")

    n["fit"] = a("&Fit", view.set_fit, "=", tip="Fit the image to the window")
    n["one_to_one"] = a("&1:1 pixels", window.one_to_one, ["Ctrl+1", "0"],
                        tip="One image pixel per screen (device) pixel")
    n["zoom_in"] = a("Zoom &in", lambda: window.zoom_by(ZOOM_STEP), ["+", "Shift+="])
    n["zoom_out"] = a("Zoom &out", lambda: window.zoom_by(1 / ZOOM_STEP), ["-", "_"])
    n["rotate"] = a("&Rotate 90\N{DEGREE SIGN}", lambda: view.rotate(90), "R")
    n["rotate_left"] = a("Rotate 90\N{DEGREE SIGN} left", lambda: view.rotate(-90),
                         "Shift+R")
    n["flip_h"] = a("Flip &horizontal", lambda: view.flip(True), "H")
    n["flip_v"] = a("Flip &vertical", lambda: view.flip(False), "V")
    n["reset"] = a("Rese&t view", window.reset_view, "Space",
                   tip="Fit, no rotation or flip, the file's first window")
    n["invert"] = a("&Invert", window.toggle_invert, "I")
    for i in range(PRESET_KEYS):
        n[f"preset_{i + 1}"] = a(f"Window preset {i + 1}",
                                 lambda _=False, i=i: window.apply_preset(i), str(i + 1))
    n["auto_window"] = a("&Auto window", lambda: window.apply_named_window("Auto"), "A",
                         tip="Fit the window to the body (ignores borders and labels)")
    n["full_window"] = a("F&ull range", lambda: window.apply_named_window("Full range"), "F")
    n["clear_measure"] = a("Clear &measurements", window.clear_measurements, ["Delete", "Backspace"])

    tools = QActionGroup(window)
    for tool, key, label in ((Tool.WINDOW, "W", "&Window/level tool"),
                             (Tool.PAN, "P", "&Pan tool"), (Tool.ZOOM, "Z", "&Zoom tool"),
                             (Tool.RULER, "L", "&Ruler tool (mm)"),
                             (Tool.MAGNIFY, "M", "&Magnifier tool")):
        act = a(label, lambda _=False, t=tool: window._set_tool(t), key, checkable=True)
        tools.addAction(act)
        n[f"tool_{tool.value}"] = act

    n["enhance"] = a("&Enhance", window.start_enhance, "E",
                     tip="4x super-resolution (whole image or the visible region: Settings)")
    n["enhance_visible"] = a("Enhance &visible region", lambda: window.start_enhance("visible"),
                             "Shift+E")
    n["cancel"] = a("&Cancel Enhance", window.cancel_enhance, "Escape")
    n["ab"] = a("&A/B toggle (original \N{LEFT RIGHT ARROW} enhanced)", window.toggle_ab,
                ["B", "Tab"])
    n["split"] = a("&Split view", lambda: window.set_compare("split"), "S")
    n["side"] = a("Si&de by side", lambda: window.set_compare("side"), "Shift+S")
    n["diff"] = a("&Difference (enhanced \N{MINUS SIGN} bicubic)",
                  lambda: window.set_compare("diff"), "D")
    n["single"] = a("Single view (A/B)", lambda: window.set_compare("ab"), "Shift+B")

    n["theme"] = a("&Light theme", window.toggle_theme, checkable=True)
    n["help"] = a("&Keyboard shortcuts", window.help_dialog, ["F1", "?"])
    n["about"] = a("&About CXR Enhance", window.about_dialog)
    return n


def build_menus(window: Any, n: dict[str, QAction]) -> tuple[QMenu, QMenu]:
    """Menu bar and toolbar; returns the Open recent and Window (presets) menus to fill later."""
    menu = window.menuBar()
    file_menu = menu.addMenu("&File")
    for key in ("open_file", "open_folder", "open_dicomdir", "open_samples"):
        file_menu.addAction(n[key])
    recent_menu = QMenu("Open &recent", window)
    file_menu.addMenu(recent_menu)
    file_menu.addSeparator()
    for key in ("export", "copy"):
        file_menu.addAction(n[key])
    file_menu.addSeparator()
    file_menu.addAction(n["settings"])
    file_menu.addAction(n["quit"])

    view_menu = menu.addMenu("&View")
    for key in ("fit", "one_to_one", "zoom_in", "zoom_out", None, "rotate", "rotate_left",
                "flip_h", "flip_v", "reset", None, "tool_window", "tool_pan", "tool_zoom",
                "tool_ruler", "tool_magnify", "clear_measure", None, "theme"):
        view_menu.addSeparator() if key is None else view_menu.addAction(n[key])
    view_menu.addSeparator()
    view_menu.addAction(window.browser_dock.toggleViewAction())
    view_menu.addAction(window.problems.toggleViewAction())

    window_menu = menu.addMenu("&Window")

    enhance_menu = menu.addMenu("&Enhance")
    for key in ("enhance", "enhance_visible", "cancel", None, "ab", "split", "side", "diff",
                "single"):
        enhance_menu.addSeparator() if key is None else enhance_menu.addAction(n[key])

    help_menu = menu.addMenu("&Help")
    help_menu.addAction(n["help"])
    help_menu.addAction(n["about"])

    for key, text in (("open_file", "Open"), ("open_folder", "Folder"), ("export", "Export"),
                      ("fit", "Fit"), ("reset", "Reset"), ("invert", "Invert"),
                      ("enhance", "Enhance x4"), ("ab", "A/B"), ("split", "Split"),
                      ("side", "Side by side"), ("diff", "Difference"),
                      ("tool_window", "W/L"), ("tool_pan", "Pan"), ("tool_zoom", "Zoom"),
                      ("tool_ruler", "Ruler"), ("tool_magnify", "Magnifier")):
        n[key].setIconText(text)
    toolbar = window.addToolBar("Tools")
    toolbar.setObjectName("toolsBar")
    toolbar.setMovable(False)
    for key in ("open_file", "open_folder", None, "tool_window", "tool_pan", "tool_zoom",
                "tool_ruler", "tool_magnify", None, "fit", "reset", "invert", None, "enhance",
                "ab", "split", "side", "diff", None, "export"):
        toolbar.addSeparator() if key is None else toolbar.addAction(n[key])
    return recent_menu, window_menu
