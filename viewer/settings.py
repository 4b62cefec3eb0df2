"""The viewer's persistent settings: one typed dataclass, stored through QSettings.

Tests (and `--settings PATH`) point the store at an INI file so they never touch the user's.
"""

from __future__ import annotations

import os
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
            if value not in allowed and not (name == "device" and str(value).startswith("cuda:")):
                setattr(self, name, getattr(default, name))
        if not 32 <= self.tile <= 2048:
            self.tile = default.tile
        if not 0 <= self.overlap < self.tile // 2:
            self.overlap = default.overlap
        if not 0 <= self.threads <= 1024:
            self.threads = default.threads
        if not 0.05 <= self.drag_sensitivity <= 20:
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
