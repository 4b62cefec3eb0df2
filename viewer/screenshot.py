"""`cxr-viewer PATH --screenshot out.png`: drive the real window offscreen and save a PNG.

Used for tests, documentation and review. Waits for the scan, the image, Enhance and the
difference image as needed, each with a time limit; on an error it still saves what the window
shows (the message bar included) and returns 1.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import QApplication

from viewer.main_window import MainWindow


def wait_until(predicate: Callable[[], bool], timeout_s: float, step_ms: int = 20) -> bool:
    """Run the event loop until predicate() is true or the time is up."""
    deadline = time.monotonic() + timeout_s
    loop = QEventLoop()
    while not predicate():
        if time.monotonic() > deadline:
            return False
        QTimer.singleShot(step_ms, loop.quit)
        loop.exec()
    return True


def take_screenshot(app: QApplication, window: MainWindow, args: argparse.Namespace) -> int:
    width, height = (int(v) for v in str(args.size).lower().split("x"))
    window.resize(width, height)
    window.show()
    if args.path:
        window.open_path(args.path, remember=False)
    else:
        window.open_samples()
    limit = float(args.timeout)
    error = ""
    if not wait_until(lambda: not window.browser.scanning or len(window.browser.images) > args.select,
                      limit):
        error = "the scan did not finish in time"
    if not error and args.select and args.select < len(window.browser.images):
        window.browser.select_index(args.select)
    want = window.browser.images[args.select][0] if args.select < len(window.browser.images) \
        else None
    if not error and not wait_until(
            lambda: window.document is not None and (want is None or window.document.image is want)
            or bool(window.message.text()), limit):
        error = "no image was shown in time"
    if window.document is None and not error:
        error = window.message.text() or "nothing could be shown"
    if not error and args.invert:
        window.toggle_invert()
    if not error and args.zoom:
        window.view.set_zoom(float(args.zoom))
    if not error and args.enhance:
        window.start_enhance()
        wait_until(lambda: not window.enhance.is_running(), limit)
        if window.enhance.last_error:
            error = window.enhance.last_error
        elif window.document is not None and not window.document.has_enhanced:
            error = "Enhance did not finish in time"
    if not error and args.compare:
        window.set_compare(args.compare)
        if args.compare == "diff":
            wait_until(lambda: window.document.difference_layer is not None
                       or bool(window.message.text()), limit)
        elif args.compare == "ab":
            window.compare.primary.show_top = True
    wait_until(lambda: False, 0.15)  # let the last paints and the status bar settle
    out = Path(args.screenshot)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not window.grab().save(str(out)):
        print(f"cxr-viewer: could not write {out}", file=sys.stderr)
        return 1
    if error:
        print(f"cxr-viewer: {error}", file=sys.stderr)
        return 1
    return 0
