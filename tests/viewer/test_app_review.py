"""Fixes from an application review: a replaced scan must not leak into the next folder's tree,
scan threads are never dropped while running, a hung decoder costs one image and one sentence,
command-line options stay session-only, Settings offers only what can run, About names the
model Enhance will use, and selected rows stay readable.

Every wait has a limit, so a regression fails instead of hanging the suite.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QSize
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from tests.viewer import helpers
from tests.viewer.helpers import open_and_wait
from viewer import decoding, dialogs, settings
from viewer.dialogs import AboutDialog, SettingsDialog, model_card_html

J2K = "1.2.840.10008.1.2.4.90"


def _pngs(folder: Path, count: int, prefix: str) -> Path:
    folder.mkdir(parents=True)
    for i in range(count):
        Image.fromarray(np.full((8, 8), (i * 37) % 256, np.uint8)).save(
            folder / f"{prefix}{i:03d}.png")
    return folder


def _names(window: Any) -> list[str]:
    return sorted(Path(image.path).name for image, _ctx in window.browser.images)


@pytest.fixture
def no_device_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings without asking torch which devices exist (that would import torch)."""
    monkeypatch.setattr(dialogs, "device_availability",
                        lambda _specs=(): SimpleNamespace(unavailable={}, auto="cpu"),
                        raising=False)


# -- 1, 2: scans -------------------------------------------------------------------------------
def test_a_replaced_scan_never_reaches_the_new_tree(
        qtbot: Any, make_window: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine import io

    old = _pngs(tmp_path / "old", 100, "o")
    new = _pngs(tmp_path / "new", 3, "n")
    real_scan = io.scan

    def slow_scan(path: Any, *args: Any, **kwargs: Any) -> Any:
        for event in real_scan(path, *args, **kwargs):
            if Path(path) == old:
                time.sleep(0.02)
            yield event

    monkeypatch.setattr(io, "scan", slow_scan)
    window = make_window()
    browser = window.browser
    window.open_path(old, remember=False, thumbnails=False)
    qtbot.waitUntil(lambda: len(browser.images) >= 3, timeout=20_000)
    time.sleep(0.3)  # the UI thread is busy: the old scan queues more batches meanwhile
    finished: list[list[str]] = []
    browser.scanFinished.connect(lambda: finished.append(_names(window)))
    window.open_path(new, remember=False, thumbnails=False)
    qtbot.waitUntil(lambda: not browser.scanning, timeout=20_000)
    qtbot.wait(800)  # anything the old scan still had queued arrives now
    assert _names(window) == ["n000.png", "n001.png", "n002.png"]
    assert finished == [["n000.png", "n001.png", "n002.png"]]
    assert browser.status.text() == "3 images"
    qtbot.waitUntil(lambda: browser.running_threads() == 0, timeout=20_000)


def _stuck_scan(monkeypatch: pytest.MonkeyPatch, folder: Path) -> threading.Event:
    """After its first image, scanning `folder` waits (a file that takes very long to read)
    until the returned event is set."""
    from engine import io

    release = threading.Event()
    real_scan = io.scan

    def scan(path: Any, *args: Any, **kwargs: Any) -> Any:
        for event in real_scan(path, *args, **kwargs):
            yield event
            if Path(path) == folder and event.kind == "image":
                release.wait(30)

    monkeypatch.setattr(io, "scan", scan)
    return release


def test_opening_another_folder_does_not_wait_for_a_stuck_scan(
        qtbot: Any, make_window: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stuck = _pngs(tmp_path / "stuck", 3, "s")
    new = _pngs(tmp_path / "new", 2, "n")
    release = _stuck_scan(monkeypatch, stuck)
    timer = threading.Timer(10.0, release.set)  # without the fix, opening waits until this
    window = make_window()
    browser = window.browser
    window.open_path(stuck, remember=False, thumbnails=False)
    qtbot.waitUntil(lambda: len(browser.images) == 1, timeout=20_000)
    old_thread = browser._thread  # held here too: dropping a running QThread aborts the process
    timer.start()
    try:
        started = time.monotonic()
        window.open_path(new, remember=False, thumbnails=False)
        assert time.monotonic() - started < 5.0  # milliseconds; 10 s if it waited
        assert old_thread.isRunning()
        assert browser.running_threads() == 2  # the stuck one is kept until it ends
        qtbot.waitUntil(lambda: not browser.scanning, timeout=20_000)
        assert _names(window) == ["n000.png", "n001.png"]
        release.set()
        qtbot.waitUntil(lambda: browser.running_threads() == 0, timeout=20_000)
        assert old_thread.isFinished()
        assert _names(window) == ["n000.png", "n001.png"]
    finally:
        release.set()
        timer.cancel()


def test_closing_during_a_stuck_scan_hides_the_window_then_waits(
        qtbot: Any, make_window: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stuck = _pngs(tmp_path / "stuck", 3, "s")
    release = _stuck_scan(monkeypatch, stuck)
    window = make_window()
    window.open_path(stuck, remember=False, thumbnails=False)
    qtbot.waitUntil(lambda: len(window.browser.images) == 1, timeout=20_000)
    thread = window.browser._thread
    hidden: list[bool] = []

    def later() -> None:  # while the scan is still stuck: hidden by now? (it takes ~0.5 s)
        deadline = time.monotonic() + 20
        while not window.isHidden() and time.monotonic() < deadline:
            time.sleep(0.02)
        hidden.append(window.isHidden())
        release.set()

    timer = threading.Timer(0.2, later)
    timer.start()
    try:
        window.close()
    finally:
        release.set()
        timer.join(30)
    assert hidden == [True]  # closing looked immediate while the scan finished its file
    assert thread.isFinished()


# -- 3: a hung decoder ---------------------------------------------------------------------------
def _compressed(name: str) -> Any:
    """An image that needs the helper process; decoding it in-process gives ones."""
    return SimpleNamespace(is_dicom=True, transfer_syntax=J2K, path=f"/nowhere/{name}",
                           source_file=None, frame=0,
                           modality_values=lambda: np.ones((2, 2), np.float32))


def _in_thread(fn: Callable[[], Any], seconds: float) -> dict[str, Any]:
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - looked at by the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    box["blocked"] = thread.is_alive()
    return box


def _helper_processes(lane: str, seconds: float = 30.0) -> list[Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pool = decoding._pools.get(lane)
        processes = list((getattr(pool, "_processes", None) or {}).values())
        if processes:
            return processes
        time.sleep(0.05)
    return []


def _ended(process: Any, seconds: float) -> bool:
    """Whether a helper process has ended, asked again until `seconds` pass: the pool's own
    thread reaps it too, and a join racing that reap can see "still running" for a moment
    (multiprocessing's poll returns None when the other thread's waitpid got there first)."""
    deadline = time.monotonic() + seconds
    while process.is_alive():
        if time.monotonic() > deadline:
            return False
        process.join(0.2)
    return True


def _kill(processes: list[Any]) -> None:
    for process in processes:
        if process.is_alive():
            process.kill()


def test_a_hung_decoder_costs_one_image_and_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    lane = "review-hung"
    monkeypatch.setattr(decoding, "TIMEOUT_S", 3.0, raising=False)
    monkeypatch.setattr(decoding, "_decode_in_child", helpers.hung_decode)
    processes: list[Any] = []
    kill = decoding._kill

    def recording_kill(pool: Any) -> None:  # the helpers killed, seen however slow their start
        processes.extend((getattr(pool, "_processes", None) or {}).values())
        kill(pool)

    monkeypatch.setattr(decoding, "_kill", recording_kill)
    try:
        box = _in_thread(lambda: decoding.modality_values(_compressed("hung.dcm"), lane=lane),
                         30)
        assert not box["blocked"], "a hung decode still blocks its lane"
        error = box.get("error")
        assert type(error).__name__ == "DecodeTimeout", box
        assert str(error).startswith("Decoding hung.dcm took longer than 3 s")
        assert processes
        for process in processes:  # the hung helper was killed, not left running
            assert _ended(process, 10)
        # the lane's next image gets a fresh helper, which decodes it
        monkeypatch.setattr(decoding, "TIMEOUT_S", 120.0, raising=False)
        monkeypatch.setattr(decoding, "_decode_in_child", helpers.quick_decode)
        box = _in_thread(lambda: decoding.modality_values(_compressed("next.dcm"), lane=lane), 60)
        assert not box["blocked"] and "error" not in box, box
        assert box["value"].shape == (4, 4)  # from the helper, not the in-process fallback
    finally:
        _kill(processes)
        _drop_pool(lane)


def _drop_pool(lane: str) -> None:
    """Kill and forget the lane's helper pool, so no later test meets it."""
    pool = decoding._pools.pop(lane, None)
    if pool is not None:
        _kill(list((getattr(pool, "_processes", None) or {}).values()))
        pool.shutdown(wait=False, cancel_futures=True)


def test_closing_kills_a_hung_helper_instead_of_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    lane = "review-close"
    monkeypatch.setattr(decoding, "TIMEOUT_S", 120.0, raising=False)
    monkeypatch.setattr(decoding, "_decode_in_child", helpers.hung_decode)
    box: dict[str, Any] = {}
    runner = threading.Thread(
        target=lambda: box.update(_in_thread(
            lambda: decoding.modality_values(_compressed("hung.dcm"), lane=lane), 60)),
        daemon=True)
    runner.start()
    processes = _helper_processes(lane)
    try:
        assert processes
        time.sleep(1.0)  # the decode is under way in the helper
        decoding.shutdown()
        runner.join(20)
        assert not runner.is_alive(), "closing waited for a hung decode"
        assert type(box.get("error")).__name__ == "DecodeStopped", box
    finally:
        _kill(processes)


def test_an_image_queued_behind_a_hung_one_still_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Image B asked for while A hangs in the lane's helper: when A times out and its helper is
    killed, B is decoded by a fresh helper (not dropped as if the window were closing)."""
    lane = "review-queued"
    monkeypatch.setattr(decoding, "_closing", False, raising=False)
    monkeypatch.setattr(decoding, "TIMEOUT_S", 3.0, raising=False)
    monkeypatch.setattr(decoding, "_decode_in_child", helpers.hung_on_hung_dcm)
    processes: list[Any] = []
    first: dict[str, Any] = {}
    hung = threading.Thread(target=lambda: first.update(_in_thread(
        lambda: decoding.modality_values(_compressed("hung.dcm"), lane=lane), 30)), daemon=True)
    hung.start()
    try:
        processes.extend(_helper_processes(lane))
        assert processes
        time.sleep(0.5)  # A is submitted first, B queues behind it
        monkeypatch.setattr(decoding, "TIMEOUT_S", 60.0, raising=False)  # B's own limit
        box = _in_thread(lambda: decoding.modality_values(_compressed("next.dcm"), lane=lane), 60)
        assert not box["blocked"] and "error" not in box, box
        assert box["value"].shape == (4, 4)  # from a fresh helper, not the in-process fallback
        hung.join(10)
        assert type(first.get("error")).__name__ == "DecodeTimeout", first
    finally:
        _kill(processes)
        _drop_pool(lane)


def test_the_helper_reads_only_the_zip_member_it_decodes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The helper finds a ZIP member from the archive's directory and reads that member alone
    (it used to scan the ZIP up to the member: N thumbnails cost N squared reads)."""
    import zipfile

    from engine.io import sources
    from tests.engine.test_io_scan import make_dx

    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for i in range(20):
            pixels = np.full((4, 5), 100 * i, np.uint16)
            z.write(make_dx(tmp_path / f"{i}.dcm", study_uid="1.2.3", series_uid="1.2.3.4",
                            instance=i + 1, pixels=pixels), f"images/{i:02d}.dcm")
    read: list[str | None] = []
    for name in ("opened", "streamed"):
        real = getattr(sources.Source, name)
        monkeypatch.setattr(sources.Source, name,
                            lambda self, real=real: read.append(self.member) or real(self))
    values = decoding._decode_in_child(str(archive), str(archive / "images" / "19.dcm"), 0)
    assert values.shape == (4, 5) and float(values[0, 0]) == 1900
    assert set(read) == {"images/19.dcm"}
    with pytest.raises(Exception, match="20.dcm frame 1 was not found"):
        decoding._decode_in_child(str(archive), str(archive / "images" / "20.dcm"), 0)


def test_a_decode_timeout_is_one_sentence_in_the_window(
        qtbot: Any, make_window: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    sentence = ("Decoding hung.dcm took longer than 300 s, so it was stopped; choose another "
                "image, or this one again to retry.")

    def timeout(_image: Any, *, lane: str = "view") -> Any:
        raise decoding.DecodeTimeout(sentence)

    monkeypatch.setattr(decoding, "modality_values", timeout)
    window = make_window()
    window.show_image(_compressed("hung.dcm"))
    qtbot.waitUntil(lambda: bool(window.message.text()), timeout=10_000)
    assert window.message.text() == sentence


# -- 4: command-line options -----------------------------------------------------------------------
def test_command_line_overrides_are_used_but_never_saved(
        qtbot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from viewer import app, screenshot, theme

    ini = tmp_path / "user.ini"
    folder = _pngs(tmp_path / "study", 1, "a")
    seen: dict[str, Any] = {}

    def fake_screenshot(_app: Any, window: Any, _args: Any) -> int:
        s = window.settings
        seen.update(theme=s.theme, device=s.device, tile=s.tile, scope=s.scope)
        window.open_path(folder)  # remembered: the settings are saved mid-session too
        return 0

    monkeypatch.setattr(screenshot, "take_screenshot", fake_screenshot)
    try:
        code = app.main(["--theme", "light", "--device", "cpu", "--tile", "128", "--scope",
                         "visible", "--settings", str(ini), "--screenshot",
                         str(tmp_path / "x.png")])
    finally:
        theme.apply(QApplication.instance(), "dark")
    assert code == 0
    assert seen == {"theme": "light", "device": "cpu", "tile": 128, "scope": "visible"}
    stored = settings.load(settings.open_store(ini))
    assert (stored.theme, stored.device, stored.tile, stored.scope) == \
        ("dark", "auto", 256, "image")
    assert stored.recent == [str(folder.resolve())]  # the rest is saved as usual


def test_an_override_changed_in_the_window_is_saved(make_window: Any, store: Any) -> None:
    window = make_window()
    before = window.settings.tile
    window.set_overrides(tile=128, theme="light")
    window.save_settings()
    assert (settings.load(store).tile, settings.load(store).theme) == (before, "dark")
    window.settings.tile = 192  # chosen in Settings during the session: the user's own now
    window.save_settings()
    assert (settings.load(store).tile, settings.load(store).theme) == (192, "dark")


@pytest.mark.parametrize(("argv", "words"), [
    (["--tile", "5"], "--tile 5"), (["--tile", "0"], "--tile 0"),
    (["--tile", "4096"], "--tile 4096"), (["--device", "gpu"], "--device gpu"),
    (["--device", "cuda:x"], "--device cuda:x"),
])
def test_bad_overrides_exit_2_with_one_sentence(
        argv: list[str], words: str, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import viewer.main_window
    from viewer import app

    def no_window(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("a window was made for a bad option")

    monkeypatch.setattr(viewer.main_window, "MainWindow", no_window)
    assert app.main([*argv, "--screenshot", "unused.png"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and words in err and err.endswith(".")


# -- 5, 6: Settings' devices -----------------------------------------------------------------------
def test_settings_keeps_a_gpu_index_it_does_not_list(qtbot: Any, no_device_probe: None) -> None:
    dialog = SettingsDialog(settings.ViewerSettings(device="cuda:1"), models=[])
    qtbot.addWidget(dialog)
    assert dialog.device.currentData() == "cuda:1"
    assert dialog.result_settings().device == "cuda:1"


def test_settings_marks_unusable_devices_and_fp16_on_the_cpu(qtbot: Any) -> None:
    from viewer.dialogs import FP16_ON_CPU, DeviceAvailability

    devices = DeviceAvailability(unavailable={
        "cuda": "No CUDA GPU is available to this PyTorch.",
        "mps": "Apple MPS is not available on this machine."}, auto="cpu")
    dialog = SettingsDialog(settings.ViewerSettings(device="cpu", precision="fp16"), models=[],
                            devices=devices)
    qtbot.addWidget(dialog)
    model = dialog.device.model()
    for spec in ("cuda", "mps"):
        i = dialog.device.findData(spec)
        assert dialog.device.itemText(i) == f"{spec} (not available)"
        assert not model.item(i).isEnabled()
    assert model.item(dialog.device.findData("auto")).isEnabled()
    assert dialog.device_note.text() == FP16_ON_CPU and not dialog.device_note.isHidden()
    dialog.precision.setCurrentIndex(dialog.precision.findData("fp32"))
    assert dialog.device_note.isHidden()
    dialog.device.setCurrentIndex(dialog.device.findData("auto"))  # auto is the CPU here
    dialog.precision.setCurrentIndex(dialog.precision.findData("fp16"))
    assert dialog.device_note.text() == FP16_ON_CPU

    kept = SettingsDialog(settings.ViewerSettings(device="cuda"), models=[], devices=devices)
    qtbot.addWidget(kept)  # a stored choice unusable here stays, with the way on
    assert kept.device.currentData() == "cuda"
    assert kept.device_note.text() == "No CUDA GPU is available to this PyTorch; choose auto or cpu."


def test_settings_learns_the_devices_without_blocking(qtbot: Any) -> None:
    dialog = SettingsDialog(settings.ViewerSettings(), models=[])
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: dialog.devices is not None, timeout=120_000)
    for spec in dialog.devices.unavailable:
        assert dialog.device.itemText(dialog.device.findData(spec)).endswith("(not available)")


def test_device_errors_point_to_settings_not_the_command_line() -> None:
    from viewer.worker import error_message

    class DeviceError(ValueError):  # engine.sr.device's, by name (importing it loads torch)
        pass

    text = error_message(DeviceError("No CUDA GPU is available to this PyTorch; use --device cpu."))
    assert text == ("No CUDA GPU is available to this PyTorch; choose cpu as the Device in "
                    "Settings.")


# -- 7: About ------------------------------------------------------------------------------------
def test_about_names_the_model_enhance_will_use(qtbot: Any, make_window: Any) -> None:
    from engine.sr import registry
    from viewer.dialogs import model_title

    default = registry.default_model()
    window = make_window()
    window.settings.model = "no-such-model"
    info, note = window.model_choice()
    assert info.name == default.name
    assert note == (f"The model chosen in Settings, no-such-model, is no longer installed; "
                    f"Enhance uses the default model, {model_title(default)}, instead.")
    assert window._settings_model() is None  # and Enhance does use the default
    dialog = AboutDialog(info, "0", note=note)
    qtbot.addWidget(dialog)
    text = dialog.text.toPlainText()
    assert note in text and default.card.display_title in text
    assert "No model is installed" not in text

    other = next(m for m in registry.list_models() if m.name != default.name)
    window.settings.model = other.name
    assert window.model_choice()[0].name == other.name and window.model_choice()[1] == ""
    window.model_override = default.name  # --model wins over Settings
    info, note = window.model_choice()
    assert info.name == default.name and "--model" in note
    window.model_override = "gone-model"
    info, note = window.model_choice()
    assert info is None and "--model" in note and "gone-model" in note
    window.model_override = None

    html = model_card_html(None)  # nothing installed at all: the real folder is named
    assert str(registry.install_dir()) in html and "named in Settings" not in html


# -- 8: selection ----------------------------------------------------------------------------------
def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


@pytest.mark.parametrize("name", ["light", "dark"])
def test_selected_text_is_readable(name: str) -> None:
    from viewer.theme import style_sheet

    css = style_sheet(name)
    background = re.search(r"selection-background-color:\s*(#[0-9a-fA-F]{6})", css)
    text = re.search(r"(?<![-\w])selection-color:\s*(#[0-9a-fA-F]{6})", css)
    assert background and text, "a selection colour without a text colour"
    high, low = sorted((_luminance(background[1]), _luminance(text[1])), reverse=True)
    assert (high + 0.05) / (low + 0.05) >= 4.5


def test_a_selected_thumbnail_keeps_its_grey_levels(
        qtbot: Any, make_window: Any, tmp_path: Path) -> None:
    folder = _pngs(tmp_path / "thumbs", 2, "t")
    window = make_window()
    browser = window.browser
    window.open_path(folder, remember=False, thumbnails=True)
    qtbot.waitUntil(lambda: len(browser._items) == 2 and not browser._items[0].icon(0).isNull(),
                    timeout=20_000)
    icon = browser._items[0].icon(0)
    size = QSize(72, 72)
    assert icon.pixmap(size, QIcon.Mode.Selected).toImage() == \
        icon.pixmap(size, QIcon.Mode.Normal).toImage()


# -- 9: ranges and the Problems dock ---------------------------------------------------------------
@pytest.mark.parametrize(("tile", "overlap", "speed"), [(2048, 600, 0.05), (32, 8, 20.0)])
def test_settings_dialog_accepts_what_the_settings_file_accepts(
        qtbot: Any, no_device_probe: None, tile: int, overlap: int, speed: float) -> None:
    current = settings.ViewerSettings(tile=tile, overlap=overlap, drag_sensitivity=speed)
    assert current.validated().tile == tile
    dialog = SettingsDialog(current, models=[])
    qtbot.addWidget(dialog)
    new = dialog.result_settings()
    assert (new.tile, new.overlap, new.drag_sensitivity) == (tile, overlap, speed)


def test_the_problems_dock_hides_when_the_next_folder_has_none(
        qtbot: Any, make_window: Any, tmp_path: Path) -> None:
    bad = _pngs(tmp_path / "bad", 1, "a")
    (bad / "broken.png").write_bytes(b"this is not a png")
    good = _pngs(tmp_path / "good", 1, "g")
    window = make_window()
    open_and_wait(qtbot, window, bad)
    qtbot.waitUntil(lambda: not window.problems.isHidden(), timeout=10_000)
    open_and_wait(qtbot, window, good)
    assert window.problems.isHidden()


def test_the_settings_dialog_is_not_kept_after_it_closes(qtbot, make_window) -> None:
    # Each opening used to leave one SettingsDialog (a child of the window) alive for good
    from PySide6.QtCore import QCoreApplication, QEvent, QTimer
    from PySide6.QtWidgets import QApplication

    from viewer.dialogs import SettingsDialog

    window = make_window()
    for _ in range(2):
        QTimer.singleShot(0, lambda: [w.reject() for w in QApplication.topLevelWidgets()
                                      if isinstance(w, SettingsDialog)])
        window.settings_dialog()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    assert window.findChildren(SettingsDialog) == []


def test_a_killed_helper_ends_the_wait_even_if_its_pool_never_notices() -> None:
    """A helper killed while sending its result leaves concurrent.futures reading the rest of
    the message forever, so the future never completes; the caller sees the pool was stopped
    and ends at once instead of waiting out its limit (closing the window waited 300 s)."""
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    pool = SimpleNamespace(_cxr_queue=[])
    future: Future = Future()  # never completes, as with the reader stuck
    pool._cxr_queue.append(future)
    threading.Timer(0.3, lambda: setattr(pool, "_cxr_stopped", True)).start()
    started = time.monotonic()
    with pytest.raises(BrokenProcessPool):
        decoding._result(pool, future, 60.0)
    assert time.monotonic() - started < 30  # about 0.5 s; 60 s without the fix
    done: Future = Future()
    done.set_result(np.zeros((2, 2)))
    assert decoding._result(SimpleNamespace(_cxr_queue=[done], _cxr_stopped=True), done,
                            1.0).shape == (2, 2)  # a finished decode is still returned
