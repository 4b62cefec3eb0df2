"""Reading tools: window/level by dragging, zoom about the cursor, pan, keys, ruler."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication

from engine import display
from tests.viewer.helpers import open_and_wait
from viewer.canvas import WHEEL_STEP, Tool


def _grab_gray(canvas: Any) -> np.ndarray:
    image = canvas.grab().toImage().convertToFormat(canvas.grab().toImage().Format.Format_Grayscale8)
    ptr = image.constBits()
    arr = np.frombuffer(ptr, np.uint8).reshape(image.height(), image.bytesPerLine())
    return arr[:, : image.width()].copy()


def _drag(qtbot: Any, canvas: Any, start: QPoint, delta: QPoint,
          button: Qt.MouseButton = Qt.MouseButton.LeftButton) -> None:
    qtbot.mousePress(canvas, button, pos=start)
    qtbot.mouseMove(canvas, start + delta)
    qtbot.mouseRelease(canvas, button, pos=start + delta)


@pytest.fixture
def reading(qtbot: Any, make_window: Any, lowres_folder: Path) -> Any:
    window = make_window()
    open_and_wait(qtbot, window, lowres_folder)
    window.settings.interpolation = "nearest"  # exact pixels for comparisons
    window.apply_settings()
    return window


def test_drag_changes_window_by_the_expected_amounts(qtbot: Any, reading: Any) -> None:
    window, canvas, doc = reading, reading.compare.primary, reading.document
    start_window = doc.window
    centre = QPoint(canvas.width() // 2, canvas.height() // 2)
    _drag(qtbot, canvas, centre, QPoint(40, -25))
    s = doc.sensitivity * window.settings.drag_sensitivity
    assert doc.window.width == pytest.approx(start_window.width + 40 * s)
    assert doc.window.center == pytest.approx(start_window.center - 25 * s)

    # the pixels on screen follow: the canvas centre shows the engine's render for that window
    qtbot.wait(50)
    shown = _grab_gray(canvas)
    p = canvas.widget_to_image(QPointF(centre))
    expected = display.render(doc.values, window=doc.window, photometric=doc.image.photometric,
                              presentation_lut_shape=doc.image.presentation_lut_shape)
    assert abs(int(shown[centre.y(), centre.x()]) - int(expected[int(p.y()), int(p.x())])) <= 1

    # the reversed direction setting flips the sign
    window.settings.drag_reverse_width = True
    before = doc.window
    _drag(qtbot, canvas, centre, QPoint(10, 0))
    assert doc.window.width == pytest.approx(before.width - 10 * s)


def test_presets_invert_and_auto(qtbot: Any, reading: Any) -> None:
    doc = reading.document
    assert [w.explanation for w in doc.windows[:2]] == ["STANDARD", "CONTRAST"]
    reading.apply_preset(1)
    assert (doc.window.center, doc.window.width) == (2300, 2400)
    reading.apply_named_window("Auto")
    assert doc.window.explanation == "Auto"
    before = _grab_gray(reading.compare.primary)
    reading.toggle_invert()
    qtbot.wait(50)
    after = _grab_gray(reading.compare.primary)
    c = (before.shape[0] // 2, before.shape[1] // 2)
    assert abs(int(before[c]) + int(after[c]) - 255) <= 2


def test_wheel_zooms_about_the_cursor(qtbot: Any, reading: Any) -> None:
    canvas, view = reading.compare.primary, reading.view
    cursor = QPointF(canvas.width() * 0.3, canvas.height() * 0.6)
    before = canvas.widget_to_image(cursor)
    zoom = view.effective_zoom(canvas.size_f())
    event = QWheelEvent(cursor, canvas.mapToGlobal(cursor), QPoint(0, 0), QPoint(0, 120),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                        Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(canvas, event)
    assert view.zoom == pytest.approx(zoom * WHEEL_STEP)
    after = canvas.widget_to_image(cursor)
    assert (after.x(), after.y()) == pytest.approx((before.x(), before.y()), abs=1e-6)


def test_middle_drag_pans_and_space_resets(qtbot: Any, reading: Any) -> None:
    canvas, view = reading.compare.primary, reading.view
    point = QPointF(100, 100)  # an image point
    before = canvas.image_to_widget().map(point)
    _drag(qtbot, canvas, QPoint(200, 200), QPoint(35, -15), Qt.MouseButton.MiddleButton)
    after = canvas.image_to_widget().map(point)
    assert (after.x() - before.x(), after.y() - before.y()) == pytest.approx((35, -15))
    reading.reset_view()
    assert view.fit and view.rotation == 0
    back = canvas.image_to_widget().map(point)
    assert (back.x(), back.y()) == pytest.approx((before.x(), before.y()))


def test_keys_follow_ohif(qtbot: Any, reading: Any) -> None:
    canvas, view, doc = reading.compare.primary, reading.view, reading.document
    reading.activateWindow()
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_R)
    assert view.rotation == 90
    qtbot.keyClick(canvas, Qt.Key.Key_H)
    assert view.flip_h
    qtbot.keyClick(canvas, Qt.Key.Key_I)
    assert doc.invert
    qtbot.keyClick(canvas, Qt.Key.Key_2)
    assert doc.window.explanation == "CONTRAST"
    qtbot.keyClick(canvas, Qt.Key.Key_Plus)
    assert view.zoom == pytest.approx(view.fit_zoom(canvas.size_f()) * 1.25)
    qtbot.keyClick(canvas, Qt.Key.Key_Space)
    assert view.rotation == 0 and not view.flip_h and view.fit and not doc.invert
    rows = dict((what, key) for key, what in reading.shortcut_rows())
    assert rows["Invert"] == "I" and rows["Reset view"] == "Space"
    assert "Tab" in rows["A/B toggle (original \N{LEFT RIGHT ARROW} enhanced)"]


def test_ruler_measures_in_mm(qtbot: Any, reading: Any) -> None:
    canvas = reading.compare.primary
    reading.view.one_to_one()
    reading._set_tool(Tool.RULER)
    start = QPoint(canvas.width() // 2 - 50, canvas.height() // 2)
    _drag(qtbot, canvas, start, QPoint(100, 0))
    assert len(canvas.measurements) == 1
    label = canvas.ruler_label(canvas.measurements[0])
    assert label == "160.0 mm (PixelSpacing)"  # 100 pixels at 1.6 mm


def test_no_seams_between_chunks(qtbot: Any, make_window: Any) -> None:
    """A flat image drawn in 512-pixel chunks at fractional screen offsets stays flat."""
    from types import SimpleNamespace

    from PySide6.QtCore import QSizeF

    from viewer.browser import ImageContext
    from viewer.document import ImageDocument

    window = make_window()
    values = np.full((1100, 1300), 1234.0, np.float32)
    image = SimpleNamespace(path=Path("flat.dcm"), photometric="MONOCHROME2",
                            presentation_lut_shape=None, label="flat", pixel_spacing=None,
                            spacing_source="none", lossy=False)
    doc = ImageDocument(image, values, windows=[display.Window(1000.0, 1000.0, "W")])
    window._set_document(doc, ImageContext())
    canvas = window.compare.primary
    cases = [(1.0, (512 + f, 512 + f)) for f in (0.0, 0.25, 0.5, 0.75)]  # hits x.5 edges
    cases += [(0.73, (600.3, 511.7)), (2.37, (511.6, 512.2)), (0.31, (650.0, 550.0))]
    for zoom, centre in cases:
        window.view.set_zoom(zoom)
        window.view.center = QPointF(*centre)
        window.view.changed.emit()
        shown = _grab_gray(canvas)
        on_image = canvas.image_to_widget().mapRect(
            doc.original.image_rect()).toAlignedRect().adjusted(2, 2, -2, -2)
        on_image = on_image.intersected(canvas.rect().adjusted(0, 130, 0, -90))  # skip overlay
        patch = shown[on_image.top():on_image.bottom(), on_image.left():on_image.right()]
        expected = display.render(values[:1, :1], window=doc.window)[0, 0]
        assert patch.size and (patch == expected).all(), (zoom, centre, np.unique(patch))
    assert canvas.size_f() == QSizeF(canvas.width(), canvas.height())


def test_magnifier_shows_a_loupe(qtbot: Any, reading: Any) -> None:
    canvas = reading.compare.primary
    reading._set_tool(Tool.MAGNIFY)
    plain = canvas.grab().toImage()
    centre = QPoint(canvas.width() // 2, canvas.height() // 2)
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=centre)
    qtbot.mouseMove(canvas, centre + QPoint(5, 5))
    with_loupe = canvas.grab().toImage()
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=centre + QPoint(5, 5))
    assert with_loupe != plain
    assert canvas.grab().toImage() == plain
