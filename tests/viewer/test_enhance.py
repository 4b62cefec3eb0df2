"""Enhance in the window with a tiny random network: tiles, A/B, compare modes, cancel, export."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage
from PySide6.QtCore import Qt

from engine import io
from tests.viewer.conftest import tiny_network
from tests.viewer.helpers import enhance_and_wait, open_and_wait


def _centre_pixel(canvas: Any) -> int:
    image = canvas.grab().toImage()
    return image.pixelColor(canvas.width() // 2, canvas.height() // 2).red()


@pytest.fixture
def enhanced(qtbot: Any, make_window: Any, lowres_folder: Path, tiny_net: Any) -> Any:
    window = make_window(tiny_net)
    open_and_wait(qtbot, window, lowres_folder)
    tiles: list[Any] = []
    window.enhance.tilePasted.connect(tiles.append)
    enhance_and_wait(qtbot, window)
    window.tiles_seen = tiles
    return window


def test_enhance_completes_tile_by_tile(enhanced: Any) -> None:
    doc, controller = enhanced.document, enhanced.enhance
    assert doc.enhanced.values.shape == (1024, 1024)
    assert doc.enhanced.region == (0, 0, 256, 256)
    assert len(enhanced.tiles_seen) == controller.tiles_received >= 16  # 64-pixel tiles
    assert controller.max_tile_ms > 0  # measured; its budget is a benchmark (make bench-stall)
    result = controller.last_result
    np.testing.assert_array_equal(doc.enhanced.values, result.image)
    # the enhanced image keeps the input's value range, so the window means the same on both
    lo, hi = result.value_range
    assert lo <= float(doc.enhanced.values.min()) and float(doc.enhanced.values.max()) <= hi
    assert "Device: cpu" in enhanced.device_label.text()
    assert "Enhanced in" in enhanced.time_label.text()
    assert enhanced.compare.primary.show_top  # tiles were shown as they came


def test_ab_key_swaps_pixels_but_keeps_window_and_view(qtbot: Any, enhanced: Any) -> None:
    canvas, view, doc = enhanced.compare.primary, enhanced.view, enhanced.document
    view.zoom_by(2.0, canvas.size_f())
    doc.drag_window(15, 5)
    window_before, transform_before = doc.window, canvas.image_to_widget()
    info_before = enhanced.overlay_info(canvas)
    assert info_before.showing == "enhanced"
    shown_enhanced = canvas.grab().toImage()
    enhanced.activateWindow()
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_B)
    assert not canvas.show_top
    assert enhanced.overlay_info(canvas).showing == "original"
    shown_original = canvas.grab().toImage()
    assert shown_original != shown_enhanced
    assert doc.window == window_before
    assert canvas.image_to_widget() == transform_before
    qtbot.keyClick(canvas, Qt.Key.Key_Tab)
    assert canvas.show_top
    assert canvas.grab().toImage() == shown_enhanced


def test_compare_modes(qtbot: Any, enhanced: Any) -> None:
    compare = enhanced.compare
    enhanced.set_compare("split")
    assert compare.primary.split == pytest.approx(0.5)
    assert enhanced.overlay_info(compare.primary).showing == "split"
    enhanced.set_compare("side")
    assert compare.secondary.isVisible()
    assert compare.secondary.view is compare.primary.view  # linked zoom and pan
    enhanced.set_compare("diff")
    qtbot.waitUntil(lambda: enhanced.document.difference_layer is not None, timeout=20_000)
    diff = enhanced.document.difference_layer.values
    assert diff.shape == (1024, 1024)
    assert np.isfinite(diff).all() and np.abs(diff).max() > 0
    enhanced.set_compare("ab")
    assert not compare.secondary.isVisible()


def test_enhance_visible_region(qtbot: Any, make_window: Any, lowres_folder: Path,
                                tiny_net: Any) -> None:
    window = make_window(tiny_net)
    open_and_wait(qtbot, window, lowres_folder)
    canvas = window.compare.primary
    window.view.set_zoom(8.0)  # 8 screen pixels per image pixel: only part of the image shows
    region = window.enhance_region("visible")
    assert region is not None
    y0, x0, y1, x1 = region
    assert 0 < y1 - y0 < 256 and 0 < x1 - x0 < 256
    enhance_and_wait(qtbot, window, "visible")
    state = window.document.enhanced
    assert state.region == region
    assert state.values.shape == ((y1 - y0) * 4, (x1 - x0) * 4)
    assert canvas.show_top


class _SlowNet:
    """Wraps a network so each tile takes a while: time for the test to press Cancel."""

    def __new__(cls, delay: float) -> Any:
        import torch

        class Slow(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = tiny_network()
                self.scale = 4
                self.forwards = 0

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                self.forwards += 1
                time.sleep(delay)
                return self.inner(x)

        return Slow()


def test_cancel_stops_within_one_tile(qtbot: Any, make_window: Any, lowres_folder: Path,
                                     one_torch_thread: None) -> None:
    net = _SlowNet(0.15)
    window = make_window(net)
    window.settings.tile = 32  # 64 tiles: far more than run before the cancel lands
    open_and_wait(qtbot, window, lowres_folder)
    assert window.start_enhance()
    qtbot.waitUntil(lambda: window.enhance.tiles_received >= 1 or net.forwards >= 2,
                    timeout=30_000)
    forwards_at_cancel = net.forwards
    window.cancel_enhance()
    with qtbot.waitSignal(window.enhance.ended, timeout=10_000) as blocker:
        pass
    assert blocker.args == ["cancelled"]
    assert net.forwards <= forwards_at_cancel + 1
    assert window.document.enhanced is None  # the unfinished layer is dropped
    assert not window.compare.primary.show_top
    assert window.progress.isHidden()


def test_close_during_enhance_waits_for_the_thread(qtbot: Any, make_window: Any,
                                                   lowres_folder: Path,
                                                   one_torch_thread: None) -> None:
    net = _SlowNet(0.1)
    window = make_window(net)
    window.settings.tile = 32
    open_and_wait(qtbot, window, lowres_folder)
    window.start_enhance()
    qtbot.waitUntil(lambda: net.forwards >= 1, timeout=30_000)
    job = window.enhance.job
    window.close()
    assert not job.is_running()


def test_no_model_installed_is_one_sentence(qtbot: Any, make_window: Any, lowres_folder: Path,
                                            tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("CXR_ENHANCE_MODELS_DIR", str(tmp_path / "no-models"))
    from viewer.worker import clear_enhancers

    clear_enhancers()
    window = make_window(None)
    open_and_wait(qtbot, window, lowres_folder)
    window.start_enhance()
    qtbot.waitUntil(lambda: not window.enhance.is_running(), timeout=30_000)
    text = window.message.text()
    assert "No super-resolution model is installed" in text
    assert str(tmp_path / "no-models") in text
    assert window.message.action.text() == "Open the models folder"
    assert window.document.enhanced is None


@pytest.mark.parametrize("kind,suffix", [("dicom", ".dcm"), ("png16", ".png"),
                                         ("tiff", ".tif"), ("png8", ".png")])
def test_export_writes_a_file_that_reads_back(enhanced: Any, tmp_path: Path, kind: str,
                                              suffix: str) -> None:
    values = enhanced.document.enhanced.values
    written = enhanced.export_to(tmp_path / f"out{suffix}", kind)
    assert written is not None and written.is_file(), enhanced.message.text()
    if kind == "dicom":
        collection = io.load(written)
        (image,) = collection.images
        assert (image.rows, image.columns) == (1024, 1024)
        assert image.pixel_spacing == pytest.approx((0.4, 0.4))  # 1.6 mm / 4
        back = image.modality_values()
        assert np.abs(back - values).max() <= 1.0  # stored as integers
        study = collection.studies[0]
        assert study.study_uid == enhanced.context.study_uid  # same study, new series
        assert image.sop_instance_uid != enhanced.document.image.sop_instance_uid
    else:
        with PILImage.open(written) as im:
            arr = np.asarray(im)
        assert arr.shape == (1024, 1024)
        if kind == "png8":  # as shown, with the AI mark burned into the top-right corner
            shown = enhanced.document.render(values)
            np.testing.assert_array_equal(arr[120:], shown[120:])
            assert (arr[:120] != shown[:120]).any()
        else:
            lo, hi = enhanced.enhance.last_result.value_range
            back = lo + arr.astype(np.float64) / 65535 * (hi - lo)
            assert np.abs(back - values).max() <= (hi - lo) / 65535 + 1e-3


def test_export_refuses_to_overwrite_the_source(enhanced: Any) -> None:
    source = Path(enhanced.document.image.path)
    before = source.read_bytes()
    assert enhanced.export_to(source, "dicom") is None
    assert "Export failed" in enhanced.message.text()
    assert source.read_bytes() == before


def test_copy_to_clipboard(enhanced: Any) -> None:
    from PySide6.QtGui import QGuiApplication

    enhanced.copy_image()
    image = QGuiApplication.clipboard().image()
    assert (image.width(), image.height()) == (1024, 1024)


def test_enhance_request_carries_the_display_polarity(qtbot: Any, make_window: Any,
                                                      lowres_folder: Path, tmp_path: Path) -> None:
    # The networks were trained bone-bright; a MONOCHROME1 film must reach them flipped.
    window = make_window()
    open_and_wait(qtbot, window, lowres_folder)
    assert window.enhance_request().inverted is False  # MONOCHROME2 sample
    dx = Path(__file__).resolve().parents[2] / "resources" / "samples" / "966_DX_chest_mono1_inverse_j2k.dcm"
    folder = tmp_path / "dx"
    folder.mkdir()
    (folder / dx.name).symlink_to(dx)
    window.open_path(folder, remember=False, thumbnails=False)
    qtbot.waitUntil(lambda: window.document is not None and window.document.rows == 2128,
                    timeout=30_000)
    assert window.enhance_request().inverted is True  # MONOCHROME1 + INVERSE: once, not twice


def test_a_long_enhance_suggests_the_quicker_ways_once(qtbot: Any, make_window: Any,
                                                      lowres_folder: Path) -> None:
    window = make_window()
    open_and_wait(qtbot, window, lowres_folder)
    window._on_enhance_started()
    window._on_enhance_progress(1, 40, 5.0, 30.0)
    assert window.message.isHidden()  # half a minute: no hint
    window._on_enhance_progress(2, 40, 10.0, 600.0)
    assert not window.message.isHidden() and window.message.level == "info"
    assert "visible region" in window.message.text() and "Fast model" in window.message.text()
    window.message.hide()
    window._on_enhance_progress(3, 40, 15.0, 590.0)
    assert window.message.isHidden()  # once per run
    window._on_enhance_ended("finished")


# -- review fixes: stale signals, closing, failed loads --------------------------------------
def test_side_by_side_after_a_cancelled_enhance_shows_no_ai_badge(
        qtbot: Any, make_window: Any, lowres_folder: Path, one_torch_thread: None) -> None:
    net = _SlowNet(0.03)
    window = make_window(net)
    open_and_wait(qtbot, window, lowres_folder)
    enhance_and_wait(qtbot, window)
    window.set_compare("side")
    secondary = window.compare.secondary
    assert window.overlay_info(secondary).showing == "side"
    assert window._overlay(secondary)[1] is not None  # the AI badge on the enhanced side
    window.settings.tile = 32  # 64 tiles, ~2 s: still running when the cancel lands
    assert window.start_enhance()  # Enhance again in side-by-side, then Cancel
    qtbot.waitUntil(lambda: window.enhance.tiles_received >= 1, timeout=30_000)
    window.cancel_enhance()
    qtbot.waitUntil(lambda: window.progress.isHidden(), timeout=10_000)
    assert window.compare.mode == "side" and secondary.top is None  # the original, twice
    info = window.overlay_info(secondary)
    assert info.showing == "original" and not info.ai_enhanced
    assert window._overlay(secondary)[1] is None


def test_a_previous_runs_late_thread_end_does_not_end_the_next_run(
        qtbot: Any, make_window: Any, lowres_folder: Path, one_torch_thread: None) -> None:
    """Enhance pressed between a run's outcome and its thread's end: the old job's `done`
    must neither end the new run in the UI nor be deleted while its thread still runs."""
    import shiboken6

    net = _SlowNet(0.03)
    window = make_window(net)
    open_and_wait(qtbot, window, lowres_folder)
    gate = threading.Event()
    assert window.start_enhance()
    old = window.enhance.job
    old_thread = old._thread
    # Runs on the worker thread right after it reports finished: holds that thread open.
    old._worker.finished.connect(lambda _result: gate.wait(20))
    deleted_while_running: list[bool] = []
    old.destroyed.connect(lambda *_: deleted_while_running.append(old_thread.isRunning()))
    restarted: list[bool] = []
    window.enhance.finished.connect(
        lambda _r: restarted or restarted.append(window.start_enhance()))
    ends: list[tuple[str, bool]] = []
    window.enhance.ended.connect(lambda o: ends.append((o, window.enhance.is_running())))
    try:
        qtbot.waitUntil(lambda: restarted == [True] and window.enhance.tiles_received >= 1,
                        timeout=30_000)
        assert old_thread.isRunning()
        assert deleted_while_running == []  # not deleted under its running thread
    finally:
        gate.set()
    qtbot.waitUntil(lambda: bool(ends), timeout=30_000)
    assert ends == [("finished", False)]  # only the new run's own end
    qtbot.waitUntil(lambda: not shiboken6.isValid(old), timeout=10_000)
    assert deleted_while_running == [False]
    assert window.enhance._retired == []
    assert window.document.has_enhanced


def test_difference_asked_for_while_an_outdated_one_runs_is_computed(
        qtbot: Any, enhanced: Any, monkeypatch: Any) -> None:
    import engine.evaluation as evaluation

    real = evaluation.difference_from_bicubic
    gate = threading.Event()
    calls: list[Any] = []

    def slow_first(original: Any, values: Any, scale: int) -> Any:
        calls.append(values)
        if len(calls) == 1:
            gate.wait(20)
        return real(original, values, scale)

    monkeypatch.setattr(evaluation, "difference_from_bicubic", slow_first)
    try:
        enhanced.set_compare("diff")
        qtbot.waitUntil(lambda: len(calls) == 1, timeout=10_000)
        enhance_and_wait(qtbot, enhanced)  # Enhance again: the running difference is outdated
        assert enhanced.compare.mode == "ab"
        enhanced.set_compare("diff")
    finally:
        gate.set()
    qtbot.waitUntil(lambda: enhanced.document.difference_layer is not None, timeout=20_000)
    assert len(calls) == 2 and calls[1] is enhanced.document.enhanced.values
    assert enhanced.overlay_info(enhanced.compare.primary).showing == "diff"


def test_close_waits_out_a_tile_longer_than_any_time_limit(
        qtbot: Any, make_window: Any, lowres_folder: Path, one_torch_thread: None,
        monkeypatch: Any) -> None:
    from viewer.worker import EnhanceJob

    net = _SlowNet(0.6)
    window = make_window(net)
    open_and_wait(qtbot, window, lowres_folder)
    window.start_enhance()
    qtbot.waitUntil(lambda: net.forwards >= 1, timeout=30_000)
    job = window.enhance.job
    # Every wait gives up after 50 ms: what any fixed limit does for a tile slower than it.
    real_wait = EnhanceJob.wait
    monkeypatch.setattr(EnhanceJob, "wait",
                        lambda self, ms=30_000: real_wait(self, min(ms, 50)))
    window.close()
    assert not job.is_running()  # no QThread left running under a closed window


def test_a_failed_load_drops_the_cancelled_half_enhanced_layer(
        qtbot: Any, make_window: Any, lowres_folder: Path, one_torch_thread: None,
        monkeypatch: Any) -> None:
    from viewer import decoding
    from viewer.context import ImageContext

    net = _SlowNet(0.05)
    window = make_window(net)
    window.settings.tile = 32  # 64 tiles, ~3 s: still running when the load fails
    doc = open_and_wait(qtbot, window, lowres_folder)
    assert window.start_enhance()
    qtbot.waitUntil(lambda: window.enhance.tiles_received >= 1, timeout=30_000)
    assert doc.enhanced_layer is not None and not doc.has_enhanced
    broken = object()
    real = decoding.modality_values

    def modality_values(image: Any, **kw: Any) -> Any:
        if image is broken:
            raise ValueError("the pixel data is cut short")
        return real(image, **kw)

    monkeypatch.setattr(decoding, "modality_values", modality_values)
    with qtbot.waitSignal(window.loadFailed, timeout=20_000):
        window.show_image(broken, ImageContext())  # the user clicks an image that fails
    qtbot.waitUntil(lambda: window.progress.isHidden(), timeout=10_000)
    assert window.document is doc  # still shown
    assert doc.enhanced is None and doc.enhanced_layer is None  # no half-finished layer left
    window.toggle_ab()  # B: nothing to flip to
    assert not window.compare.primary.show_top
    assert "Nothing to compare" in window.statusBar().currentMessage()
