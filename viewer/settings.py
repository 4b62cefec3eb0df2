"""The viewer's persistent settings: one typed dataclass, stored through QSettings.

Tests (and `--settings PATH`) point the store at an INI file so they never touch the user's.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from PySide6.QtCore import QSettings

SETTINGS_ENV = "CXR_VIEWER_SETTINGS"
ORGANISATION = "CXR Enhance"
APPLICATION = "cxr-viewer"
MAX_RECENT = 10

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
TILE_SIZES = (128, 192, 256, 384, 512)
SCOPES = ("image", "visible")
THEMES = ("dark", "light")
INTERPOLATIONS = ("smooth", "nearest")
TILE_RANGE = (32, 2048)  # input pixels per tile side
DRAG_SPEED_RANGE = (0.05, 20.0)
_CUDA_INDEX = re.compile(r"cuda:\d+")


def is_device(value: str) -> bool:
    """auto, cpu, cuda, mps or cuda:N (whether it exists here is for engine.sr.device)."""
    return value in DEVICES or bool(_CUDA_INDEX.fullmatch(str(value)))


def override_problem(name: str, value: object) -> str | None:
    """One sentence when a command-line override is not a value the settings accept."""
    if name == "device" and not is_device(str(value)):
        return f"--device {value} is not a device; use auto, cpu, cuda, cuda:N or mps."
    if name == "tile":
        low, high = TILE_RANGE
        if not isinstance(value, int) or not low <= value <= high:
            return f"--tile {value} is outside {low}-{high}; give a tile size in pixels in that range."
    return None


@dataclass
class ViewerSettings:
    model: str = ""  # "" = the registry's default model; else a model name or a file path
    device: str = "auto"
    precision: str = "auto"
    tile: int = 256
    overlap: int = 16
    threads: int = 0  # CPU threads for Enhance on the CPU; 0 = one per core
    scope: str = "image"  # Enhance the whole image or only the visible region
    theme: str = "dark"  # reading room
    interpolation: str = "smooth"
    # Drag right = wider window, drag down = higher level (OHIF); each can be reversed.
    drag_reverse_width: bool = False
    drag_reverse_level: bool = False
    drag_sensitivity: float = 1.0
    recent: list[str] = field(default_factory=list)

    def add_recent(self, path: str | Path) -> None:
        text = str(Path(path).resolve())
        self.recent = [text] + [p for p in self.recent if p != text]
        del self.recent[MAX_RECENT:]

    def validated(self) -> ViewerSettings:
        """Replace values a hand-edited or older settings file may hold by the defaults."""
        default = ViewerSettings()
        choices = {
            "device": DEVICES, "precision": PRECISIONS, "scope": SCOPES, "theme": THEMES,
            "interpolation": INTERPOLATIONS,
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed and not (name == "device" and is_device(str(value))):
                setattr(self, name, getattr(default, name))
        if not TILE_RANGE[0] <= self.tile <= TILE_RANGE[1]:
            self.tile = default.tile
        if not 0 <= self.overlap < self.tile // 2:
            self.overlap = default.overlap
        if not 0 <= self.threads <= 1024:
            self.threads = default.threads
        if not DRAG_SPEED_RANGE[0] <= self.drag_sensitivity <= DRAG_SPEED_RANGE[1]:
            self.drag_sensitivity = default.drag_sensitivity
        return self


def open_store(path: str | Path | None = None) -> QSettings:
    """An INI file when a path is given (or $CXR_VIEWER_SETTINGS), else the platform's store."""
    path = path or os.environ.get(SETTINGS_ENV)
    if path:
        return QSettings(str(path), QSettings.Format.IniFormat)
    return QSettings(ORGANISATION, APPLICATION)


def load(store: QSettings) -> ViewerSettings:
    settings = ViewerSettings()
    for f in fields(ViewerSettings):
        if not store.contains(f.name):
            continue
        raw = store.value(f.name)
        default = getattr(settings, f.name)
        try:
            setattr(settings, f.name, _coerce(raw, default))
        except (TypeError, ValueError):
            pass  # keep the default for a value we cannot read
    return settings.validated()


def save(settings: ViewerSettings, store: QSettings) -> None:
    for f in fields(ViewerSettings):
        value = getattr(settings, f.name)
        # An empty list reads back as None from INI files: store a marker-free empty string.
        store.setValue(f.name, list(value) if isinstance(value, list) and value else
                       ("" if isinstance(value, list) else value))
    store.sync()


def _coerce(raw: object, default: object) -> object:
    if isinstance(default, bool):
        return raw if isinstance(raw, bool) else str(raw).lower() in ("1", "true", "yes")
    if isinstance(default, int):
        return int(raw)  # type: ignore[arg-type]
    if isinstance(default, float):
        return float(raw)  # type: ignore[arg-type]
    if isinstance(default, list):
        if raw in (None, ""):
            return []
        return [str(x) for x in raw] if isinstance(raw, (list, tuple)) else [str(raw)]
    return "" if raw is None else str(raw)
