"""Window chrome: drag and drop, dialogs, theme and settings persistence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QApplication

from viewer import settings
from viewer.dialogs import AboutDialog, HelpDialog, SettingsDialog, model_card_html


def test_drop_a_folder_opens_it(qtbot: Any, make_window: Any, lowres_folder: Path) -> None:
    window = make_window()
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(lowres_folder))])
    event = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)  # Qt delivers a Drop only during a real drag; call the handler
    assert event.isAccepted()
    qtbot.waitUntil(lambda: window.document is not None, timeout=20_000)
    assert window.document.rows == 256


def test_settings_dialog_round_trip(qtbot: Any) -> None:
    current = settings.ViewerSettings(device="cpu", tile=192, theme="light")
    dialog = SettingsDialog(current, models=[])
    qtbot.addWidget(dialog)
    dialog.precision.setCurrentIndex(dialog.precision.findData("fp32"))
    dialog.scope.setCurrentIndex(dialog.scope.findData("visible"))
    dialog.reverse_level.setChecked(True)
    dialog.threads.setValue(1)
    assert dialog.threads.text() != "All cores"
    new = dialog.result_settings()
    assert new.threads == 1
    assert (new.device, new.tile, new.theme, new.precision, new.scope) == \
        ("cpu", 192, "light", "fp32", "visible")
    assert new.drag_reverse_level and new.model == ""
    dialog._defaults()
    assert dialog.result_settings().tile == 256 and dialog.result_settings().threads == 0
    assert dialog.threads.text() == "All cores"


def test_each_model_in_settings_says_its_gain_under_both_protocols(qtbot: Any) -> None:
    from engine.sr.card import ModelCard
    from engine.sr.registry import ModelInfo

    def side(delta: float, lungs: float, wins: float) -> dict[str, Any]:
        return {"bicubic": {"psnr": 30.0, "ssim": 0.9},
                "model": {"psnr": 30.0 + delta, "ssim": 0.91, "delta_psnr_vs_bicubic": delta,
                          "delta_psnr_interior_vs_bicubic": delta / 2, "delta_psnr_lungs_vs_bicubic": lungs,
                          "ssim_wins_vs_bicubic_pct": wins}}

    card = ModelCard(name="real", architecture="SRVGGNetCompact", title="Real-world", default=True,
                     metrics={"x4-native": side(4.0, 0.5, 100.0), "seed-128to512": side(-0.2, 0.47, 95.1),
                              "x4-native_bf16": side(4.0, 0.5, 100.0)})
    bare = ModelCard(name="bare", architecture="SRVGGNetCompact", title="Bare")
    dialog = SettingsDialog(settings.ViewerSettings(), models=[ModelInfo(card, Path("real.safetensors")),
                                                                ModelInfo(bare, Path("bare.safetensors"))])
    qtbot.addWidget(dialog)
    tip = dialog.model.itemData(dialog.model.findData("real"), Qt.ItemDataRole.ToolTipRole)
    assert tip.splitlines() == [
        "Real-world (real) \N{EM DASH} the default",
        "x4-native: +4.00 dB over bicubic (interior +2.00, lung fields +0.50), SSIM better on 100 % of images",
        "seed-128to512: -0.20 dB over bicubic (interior -0.10, lung fields +0.47), SSIM better on 95 % of images"]
    assert dialog.model.itemData(dialog.model.findData("bare"), Qt.ItemDataRole.ToolTipRole) == \
        "Bare (bare)\nNo measurements on its card."
    assert dialog.model.toolTip() == tip  # "Default model" is chosen, and "real" is the default
    dialog.model.setCurrentIndex(dialog.model.findData("real"))
    assert dialog.model.toolTip() == tip


def test_about_shows_model_card_attribution_and_use(qtbot: Any) -> None:
    dialog = AboutDialog(None, "0.1.0")
    qtbot.addWidget(dialog)
    text = dialog.text.toPlainText()
    assert "Research and education use only" in text
    assert "side markers are redrawn too" in text and "read them on the original (press B)" in text
    assert "nihcc.app.box.com/v/ChestXray-NIHCC" in text
    assert "ChestX-ray8" in text and "NIH Clinical Center" in text
    assert "No model is installed" in text

    from engine.sr.card import ModelCard
    from engine.sr.registry import ModelInfo

    card = ModelCard(name="fast", architecture="SRVGGNetCompact", title="Fast <x4>",
                     licence="Apache-2.0", metrics={"psnr_gain_db": 0.71},
                     training={"data": "NIH ChestX-ray14 train"})
    html = model_card_html(ModelInfo(card, Path("fast.safetensors")))
    assert "Fast &lt;x4&gt;" in html and "0.71" in html and "NIH ChestX-ray14 train" in html

    card.metrics = {"x4-native": {"images": 41, "bicubic": {"psnr": 35.965, "ssim": 0.9628},
                                  "model": {"psnr": 41.475, "ssim": 0.9742, "delta_psnr_vs_bicubic": 5.51,
                                            "ssim_wins_vs_bicubic_pct": 100.0,
                                            "delta_psnr_interior_vs_bicubic": 3.24}},
                    "interior": "definition text"}
    html = model_card_html(ModelInfo(card, Path("fast.safetensors")))
    assert "Quality, x4-native (41 held-out images)" in html
    assert "model 41.48 dB / SSIM 0.9742, bicubic 35.97 dB / SSIM 0.9628: +5.51 dB" in html
    assert "SSIM better on 100 % of images; away from the image edges +3.24 dB" in html
    assert "definition text" not in html

    card.training = {"steps": 4400, "steps_total": 8000, "wall_time": "1.70 h", "wall_time_total": "3.31 h",
                     "lineage": [{"model": "cxr-fidelity-x4", "steps": 3600}]}
    html = model_card_html(ModelInfo(card, Path("fidelity.safetensors")))
    assert "4400 (last run; 8000 over 2 runs)" in html and "1.70 h (last run; 3.31 h over 2 runs)" in html
    assert "lineage" not in html


def test_help_lists_every_shortcut(qtbot: Any, make_window: Any) -> None:
    window = make_window()
    rows = window.shortcut_rows()
    dialog = HelpDialog(rows)
    qtbot.addWidget(dialog)
    keys = {dialog.table.item(i, 0).text() for i in range(dialog.table.rowCount())}
    for key in ("I", "R", "H", "V", "Space", "=", "E", "1", "5"):
        assert any(key in k.split(", ") for k in keys), key
    assert any("B" in k.split(", ") and "Tab" in k.split(", ") for k in keys)


def test_theme_toggle_persists(qtbot: Any, make_window: Any, store: Any) -> None:
    window = make_window()
    assert window.settings.theme == "dark"
    window.toggle_theme()
    assert "#f2f2ef" in QApplication.instance().styleSheet()
    assert settings.load(store).theme == "light"
    window.toggle_theme()
    assert settings.load(store).theme == "dark"
