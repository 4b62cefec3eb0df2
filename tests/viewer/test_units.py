"""Pieces of the viewer that need no window: settings, view geometry, overlay text, ruler."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QPointF, QSizeF

from viewer import settings
from viewer.context import ImageContext
from viewer.overlay import AI_MARK, OverlayInfo, corner_lines, format_person_name
from viewer.ruler import ruler_label, spacing_text
from viewer.view import ViewTransform


def test_settings_round_trip(tmp_path: Path) -> None:
    store = settings.open_store(tmp_path / "s.ini")
    s = settings.ViewerSettings(model="Fast", device="cpu", tile=128, theme="light",
                                drag_reverse_level=True, drag_sensitivity=2.5, threads=1)
    s.add_recent(tmp_path / "a")
    s.add_recent(tmp_path / "b")
    s.add_recent(tmp_path / "a")
    settings.save(s, store)
    again = settings.load(settings.open_store(tmp_path / "s.ini"))
    assert again == s
    assert again.recent == [str((tmp_path / "a").resolve()), str((tmp_path / "b").resolve())]


def test_settings_bad_values_fall_back_to_defaults(tmp_path: Path) -> None:
    store = settings.open_store(tmp_path / "s.ini")
    store.setValue("device", "tpu")
    store.setValue("tile", "huge")
    store.setValue("theme", "pink")
    store.setValue("threads", -3)
    loaded = settings.load(store)
    assert (loaded.device, loaded.tile, loaded.theme, loaded.threads) == ("auto", 256, "dark", 0)


def test_settings_empty_recent_list(tmp_path: Path) -> None:
    store = settings.open_store(tmp_path / "s.ini")
    settings.save(settings.ViewerSettings(), store)
    assert settings.load(settings.open_store(tmp_path / "s.ini")).recent == []


@pytest.fixture
def view() -> ViewTransform:
    v = ViewTransform()
    v.set_image_size(400, 200)
    return v


def test_fit_centres_the_image(view: ViewTransform) -> None:
    size = QSizeF(800, 800)
    assert view.effective_zoom(size) == pytest.approx(2.0)
    centre = view.to_widget(size).map(QPointF(200, 100))
    assert (centre.x(), centre.y()) == pytest.approx((400, 400))


def test_zoom_about_a_point_keeps_it_under_the_cursor(view: ViewTransform) -> None:
    size, cursor = QSizeF(800, 600), QPointF(123, 456)
    before = view.to_image(size).map(cursor)
    view.zoom_by(1.5, size, cursor)
    after = view.to_image(size).map(cursor)
    assert (after.x(), after.y()) == pytest.approx((before.x(), before.y()))
    assert view.zoom == pytest.approx(view.fit_zoom(size) * 1.5)
    assert not view.fit


def test_pan_moves_the_image_with_the_mouse(view: ViewTransform) -> None:
    size = QSizeF(800, 600)
    view.rotate(90)
    view.flip(True)
    p = QPointF(10, 20)
    before = view.to_widget(size).map(p)
    view.pan_by(30, -7, size)
    after = view.to_widget(size).map(p)
    assert (after.x() - before.x(), after.y() - before.y()) == pytest.approx((30, -7))


def test_rotate_and_flip_are_screen_space(view: ViewTransform) -> None:
    size = QSizeF(800, 800)
    view.flip(True)  # left-right on screen
    a, b = (view.to_widget(size).map(QPointF(x, 100)) for x in (0, 400))
    assert a.x() > b.x() and a.y() == pytest.approx(b.y())
    view.reset()
    view.rotate(90)  # clockwise: the image's top edge goes to the right
    top, bottom = (view.to_widget(size).map(QPointF(200, y)) for y in (0, 200))
    assert top.x() > bottom.x()
    view.rotate(90)
    view.rotate(90)
    view.rotate(90)
    assert view.rotation == 0


def test_overlay_lines_and_mark() -> None:
    info = OverlayInfo(context=ImageContext(patient_name="Doe^Jane", patient_id="X1",
                                            study_date="20240101"),
                       columns=256, rows=256, window_center=2000, window_width=3600,
                       window_name="STANDARD", spacing="1.600 mm (PixelSpacing)", zoom=2.0,
                       showing="enhanced", enhanced_size=(1024, 1024))
    lines = corner_lines(info)
    assert lines["tl"][0] == "Doe, Jane"
    assert "2024-01-01" in lines["tr"]
    assert "WC 2000  WW 3600" in lines["br"]
    assert any("1024 x 1024 (x4)" in line for line in lines["bl"])
    assert "Zoom 200%" in lines["bl"]
    assert info.ai_enhanced
    assert "not for diagnosis" in AI_MARK.format(scale=4)
    info.showing = "original"
    assert not info.ai_enhanced
    assert not any("1024" in line for line in corner_lines(info)["bl"])


def test_person_name() -> None:
    assert format_person_name("Anonymous") == "Anonymous"
    assert format_person_name("A^B^C") == "A, B C"
    assert format_person_name("") == ""


def test_ruler_names_its_spacing() -> None:
    a, b = QPointF(0, 0), QPointF(30, 40)
    assert ruler_label(a, b, (0.5, 0.5), "PixelSpacing") == "25.0 mm (PixelSpacing)"
    assert ruler_label(a, b, (0.1, 0.2), "ImagerPixelSpacing") == \
        f"{((30 * 0.2) ** 2 + (40 * 0.1) ** 2) ** 0.5:.1f} mm at detector (ImagerPixelSpacing)"
    assert ruler_label(a, b, None, "none") == "50 px (no pixel spacing)"
    assert "pixels" in spacing_text(None, "none")
    assert spacing_text((0.16, 0.16), "PixelSpacing") == "0.160 mm (PixelSpacing)"


def test_viewer_starts_without_torch() -> None:
    """Startup stays fast: torch loads on the first Enhance, not with the window."""
    code = ("import viewer.app, viewer.main_window, viewer.bench_stall, sys; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "False"
