"""How long can the window freeze while Enhance runs? Prints one JSON object.

    python -m viewer.bench_stall [--arch rrdb|compact] [--tile 128] [--image lowres|full]
    cxr-viewer --bench-stall [same options]

Opens the bundled sample in the real main window (offscreen unless a display is set), enhances it
with a real-size network with random weights (the timing does not depend on the weights), and
meanwhile records every tick of a 1 ms QTimer. The longest gap between ticks is the longest time
the event loop could not run: a stall the user would feel. Tile pasting and repainting on arrival
are included, because the window is shown and repaints as tiles come in.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

TARGET_MS = 50.0


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m viewer.bench_stall", description=__doc__.splitlines()[0])
    p.add_argument("--arch", choices=("rrdb", "compact"), default="rrdb",
                   help="rrdb = ESRGAN RRDBNet 64 features x 23 blocks; compact = SRVGGNetCompact "
                        "64 x 16")
    p.add_argument("--tile", type=int, default=128)
    p.add_argument("--image", choices=("lowres", "full"), default="lowres",
                   help="lowres = the 256x256 sample; full = the 2000x2128 radiograph (visible "
                        "region only, 1:1 zoom)")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("path", nargs="?", help="image to enhance instead of the sample")
    return p.parse_args(argv)


def build_network(arch: str):  # noqa: ANN201 - torch module, imported lazily
    from engine.sr.archs import RRDBNet, SRVGGNetCompact

    if arch == "rrdb":
        return RRDBNet(num_feat=64, num_block=23, num_grow_ch=32, scale=4)
    return SRVGGNetCompact(num_feat=64, num_conv=16, upscale=4)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if not os.environ.get("DISPLAY") and not os.environ.get("QT_QPA_PLATFORM"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    # The network (and so torch) first: the Windows DLL order, and its import is not measured.
    network = build_network(args.arch)

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from engine.resources import samples_dir
    from viewer import settings as settings_mod
    from viewer.main_window import MainWindow
    from viewer.screenshot import wait_until
    from viewer.tasks import wait_for_background

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName("cxr-viewer stall benchmark")
    with tempfile.TemporaryDirectory(prefix="cxr-bench-") as tmp:
        store = settings_mod.open_store(Path(tmp) / "settings.ini")
        window = MainWindow(store, model_override=network)
        window.settings.tile = args.tile
        window.settings.device = args.device
        window.settings.precision = args.precision
        window.resize(1400, 900)
        window.show()
        window.open_path(args.path or samples_dir(), remember=False, thumbnails=False)
        if not wait_until(lambda: not window.browser.scanning, 60):
            print(json.dumps({"error": "scan timed out"}))
            return 1
        index = _pick(window, args)
        window.browser.select_index(index)
        want = window.browser.images[index][0]
        wait_until(lambda: window.document is not None and window.document.image is want, 60)
        if args.image == "full" and not args.path:
            window.one_to_one()
        scope = "visible" if args.image == "full" and not args.path else "image"
        # Let everything started so far settle before measuring: the first image of the folder
        # (opened automatically) may still be decoding in the background.
        wait_for_background(60_000)
        wait_until(lambda: False, 0.5)

        ticks: list[float] = []
        timer = QTimer()
        timer.setInterval(1)
        timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
        timer.start()
        started = time.perf_counter()
        window.start_enhance(scope)
        finished = wait_until(lambda: not window.enhance.is_running(), args.timeout, step_ms=1)
        ended = time.perf_counter()
        timer.stop()
        report = _report(window, ticks, started, ended, finished, args)
        window.close()
    print(json.dumps(report, indent=2))
    return 0 if finished and not window.enhance.last_error else 1


def _pick(window, args: argparse.Namespace) -> int:  # noqa: ANN001
    if args.path:
        return 0
    for i, (image, _ctx) in enumerate(window.browser.images):
        small = max(image.rows, image.columns) <= 512
        if small == (args.image == "lowres"):
            return i
    return 0


def _report(window, ticks: list[float], started: float, ended: float, finished: bool,  # noqa: ANN001
            args: argparse.Namespace) -> dict:
    import numpy as np

    times = np.asarray([started, *ticks, ended])
    gaps = np.diff(times) * 1000.0
    worst = int(np.argmax(gaps)) if gaps.size else 0
    result = window.enhance.last_result
    doc = window.document
    region = window.enhance.region
    return {
        "benchmark": "viewer event-loop stall while enhancing",
        "max_stall_ms": round(float(gaps.max()), 2) if gaps.size else None,
        "max_stall_at_s": round(float(times[worst] - started), 3) if gaps.size else None,
        "p99_gap_ms": round(float(np.percentile(gaps, 99)), 2) if gaps.size else None,
        "median_gap_ms": round(float(np.median(gaps)), 3) if gaps.size else None,
        "gaps_over_50ms": int((gaps > TARGET_MS).sum()),
        "target_ms": TARGET_MS,
        "ok": bool(finished and gaps.size and gaps.max() <= TARGET_MS),
        "ticks": len(ticks),
        "enhance_seconds": round(ended - started, 2),
        "finished": bool(finished and doc is not None and doc.has_enhanced),
        "error": window.enhance.last_error or None,
        "arch": args.arch,
        "tile": args.tile,
        "tiles": window.enhance.tiles_received,
        "max_ui_ms_per_tile": round(window.enhance.max_tile_ms, 2),
        "input_region": list(region) if region else None,
        "output_shape": list(result.image.shape) if result is not None else None,
        "device": getattr(result, "device", None),
        "precision": getattr(result, "precision", None),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "qt_platform": os.environ.get("QT_QPA_PLATFORM", "native"),
    }


if __name__ == "__main__":
    raise SystemExit(main())
