"""Reading tools in their less common combinations: the loupe in split view, rotating a flipped
image, HiDPI sampling and 1:1, detector-plane lengths, the split cursor value, arrow keys in the
study browser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid
from PySide6.QtCore import QPoint, QPointF, QRectF, QSizeF, Qt
from PySide6.QtGui import QImage, QPainter, QTransform

from engine import display
from tests.viewer.helpers import open_and_wait
from viewer.canvas import LOUPE_RADIUS, Tool
from viewer.overlay import corner_lines
from viewer.raster import RasterLayer, qimage_to_frame, sampling_stride
from viewer.ruler import ruler_label, spacing_text
from viewer.view import ViewTransform


def _gray(image: QImage) -> np.ndarray:
    return qimage_to_frame(image.convertToFormat(QImage.Format.Format_Grayscale8))


def _fake_enhanced(doc: Any) -> None:
    """A finished 4x 'enhanced' layer without a network: nearest upsampling, inverted so that
    it cannot be mistaken for the original anywhere."""
    doc.begin_enhanced((0, 0, doc.rows, doc.columns), 4)
    up = np.repeat(np.repeat(doc.values, 4, 0), 4, 1).astype(np.float32)
    up = up.max() + up.min() - up
    doc.paste_tile((0, 0, up.shape[0], up.shape[1]), up)
    doc.finish_enhanced(up, None)
    assert doc.has_enhanced


@pytest.fixture
def reading(qtbot: Any, make_window: Any, lowres_folder: Path) -> Any:
    window = make_window()
    open_and_wait(qtbot, window, lowres_folder)
    window.settings.interpolation = "nearest"
    window.apply_settings()
    return window


@pytest.fixture
def split(qtbot: Any, reading: Any) -> Any:
    _fake_enhanced(reading.document)
    reading.set_compare("split")
    canvas = reading.compare.primary
    assert canvas.divider_x() == pytest.approx(canvas.width() / 2)
    return reading


# -- 1. the loupe in split view ----------------------------------------------------------------
def test_magnifier_in_split_view_stays_inside_its_circle(qtbot: Any, split: Any) -> None:
    canvas = split.compare.primary
    split._set_tool(Tool.MAGNIFY)
    press = QPoint(canvas.width() // 2 + 40, canvas.height() // 2)
    centre = press + QPoint(2, 2)
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=press)
    qtbot.mouseMove(canvas, centre)
    with_loupe = _gray(canvas.grab().toImage())
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=centre)
    plain = _gray(canvas.grab().toImage())

    ys, xs = np.mgrid[0:plain.shape[0], 0:plain.shape[1]]
    distance = np.hypot(xs - centre.x(), ys - centre.y())
    outside = distance > LOUPE_RADIUS + 3  # beyond the loupe's antialiased rim
    inside = distance < LOUPE_RADIUS - 3
    changed = with_loupe != plain
    assert not changed[outside].any(), f"{changed[outside].sum()} pixels changed outside"
    assert changed[inside].mean() > 0.2  # the loupe does show something magnified
    # both halves magnified inside the circle: the divider splits the loupe as well
    left = inside & (xs < canvas.divider_x() - 2)
    right = inside & (xs > canvas.divider_x() + 2)
    assert left.any() and right.any()


# -- 2. rotating a flipped image ---------------------------------------------------------------
def _top_edge_direction(view: ViewTransform, size: QSizeF) -> tuple[float, float]:
    """Screen vector from the image centre to the middle of its top edge."""
    t = view.to_widget(size)
    w, h = view.image_size.width(), view.image_size.height()
    centre, top = t.map(QPointF(w / 2, h / 2)), t.map(QPointF(w / 2, 0))
    return round(top.x() - centre.x(), 6), round(top.y() - centre.y(), 6)


@pytest.mark.parametrize("flips", [(True, False), (False, True), (True, True), (False, False)])
def test_rotate_turns_clockwise_on_screen_whatever_the_flips(flips: tuple[bool, bool]) -> None:
    view = ViewTransform()
    view.set_image_size(400, 200)
    size = QSizeF(800, 800)
    for horizontal, on in zip((True, False), flips, strict=True):
        if on:
            view.flip(horizontal)
    dx, dy = _top_edge_direction(view, size)
    for _ in range(4):  # a screen vector turned 90 degrees clockwise (y down): (x, y) -> (-y, x)
        view.rotate(90)
        dx, dy = -dy, dx
        assert _top_edge_direction(view, size) == pytest.approx((dx, dy))
    view.rotate(-90)  # Shift+R: anticlockwise
    assert _top_edge_direction(view, size) == pytest.approx((dy, -dx))


def test_r_after_a_horizontal_flip_moves_the_top_edge_to_the_right(qtbot: Any,
                                                                   reading: Any) -> None:
    canvas, view = reading.compare.primary, reading.view
    reading.activateWindow()
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_H)
    assert view.flip_h
    qtbot.keyClick(canvas, Qt.Key.Key_R)
    dx, dy = _top_edge_direction(view, canvas.size_f())
    assert dx > 100 and dy == pytest.approx(0, abs=1e-6)  # top edge now on the right
    qtbot.keyClick(canvas, Qt.Key.Key_R, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClick(canvas, Qt.Key.Key_R, Qt.KeyboardModifier.ShiftModifier)
    dx, dy = _top_edge_direction(view, canvas.size_f())
    assert dx < -100 and dy == pytest.approx(0, abs=1e-6)  # Shift+R twice: on the left


# -- 3. HiDPI: sampling stride and 1:1 -----------------------------------------------------------
def test_sampling_stride_counts_device_pixels() -> None:
    assert sampling_stride(0.4) == 2  # 2.5 image pixels per device pixel: every other value
    assert sampling_stride(0.4 * 2) == 1  # zoom 0.4 on a 2x screen: 0.8 device px per pixel
    assert sampling_stride(0.3) == 3
    assert sampling_stride(1.0) == sampling_stride(2.5) == 1


@pytest.mark.parametrize("dpr", [1.0, 2.0])
def test_hidpi_paint_keeps_every_value(dpr: float) -> None:
    """Alternate columns 0 / 1000 drawn at zoom 0.4: on a 1x device only every other column
    is sampled (all black); on a 2x device (0.8 device px per value) none may be dropped, so
    smoothing averages black and white to mid grey."""
    values = np.zeros((400, 400), np.float32)
    values[:, 1::2] = 1000.0
    window = display.Window(500.0, 1000.0, "W", "LINEAR_EXACT")
    layer = RasterLayer(values, lambda v: display.render(v, window=window))
    logical = 160  # 400 values x 0.4
    target = QImage(int(logical * dpr), int(logical * dpr), QImage.Format.Format_RGB32)
    target.setDevicePixelRatio(dpr)
    target.fill(Qt.GlobalColor.red)
    painter = QPainter(target)
    zoom = QTransform()
    zoom.scale(0.4, 0.4)
    layer.paint(painter, zoom, QRectF(0, 0, logical, logical), smooth=True)
    painter.end()
    shown = _gray(target)[4:-4, 4:-4].astype(float)
    if dpr == 2.0:
        assert 90 < shown.mean() < 165, shown.mean()
    else:
        assert shown.max() <= 2  # stride 2 at 1x, as before: only the black columns


def test_one_to_one_is_one_image_pixel_per_device_pixel(qtbot: Any, reading: Any) -> None:
    canvas, view = reading.compare.primary, reading.view
    canvas.devicePixelRatioF = lambda: 2.0  # a 2x HiDPI screen (QT_SCALE_FACTOR is global)
    reading.actions_by_name["one_to_one"].trigger()
    assert not view.fit and view.zoom == pytest.approx(0.5)  # 0.5 logical = 1 device pixel
    info = reading.overlay_info(canvas)
    assert info.zoom == pytest.approx(1.0)
    assert "Zoom 100%" in corner_lines(info)["bl"]
    view.set_fit()  # fit: the % counts device pixels too
    fit = view.fit_zoom(canvas.size_f())
    assert reading.overlay_info(canvas).zoom == pytest.approx(2 * fit)
    canvas.devicePixelRatioF = lambda: 1.0
    reading.actions_by_name["one_to_one"].trigger()
    assert view.zoom == pytest.approx(1.0)
    assert "Zoom 100%" in corner_lines(reading.overlay_info(canvas))["bl"]


# -- 4. detector-plane spacing -------------------------------------------------------------------
def test_ruler_says_when_lengths_are_at_the_detector() -> None:
    a, b = QPointF(0, 0), QPointF(30, 40)
    assert ruler_label(a, b, (0.5, 0.5), "ImagerPixelSpacing") == \
        "25.0 mm at detector (ImagerPixelSpacing)"
    assert ruler_label(a, b, (0.5, 0.5), "PixelSpacing") == "25.0 mm (PixelSpacing)"
    assert ruler_label(a, b, (0.5, 0.5), "PixelSpacing:GEOMETRY") == \
        "25.0 mm (PixelSpacing, GEOMETRY)"
    assert spacing_text((0.16, 0.16), "ImagerPixelSpacing") == \
        "0.160 mm at detector (ImagerPixelSpacing)"
    assert spacing_text((0.16, 0.16), "PixelSpacing:FIDUCIAL") == \
        "0.160 mm (PixelSpacing, FIDUCIAL)"


def test_pixel_spacing_equal_to_imager_spacing_measures_at_the_detector(
        qtbot: Any, make_window: Any, tmp_path: Path, lowres_path: Path) -> None:
    folder = tmp_path / "dx"
    folder.mkdir()
    ds = pydicom.dcmread(lowres_path)
    ds.PixelSpacing = ds.ImagerPixelSpacing = [0.5, 0.5]  # common in CR/DX: not calibrated
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(folder / "image.dcm")
    window = make_window()
    doc = open_and_wait(qtbot, window, folder)
    assert doc.image.spacing_source == "ImagerPixelSpacing"
    canvas = window.compare.primary
    assert window.overlay_info(canvas).spacing == "0.500 mm at detector (ImagerPixelSpacing)"
    window.view.one_to_one()
    window._set_tool(Tool.RULER)
    start = QPoint(canvas.width() // 2 - 50, canvas.height() // 2)
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(canvas, start + QPoint(100, 0))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=start + QPoint(100, 0))
    assert canvas.ruler_label(canvas.measurements[0]) == \
        "50.0 mm at detector (ImagerPixelSpacing)"


# -- 5. the cursor value in split view ---------------------------------------------------------
def test_split_cursor_reads_the_layer_under_it(qtbot: Any, split: Any) -> None:
    canvas, doc = split.compare.primary, split.document
    divider = canvas.divider_x()
    for dx, enhanced, name in ((-60, False, "original"), (60, True, "enhanced")):
        pos = QPoint(int(divider) + dx, canvas.height() // 2)
        qtbot.mouseMove(canvas, pos)
        p = canvas.widget_to_image(QPointF(pos))
        assert (split.cursor.x(), split.cursor.y()) == pytest.approx((p.x(), p.y()))
        expected = doc.value_at(p.x(), p.y(), enhanced=enhanced)
        other = doc.value_at(p.x(), p.y(), enhanced=not enhanced)
        assert expected != other
        assert canvas.underMouse()
        readout = split.overlay_info(canvas).cursor_value
        assert readout == f"({int(p.x())}, {int(p.y())})  {expected:.1f}  {name}"
    # leave the pointer off the image: the next test's window opens where this one was
    qtbot.mouseMove(split.browser.tree, QPoint(5, 5))


# -- 6. arrow keys in the study browser -------------------------------------------------------------
def test_arrow_keys_in_the_browser_load_the_highlighted_image(
        qtbot: Any, make_window: Any, tmp_path: Path, lowres_path: Path) -> None:
    folder = tmp_path / "series"
    folder.mkdir()
    for i in range(3):
        ds = pydicom.dcmread(lowres_path)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = i + 1
        ds.save_as(folder / f"im{i + 1}.dcm")
    window = make_window()
    open_and_wait(qtbot, window, folder, images=3)
    browser, tree = window.browser, window.browser.tree
    qtbot.waitUntil(lambda: window.document.image is browser.images[0][0], timeout=20_000)
    activated: list[Any] = []
    browser.imageActivated.connect(lambda image, _ctx: activated.append(image))
    tree.setFocus()
    assert browser.current_index() == 0
    qtbot.keyClick(tree, Qt.Key.Key_Down)
    qtbot.keyClick(tree, Qt.Key.Key_Down)  # held key: the middle image is passed over
    assert browser.current_index() == 2
    assert activated == []  # debounced: nothing decodes while the key moves on
    want = browser.images[2][0]
    qtbot.waitUntil(lambda: window.document.image is want, timeout=20_000)
    assert activated == [want]  # one load, the highlighted row
    qtbot.keyClick(tree, Qt.Key.Key_Up)
    qtbot.waitUntil(lambda: window.document.image is browser.images[1][0], timeout=20_000)
    assert browser.current_index() == 1
    assert activated == [want, browser.images[1][0]]


# -- 7. non-square pixels ----------------------------------------------------------------------
def test_non_square_pixels_are_drawn_to_their_shape() -> None:
    view = ViewTransform()
    view.set_image_size(100, 50, (2.0, 1.0))  # pixels twice as tall as wide: a square patient
    size = QSizeF(400, 400)
    shown = view.to_widget(size).mapRect(QRectF(0, 0, 100, 50))
    assert shown.width() == pytest.approx(400) and shown.height() == pytest.approx(400)
    assert view.to_image(size).map(QPointF(200, 200)) == QPointF(50, 25)
    view.rotate(90)
    shown = view.to_widget(size).mapRect(QRectF(0, 0, 100, 50))
    assert shown.width() == pytest.approx(400) and shown.height() == pytest.approx(400)
    copy = ViewTransform()
    copy.copy_from(view)
    assert copy.to_widget(size) == view.to_widget(size)
    view.set_image_size(100, 50)  # the next image is square-pixelled again
    assert view.to_widget(size).mapRect(QRectF(0, 0, 100, 50)).height() == pytest.approx(200)


def test_sampling_follows_the_axis_drawn_larger() -> None:
    """One stride serves both axes: it must be the one the finer axis needs (2 here, not 4,
    which would drop every other row of pixels drawn twice as tall as wide)."""
    from viewer.view import transform_scale

    t = QTransform.fromScale(0.25, 0.5)
    assert transform_scale(t) == pytest.approx(0.5)
    assert sampling_stride(transform_scale(t)) == sampling_stride(0.5)
    assert transform_scale(QTransform().rotate(90).scale(0.25, 0.5)) == pytest.approx(0.5)


def test_a_circle_on_non_square_pixels_is_a_circle_on_screen(
        qtbot: Any, make_window: Any, tmp_path: Path) -> None:
    """A disc 30 mm across, sampled at 0.4 mm per row and 0.2 mm per column (an ellipse in the
    pixel grid, 150 columns by 75 rows), shows as round; the ruler still measures in mm."""
    from tests.engine.test_io_scan import make_dx

    yy, xx = np.mgrid[0:100, 0:200]
    disc = (((xx - 100) * 0.2) ** 2 + ((yy - 50) * 0.4) ** 2 <= 15 ** 2)
    folder = tmp_path / "dx"
    folder.mkdir()
    make_dx(folder / "disc.dcm", study_uid=generate_uid(), series_uid=generate_uid(),
            pixels=np.where(disc, 4000, 0).astype(np.uint16), PixelSpacing=[0.4, 0.2],
            WindowCenter=2000, WindowWidth=4000)
    window = make_window()
    doc = open_and_wait(qtbot, window, folder)
    assert doc.image.pixel_aspect == pytest.approx((2.0, 1.0))
    canvas = window.compare.primary
    assert "pixels 2:1 (h:w), drawn to shape" in window.overlay_info(canvas).spacing
    grab = _gray(canvas.grab().toImage())
    bright = np.argwhere(grab[60:-60] > 128)  # the disc, not the corner texts
    height = bright[:, 0].max() - bright[:, 0].min() + 1
    width = bright[:, 1].max() - bright[:, 1].min() + 1
    assert abs(width - height) <= 0.03 * width, (width, height)
    centre = canvas.image_to_widget().map(QPointF(100, 50))
    assert canvas.widget_to_image(centre) == QPointF(100, 50)
    assert width == pytest.approx(0.75 * canvas.height(), rel=0.03)  # 30 of the 40 mm shown
    window._set_tool(Tool.RULER)  # across the image, left edge to right edge: 40 mm
    left, right = canvas.image_to_widget().map(QPointF(0, 50)), \
        canvas.image_to_widget().map(QPointF(200, 50))
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=left.toPoint())
    qtbot.mouseMove(canvas, right.toPoint())
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=right.toPoint())
    label = canvas.ruler_label(canvas.measurements[0])
    assert label.endswith("mm (PixelSpacing)") and abs(float(label.split()[0]) - 40.0) < 0.5


def test_thumbnails_of_non_square_pixels_have_the_images_shape(tmp_path: Path) -> None:
    import threading

    from tests.engine.test_io_scan import make_dx
    from viewer.browser import THUMB, ScanWorker

    folder = tmp_path / "dx"
    folder.mkdir()
    make_dx(folder / "tall.dcm", study_uid=generate_uid(), series_uid=generate_uid(),
            pixels=np.zeros((100, 200), np.uint16), PixelSpacing=[0.4, 0.2])  # 40 x 40 mm
    make_dx(folder / "wide.dcm", study_uid=generate_uid(), series_uid=generate_uid(),
            pixels=np.zeros((100, 200), np.uint16))  # square pixels: twice as wide as tall
    worker = ScanWorker(folder, threading.Event())
    sizes: dict[int, tuple[int, int]] = {}
    worker.thumbnail.connect(lambda _g, index, image: sizes.update({index: (image.width(),
                                                                            image.height())}))
    worker.run()
    names = [image.path.name for image in worker._images]
    assert sizes[names.index("tall.dcm")] == (THUMB, THUMB)
    assert sizes[names.index("wide.dcm")] == (THUMB, THUMB // 2)
