"""Helpers for the viewer tests: open a path or run Enhance and wait for the result."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def open_and_wait(qtbot: Any, window: Any, path: Path, *, images: int = 1,
                  timeout: int = 20_000) -> Any:
    """Open a path, wait for the scan and the first image to show; returns the document."""
    window.open_path(path, remember=False, thumbnails=False)
    qtbot.waitUntil(lambda: not window.browser.scanning and
                    len(window.browser.images) >= images, timeout=timeout)
    qtbot.waitUntil(lambda: window.document is not None, timeout=timeout)
    return window.document


def enhance_and_wait(qtbot: Any, window: Any, scope: str | None = None,
                     timeout: int = 60_000) -> None:
    assert window.start_enhance(scope)
    qtbot.waitUntil(lambda: not window.enhance.is_running(), timeout=timeout)
    assert not window.enhance.last_error, window.enhance.last_error
    assert window.document.has_enhanced
