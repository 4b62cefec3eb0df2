"""Settings, About and keyboard-help dialogs."""

from __future__ import annotations

import html
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from engine.sr.card import protocol_gains, quality_rows, short_value
from viewer.settings import (
    DEVICES,
    DRAG_SPEED_RANGE,
    INTERPOLATIONS,
    PRECISIONS,
    SCOPES,
    THEMES,
    TILE_RANGE,
    ViewerSettings,
    is_device,
)

FP16_ON_CPU = "fp16 is much slower than fp32 on a CPU; use auto or bf16."

NIH_URL = "https://nihcc.app.box.com/v/ChestXray-NIHCC"
ATTRIBUTION_HTML = (
    "<p><b>Data.</b> Models are trained on, and a bundled sample is derived from, the NIH "
    f"ChestX-ray14 dataset (<a href='{NIH_URL}'>{NIH_URL}</a>): Wang X, Peng Y, Lu L, Lu Z, "
    "Bagheri M, Summers RM, <i>ChestX-ray8: Hospital-scale Chest X-ray Database and Benchmarks "
    "on Weakly-Supervised Classification and Localization of Common Thorax Diseases</i>, CVPR "
    "2017. We thank the NIH Clinical Center for providing the data. The other bundled sample is a "
    "public pydicom test file (MIT licence).</p>"
)
USE_HTML = ("<p><b>Research and education use only.</b> Enhanced images are produced by a "
            "neural network: they may add or remove detail and are not for diagnosis. "
            "Burned-in labels and side markers are redrawn too and can come out as other letters: "
            "read them on the original (press B).</p>")


def list_models() -> list[Any]:
    """Installed models (bundled and user folder); [] when the registry is not usable."""
    try:
        from engine.sr import registry

        return list(registry.list_models())
    except Exception:  # noqa: BLE001 - the dialog still opens with "default" only
        return []


def model_title(info: Any) -> str:
    card = getattr(info, "card", None)
    if card is None:
        return str(getattr(info, "name", info))
    title = getattr(card, "display_title", "") or card.name
    return f"{title} ({card.name})" if title != card.name else card.name


# The protocols a model's tooltip names: the one the models are trained for, and the one closest
# to images made some other way (no antialiasing, noise). bf16 repeats x4-native and is left out.
TOOLTIP_PROTOCOLS = ("x4-native", "seed-128to512")


def model_tooltip(info: Any) -> str:
    """What a model gains over bicubic under each protocol, from its card, for the model picker:
    the choice between models is a trade between kinds of input, and the numbers say which."""
    card = getattr(info, "card", None)
    if card is None:
        return ""
    lines = [model_title(info) + (" \N{EM DASH} the default" if getattr(card, "default", False) else "")]
    metrics = card.metrics if isinstance(card.metrics, dict) else {}
    for protocol in TOOLTIP_PROTOCOLS:
        gains = protocol_gains(metrics.get(protocol))
        if "whole" not in gains:
            continue
        line = f"{protocol}: {gains['whole']:+.2f} dB over bicubic"
        parts = [f"{label} {gains[key]:+.2f}" for key, label in (("interior", "interior"), ("lungs", "lung fields"))
                 if key in gains]
        if parts:
            line += f" ({', '.join(parts)})"
        if "ssim_wins_pct" in gains:
            line += f", SSIM better on {gains['ssim_wins_pct']:.0f} % of images"
        lines.append(line)
    if len(lines) == 1:
        lines.append("No measurements on its card.")
    return "\n".join(lines)


@dataclass
class DeviceAvailability:
    """What engine.sr.device says of this machine: why each unusable device cannot be used, and
    what `auto` picks ("cpu", "cuda" or "mps")."""

    unavailable: dict[str, str] = field(default_factory=dict)
    auto: str = "cpu"


def device_availability(specs: tuple[str, ...] | list[str] = DEVICES) -> DeviceAvailability:
    """Ask engine.sr.device (this imports torch: call it off the UI thread unless torch is
    imported already)."""
    from engine.sr.device import resolve_device

    found = DeviceAvailability(auto=resolve_device("auto").type)
    for spec in specs:
        if spec in ("auto", "cpu"):
            continue
        try:
            resolve_device(spec)
        except Exception as exc:  # noqa: BLE001 - DeviceError, or torch unable to ask
            found.unavailable[spec] = str(exc).split(";")[0].rstrip(".") + "."
    return found


class SettingsDialog(QDialog):
    """`devices`: a DeviceAvailability (tests); by default asked of engine.sr.device, at once when
    torch is loaded already, else in the background so that opening the dialog stays instant."""

    def __init__(self, settings: ViewerSettings, parent: QWidget | None = None,
                 models: list[Any] | None = None,
                 devices: DeviceAvailability | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.settings = settings
        form = QFormLayout()

        self.model = QComboBox()
        self.model.addItem("Default model", "")
        for info in (list_models() if models is None else models):
            tip = model_tooltip(info)
            self.model.addItem(model_title(info), str(getattr(info.card, "name", "")))
            self.model.setItemData(self.model.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
            if getattr(info.card, "default", False):  # "Default model" is this one today
                self.model.setItemData(0, tip, Qt.ItemDataRole.ToolTipRole)
        if settings.model and self.model.findData(settings.model) < 0:
            self.model.addItem(Path(settings.model).name, settings.model)
        # the closed box shows the chosen model's trade-off on hover too, not only the open list
        self.model.currentIndexChanged.connect(
            lambda i: self.model.setToolTip(self.model.itemData(i, Qt.ItemDataRole.ToolTipRole) or ""))
        self.model.setCurrentIndex(max(0, self.model.findData(settings.model)))
        self.model.setToolTip(self.model.currentData(Qt.ItemDataRole.ToolTipRole) or "")
        browse = QPushButton("File\N{HORIZONTAL ELLIPSIS}")
        browse.clicked.connect(self._browse_model)
        row = QHBoxLayout()
        row.addWidget(self.model, 1)
        row.addWidget(browse)
        form.addRow("Model", row)

        self.device = _combo(DEVICES, settings.device, extra=is_device)
        form.addRow("Device", self.device)
        self.precision = _combo(PRECISIONS, settings.precision)
        form.addRow("Precision", self.precision)
        self.device_note = QLabel("")
        self.device_note.setObjectName("settingsWarning")
        self.device_note.setWordWrap(True)
        self.device_note.hide()
        form.addRow("", self.device_note)
        self.devices: DeviceAvailability | None = None
        self.device.currentIndexChanged.connect(self._update_device_note)
        self.precision.currentIndexChanged.connect(self._update_device_note)
        self.tile = QSpinBox()
        self.tile.setRange(*TILE_RANGE)
        self.tile.setSingleStep(64)
        self.tile.setValue(settings.tile)
        self.tile.setSuffix(" px")
        self.tile.setToolTip("Input pixels per tile side. Smaller tiles use less memory and "
                             "show progress sooner; larger tiles are a little faster.")
        form.addRow("Tile size", self.tile)
        self.threads = QSpinBox()
        self.threads.setRange(0, max(1, os.cpu_count() or 1))
        self.threads.setSpecialValueText("All cores")
        self.threads.setValue(min(settings.threads, self.threads.maximum()))
        self.threads.setToolTip("CPU threads Enhance may use when it runs on the CPU. Fewer leave "
                                "the rest of the machine responsive; Enhance then takes longer.")
        form.addRow("CPU threads", self.threads)
        self.scope = _combo(SCOPES, settings.scope,
                            labels={"image": "Whole image", "visible": "Visible region"})
        form.addRow("Enhance", self.scope)
        self.theme = _combo(THEMES, settings.theme, labels={"dark": "Dark (reading room)",
                                                            "light": "Light"})
        form.addRow("Theme", self.theme)
        self.interpolation = _combo(INTERPOLATIONS, settings.interpolation,
                                    labels={"smooth": "Smooth (bilinear)",
                                            "nearest": "Nearest (see pixels)"})
        form.addRow("Magnified pixels", self.interpolation)
        self.reverse_width = QCheckBox("Drag left for a wider window")
        self.reverse_width.setChecked(settings.drag_reverse_width)
        self.reverse_level = QCheckBox("Drag up for a higher level (darker)")
        self.reverse_level.setChecked(settings.drag_reverse_level)
        form.addRow("Window drag", self.reverse_width)
        form.addRow("", self.reverse_level)
        self.sensitivity = QDoubleSpinBox()
        self.sensitivity.setRange(*DRAG_SPEED_RANGE)
        self.sensitivity.setSingleStep(0.1)
        self.sensitivity.setValue(settings.drag_sensitivity)
        self.sensitivity.setSuffix(" x")
        form.addRow("Drag speed", self.sensitivity)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok |
                                   QDialogButtonBox.StandardButton.Cancel |
                                   QDialogButtonBox.StandardButton.RestoreDefaults)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).clicked.connect(
            self._defaults)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)

        if devices is not None:
            self.set_devices(devices)
        else:
            self._ask_devices()
        self._update_device_note()

    # -- devices -------------------------------------------------------------------------------
    def _ask_devices(self) -> None:
        specs = [self.device.itemData(i) for i in range(self.device.count())]
        if "torch" in sys.modules:  # already paid for: ask now
            try:
                self.set_devices(device_availability(specs))
            except Exception:  # noqa: BLE001 - unknown: every device stays offered
                pass
            return
        from shiboken6 import isValid

        from viewer.tasks import run_in_background

        def done(found: DeviceAvailability) -> None:
            if isValid(self):  # the dialog may be gone already
                self.set_devices(found)

        run_in_background(lambda: device_availability(specs), done, lambda _exc: None)

    def set_devices(self, devices: DeviceAvailability) -> None:
        """Mark the devices this machine cannot use as "(not available)" and not choosable."""
        self.devices = devices
        model = self.device.model()
        for i in range(self.device.count()):
            spec = self.device.itemData(i)
            reason = devices.unavailable.get(spec)
            if reason is None:
                continue
            self.device.setItemText(i, f"{spec} (not available)")
            self.device.setItemData(i, reason, Qt.ItemDataRole.ToolTipRole)
            if isinstance(model, QStandardItemModel) and i != self.device.currentIndex():
                model.item(i).setEnabled(False)
        self._update_device_note()

    def _runs_on_cpu(self) -> bool | None:
        device = self.device.currentData()
        if device == "cpu":
            return True
        if self.devices is None:
            return None  # not known yet
        if device == "auto":
            return self.devices.auto == "cpu"
        return False

    def _update_device_note(self) -> None:
        device = self.device.currentData()
        text = ""
        if self.devices is not None and device in self.devices.unavailable:
            text = f"{self.devices.unavailable[device].rstrip('.')}; choose auto or cpu."
        elif self.precision.currentData() == "fp16" and self._runs_on_cpu():
            text = FP16_ON_CPU
        self.device_note.setText(text)
        self.device_note.setVisible(bool(text))

    def _browse_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a model", "",
            "Models (*.json *.safetensors *.pth *.pt);;All files (*)")
        if path:
            self.model.addItem(Path(path).name, path)
            self.model.setCurrentIndex(self.model.count() - 1)

    def _defaults(self) -> None:
        d = ViewerSettings()
        self.model.setCurrentIndex(0)
        for combo, value in ((self.device, d.device), (self.precision, d.precision),
                             (self.scope, d.scope), (self.theme, d.theme),
                             (self.interpolation, d.interpolation)):
            combo.setCurrentIndex(max(0, combo.findData(value)))
        self.tile.setValue(d.tile)
        self.threads.setValue(d.threads)
        self.reverse_width.setChecked(d.drag_reverse_width)
        self.reverse_level.setChecked(d.drag_reverse_level)
        self.sensitivity.setValue(d.drag_sensitivity)

    def result_settings(self) -> ViewerSettings:
        s = self.settings
        return ViewerSettings(
            model=str(self.model.currentData() or ""), device=self.device.currentData(),
            precision=self.precision.currentData(), tile=self.tile.value(), overlap=s.overlap,
            threads=self.threads.value(),
            scope=self.scope.currentData(), theme=self.theme.currentData(),
            interpolation=self.interpolation.currentData(),
            drag_reverse_width=self.reverse_width.isChecked(),
            drag_reverse_level=self.reverse_level.isChecked(),
            drag_sensitivity=self.sensitivity.value(), recent=list(s.recent),
        ).validated()


def _combo(values: tuple[str, ...], current: str, labels: dict[str, str] | None = None,
           extra: Any = None) -> QComboBox:
    """A choice among `values`; a current value not among them that `extra(value)` accepts
    (a device such as cuda:1) is added, so that OK never changes it behind the user's back."""
    combo = QComboBox()
    for v in values:
        combo.addItem((labels or {}).get(v, v), v)
    if combo.findData(current) < 0 and extra is not None and extra(current):
        combo.addItem(current, current)
    combo.setCurrentIndex(max(0, combo.findData(current)))
    return combo


def models_folder() -> str:
    """The folder a user copies models into (engine.sr.registry.install_dir)."""
    try:
        from engine.sr import registry

        return str(registry.install_dir())
    except Exception:  # noqa: BLE001 - the sentence still reads without it
        return "the user models folder"


def model_card_html(info: Any, note: str = "") -> str:
    """The model card as HTML (everything escaped: cards are user-supplied files), after `note`
    (which model Enhance uses and why, when that is not simply the one chosen)."""
    intro = f"<p><b>{html.escape(note)}</b></p>" if note else ""
    if info is None:
        if note:
            return intro
        return ("<p><b>No model is installed.</b> Put a model (a .safetensors file with its "
                f"JSON card) into {html.escape(models_folder())}, then Enhance.</p>")
    card = info.card
    e = html.escape
    rows = [("Name", card.name), ("Architecture", card.architecture), ("Scale", f"x{card.scale}"),
            ("Weights", card.weights_file), ("SHA-256", card.sha256[:16] + "\N{HORIZONTAL ELLIPSIS}"
                                              if card.sha256 else ""),
            ("Licence", card.licence), ("Intended use", card.intended_use)]
    training = card.training or {}
    runs = len(training.get("lineage") or []) + 1
    for key in ("data", "attribution", "degradation", "steps", "compute", "wall_time"):
        if training.get(key):
            text = short_value(training[key])
            total = training.get(f"{key}_total")
            if runs > 1 and total:  # weights trained further from shipped ones (training.lineage)
                text += f" (last run; {short_value(total)} over {runs} runs)"
            rows.append((f"Training {key.replace('_', ' ')}", text))
    rows += [(f"Quality, {name}" if kind == "quality" else f"Metric {name}", text)
             for kind, name, text in quality_rows(card.metrics or {})]
    if card.notes:
        rows.append(("Notes", card.notes))
    body = "".join(f"<tr><td><b>{e(k)}</b></td><td>{e(str(v))}</td></tr>" for k, v in rows if v)
    return f"{intro}<h3>{e(card.display_title)}</h3><table cellspacing=4>{body}</table>"


class AboutDialog(QDialog):
    def __init__(self, model_info: Any, version: str, parent: QWidget | None = None,
                 note: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("About CXR Enhance")
        self.resize(620, 560)
        text = QTextBrowser()
        text.setOpenExternalLinks(True)
        text.setHtml(
            f"<h2>CXR Enhance {html.escape(version)}</h2>"
            "<p>A chest X-ray viewer with 4x ESRGAN super-resolution (Enhance).</p>"
            + USE_HTML + model_card_html(model_info, note) + ATTRIBUTION_HTML +
            "<p>ESRGAN: Wang et al., ECCV Workshops 2018. Real-ESRGAN compact network: Wang et "
            "al., ICCVW 2021.</p>")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(text)
        layout.addWidget(buttons)
        self.text = text


class HelpDialog(QDialog):
    """Every shortcut, generated from the actions themselves so it can never go stale."""

    def __init__(self, shortcuts: list[tuple[str, str]], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard and mouse")
        self.resize(520, 620)
        mouse = [
            ("Left drag", "Current tool (window/level by default: \N{LEFT RIGHT ARROW} width, "
                          "\N{UP DOWN ARROW} level)"),
            ("Middle drag", "Pan"), ("Right drag", "Zoom"), ("Wheel", "Zoom about the cursor"),
            ("Drag the amber divider", "Move the split between original and enhanced"),
        ]
        rows = shortcuts + mouse
        table = QTableWidget(len(rows), 2)
        table.setHorizontalHeaderLabels(["Key", "Action"])
        table.verticalHeader().setVisible(False)
        table.horizontalHeader().setStretchLastSection(True)
        table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for i, (key, what) in enumerate(rows):
            table.setItem(i, 0, QTableWidgetItem(key))
            table.setItem(i, 1, QTableWidgetItem(what))
        table.resizeColumnToContents(0)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Shortcuts follow OHIF / Cornerstone where they overlap."))
        layout.addWidget(table)
        layout.addWidget(buttons)
        self.table = table
