"""Opening the sample study and folders fills the browser; bad files go to the problems dock."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pydicom
from pydicom.uid import generate_uid
from PySide6.QtWidgets import QApplication

from engine.resources import samples_dir


def _tree_texts(window: Any) -> list[str]:
    texts = []

    def walk(item: Any, depth: int) -> None:
        texts.append("  " * depth + item.text(0))
        for i in range(item.childCount()):
            walk(item.child(i), depth + 1)

    tree = window.browser.tree
    for i in range(tree.topLevelItemCount()):
        walk(tree.topLevelItem(i), 0)
    return texts


def test_sample_study_fills_the_browser(qtbot: Any, make_window: Any) -> None:
    window = make_window()
    window.open_samples()
    qtbot.waitUntil(lambda: not window.browser.scanning, timeout=30_000)
    assert len(window.browser.images) == 2
    tree = window.browser.tree
    assert tree.topLevelItemCount() == 2  # two (anonymous) patients
    texts = _tree_texts(window)
    assert any("Chest PA (low-resolution sample)" in t for t in texts)
    # patient > study > series > image
    assert max(len(t) - len(t.lstrip()) for t in texts) == 6
    # README.md and make_samples.py are skipped quietly, not shown as errors
    assert all(getattr(p, "skipped", False) for p in window.browser.problems)
    assert window.problems.isHidden()
    qtbot.waitUntil(lambda: window.document is not None, timeout=30_000)
    assert window.document.image is window.browser.images[0][0]
    window.browser.select_index(1)
    qtbot.waitUntil(lambda: window.document.image is window.browser.images[1][0], timeout=30_000)
    assert window.document.rows == 256


def test_folder_with_bad_files_lists_problems_without_dialogs(
        qtbot: Any, make_window: Any, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    lowres = samples_dir() / "cxr14_00002577_000_lowres_256.dcm"
    shutil.copy(lowres, folder / "sub" / "a.dcm")
    ds = pydicom.dcmread(lowres)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PixelData = ds.PixelData[:1000]  # pixels cut short: the header reads, decoding fails
    ds.save_as(folder / "broken.dcm")
    (folder / "notes.txt").write_text("not an image")
    window = make_window()
    window.open_path(folder, remember=False, thumbnails=False)
    qtbot.waitUntil(lambda: not window.browser.scanning, timeout=20_000)
    images = window.browser.images
    names = {Path(image.path).name for image, _ctx in images}
    problems = {Path(p.path).name: p for p in window.browser.problems}
    assert "a.dcm" in names
    assert problems["notes.txt"].skipped
    assert "broken.dcm" in names | set(problems)
    if "broken.dcm" in problems:  # refused at scan time: listed in the dock, which shows
        assert not problems["broken.dcm"].skipped
        assert not window.problems.isHidden()
    else:  # a readable header: fails on decode with one sentence in the message bar
        index = [Path(i.path).name for i, _c in images].index("broken.dcm")
        window.browser.select_index(index)
        qtbot.waitUntil(lambda: bool(window.message.text()), timeout=20_000)
        assert "cannot be shown" in window.message.text()
    assert QApplication.activeModalWidget() is None
    good = [Path(i.path).name for i, _c in images].index("a.dcm")
    window.browser.select_index(good)
    qtbot.waitUntil(lambda: window.document is not None and window.document.rows == 256,
                    timeout=20_000)


def test_recent_items_remember_opened_paths(qtbot: Any, make_window: Any,
                                            lowres_folder: Path) -> None:
    window = make_window()
    window.open_path(lowres_folder)
    qtbot.waitUntil(lambda: window.document is not None, timeout=20_000)
    assert window.settings.recent[0] == str(lowres_folder.resolve())
    assert window.recent_menu.actions()[0].text() == str(lowres_folder.resolve())


def test_missing_path_is_one_message(qtbot: Any, make_window: Any, tmp_path: Path) -> None:
    window = make_window()
    window.open_path(tmp_path / "nope")
    assert "does not exist" in window.message.text()
    assert QApplication.activeModalWidget() is None


def test_compressed_images_decode_in_a_helper_process(lowres_path: Path) -> None:
    """J2K decoders hold the GIL; the helper process gives the same values without that."""
    import numpy as np

    from engine import io
    from viewer import decoding

    (j2k,) = io.load(samples_dir() / "966_DX_chest_mono1_inverse_j2k.dcm").images
    (plain,) = io.load(lowres_path).images
    assert decoding.needs_helper(j2k) and not decoding.needs_helper(plain)
    values = decoding.modality_values(j2k)
    assert values.shape == (2128, 2000) and not values.flags.writeable
    np.testing.assert_array_equal(values, j2k.modality_values())
