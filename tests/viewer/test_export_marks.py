"""Every export of an enhanced image says what it is: the 8-bit "as shown" PNG and Copy carry the
viewer's AI mark burned in; PNG and TIFF carry the model and the warning in their text; full-depth
files keep the source's polarity."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage

from tests.viewer.helpers import enhance_and_wait, open_and_wait
from viewer.export import burn_mark, export_enhanced


@pytest.fixture
def enhanced(qtbot: Any, make_window: Any, lowres_folder: Path, tiny_net: Any) -> Any:
    window = make_window(tiny_net)
    open_and_wait(qtbot, window, lowres_folder)
    enhance_and_wait(qtbot, window)
    return window


def _mark_box(marked: np.ndarray, plain: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(marked != plain)
    return int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1


def test_burn_mark_is_a_black_on_white_label_in_the_top_right_corner(qapp: Any) -> None:
    plain = np.full((400, 600), 128, np.uint8)
    marked = burn_mark(plain, 4)
    assert marked.shape == plain.shape and marked.dtype == np.uint8
    y0, x0, y1, x1 = _mark_box(marked, plain)
    assert y0 < 20 and x1 > 580 and x0 > 200  # the top-right corner only
    assert 8 <= y1 - y0 <= 40  # about 2.5 % of the shorter side, plus padding
    label = marked[y0:y1, x0:x1]
    assert (label == 255).mean() > 0.5 and (label < 64).sum() > 50  # white box, dark letters
    np.testing.assert_array_equal(plain, 128)  # the input is not drawn on


def test_png8_as_shown_carries_the_mark_and_the_text(enhanced: Any, tmp_path: Path) -> None:
    doc = enhanced.document
    written = enhanced.export_to(tmp_path / "shown.png", "png8")
    assert written is not None, enhanced.message.text()
    shown = doc.render(doc.enhanced.values)
    with PILImage.open(written) as im:
        arr, text = np.asarray(im), dict(im.text)
    y0, x0, y1, x1 = _mark_box(arr, shown)
    assert y0 < 50 and y1 < 100 and x0 > 300 and x1 > 1000  # the top-right corner
    outside = np.ones(arr.shape, bool)
    outside[y0:y1, x0:x1] = False
    np.testing.assert_array_equal(arr[outside], shown[outside])
    assert text["Warning"].startswith("AI-ENHANCED x4 - not for diagnosis")
    assert enhanced.enhance.last_result.model_sha256 in text["Description"]


@pytest.mark.parametrize("kind,suffix", [("png16", ".png"), ("tiff", ".tif")])
def test_full_depth_exports_say_what_they_are(enhanced: Any, tmp_path: Path, kind: str,
                                              suffix: str) -> None:
    written = enhanced.export_to(tmp_path / f"full{suffix}", kind)
    assert written is not None, enhanced.message.text()
    if kind == "tiff":
        with tifffile.TiffFile(written) as tif:
            text = tif.pages[0].description
    else:
        with PILImage.open(written) as im:
            text = " ".join(im.text.values())
    assert "AI-ENHANCED x4 - not for diagnosis" in text
    assert enhanced.enhance.last_result.model_sha256 in text


def test_copy_of_the_enhanced_image_carries_the_mark(qtbot: Any, enhanced: Any) -> None:
    from PySide6.QtGui import QGuiApplication

    from viewer.raster import qimage_to_frame

    doc = enhanced.document
    enhanced.copy_image()
    copied = qimage_to_frame(QGuiApplication.clipboard().image().convertToFormat(
        QGuiApplication.clipboard().image().Format.Format_Grayscale8))
    assert (copied != doc.render(doc.enhanced.values)).any()
    enhanced.compare.toggle_ab()  # the original: copied as it is, no mark
    enhanced.copy_image()
    original = qimage_to_frame(QGuiApplication.clipboard().image().convertToFormat(
        QGuiApplication.clipboard().image().Format.Format_Grayscale8))
    np.testing.assert_array_equal(original, doc.render(doc.values))


def test_full_depth_exports_keep_a_monochrome1_sources_polarity(tmp_path: Path) -> None:
    values = np.linspace(0.0, 4095.0, 64, dtype=np.float32).reshape(8, 8)
    result = SimpleNamespace(model_name="m", model_sha256="cd" * 32, scale=4, tile=64, overlap=8,
                             precision="fp32", device="cpu", region=None,
                             value_range=(0.0, 4095.0))
    document = SimpleNamespace(
        enhanced=SimpleNamespace(values=values, result=result, complete=True),
        image=SimpleNamespace(path=str(tmp_path / "src.dcm"), source_file=None),
        shows_inverted=True)
    with PILImage.open(export_enhanced(document, tmp_path / "m1.png", "png16")) as im:
        pixels = np.asarray(im)
    assert pixels[0, 0] == 65535 and pixels[-1, -1] == 0  # high values dark, as displayed
    with tifffile.TiffFile(export_enhanced(document, tmp_path / "m1.tif", "tiff")) as tif:
        assert tif.pages[0].photometric == tifffile.PHOTOMETRIC.MINISWHITE


def test_as_shown_copies_of_non_square_pixels_have_the_images_shape(qapp: Any) -> None:
    """Pixels twice as tall as wide: the 8-bit copies (as-shown PNG, Copy) are resampled to
    square pixels, as the screen shows them, and the mark is drawn after, undistorted."""
    from viewer.export import shown_frame, to_pixel_shape

    values = np.tile(np.linspace(0, 255, 200, dtype=np.float32), (100, 1))
    doc = SimpleNamespace(image=SimpleNamespace(pixel_aspect=(2.0, 1.0)), enhanced=None,
                          values=values, render=lambda v: np.clip(v, 0, 255).astype(np.uint8))
    frame = shown_frame(doc, enhanced=False)
    assert frame.shape == (200, 200) and frame.dtype == np.uint8
    np.testing.assert_allclose(frame[:, 100].astype(float), values[0, 100], atol=2)
    square = SimpleNamespace(image=SimpleNamespace(pixel_aspect=(1.0, 1.0)))
    plain = np.zeros((100, 200), np.uint8)
    assert to_pixel_shape(plain, square) is plain
