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


# Stand-ins for viewer.decoding._decode_in_child: they run in the helper process, which imports
# them from here by name (so they live in this light module, not in a test file).
def hung_decode(_source: str, _path: str, _frame: int) -> Any:
    """A decoder that never answers (in the time a test waits)."""
    import time

    time.sleep(60)
    raise RuntimeError("the hung decode was not stopped")


def quick_decode(_source: str, _path: str, _frame: int) -> Any:
    import numpy as np

    return np.zeros((4, 4), np.float32)


def hung_on_hung_dcm(_source: str, path: str, _frame: int) -> Any:
    """Hangs for the image named hung.dcm; decodes any other one at once."""
    if path.endswith("hung.dcm"):
        return hung_decode(_source, path, _frame)
    return quick_decode(_source, path, _frame)
