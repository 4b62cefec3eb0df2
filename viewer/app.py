"""`cxr-viewer [PATH]`: open PATH (file, folder, DICOMDIR, ZIP) or the bundled sample study.

    cxr-viewer                       # the sample study
    cxr-viewer study/ --screenshot out.png [--enhance] [--compare split|side|diff]
    cxr-viewer --bench-stall         # longest UI stall while enhancing (JSON), see bench_stall
    cxr-viewer --self-test           # check decoders, models and a rendered window (packaging)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="cxr-viewer", description=__doc__.splitlines()[0])
    p.add_argument("path", nargs="?", help="file, folder, DICOMDIR or ZIP (default: the sample)")
    p.add_argument("--screenshot", metavar="PNG", help="render the window to PNG and exit")
    p.add_argument("--enhance", action="store_true", help="with --screenshot: Enhance first")
    p.add_argument("--compare", choices=("ab", "split", "side", "diff"),
                   help="with --screenshot: compare mode (implies --enhance)")
    p.add_argument("--select", type=int, default=0, metavar="N",
                   help="with --screenshot: show the N-th image found (0 = first)")
    p.add_argument("--zoom", type=float, metavar="Z", help="with --screenshot: zoom (1 = 1:1)")
    p.add_argument("--invert", action="store_true", help="with --screenshot: invert")
    p.add_argument("--size", default="1500x950", metavar="WxH", help="window size for screenshots")
    p.add_argument("--theme", choices=("dark", "light"), help="override the theme setting")
    p.add_argument("--model", metavar="PATH", help="model file or name to Enhance with")
    p.add_argument("--device", help="override the device setting (auto, cpu, cuda, mps)")
    p.add_argument("--tile", type=int, help="override the tile size setting")
    p.add_argument("--scope", choices=("image", "visible"),
                   help="override the Enhance scope setting (whole image or visible region)")
    p.add_argument("--settings", metavar="INI", help="settings file (default: the user's)")
    p.add_argument("--timeout", type=float, default=600.0, help="screenshot time limit, s")
    p.add_argument("--bench-stall", action="store_true",
                   help="measure the longest event-loop stall while enhancing; prints JSON "
                        "(options: cxr-viewer --bench-stall --help)")
    p.add_argument("--self-test", action="store_true",
                   help="check decoders, models and a rendered window, then exit")
    args, rest = p.parse_known_args(argv)
    args.rest = rest
    if args.compare:
        args.enhance = True
    return args


def main(argv: list[str] | None = None) -> int:
    import multiprocessing

    multiprocessing.freeze_support()  # the decode helper process in a frozen (PyInstaller) app
    from engine.io import quiet_nonconformance_warnings

    quiet_nonconformance_warnings()
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--self-test" in argv:  # the packaging check (viewer.selftest), same as the frozen app
        from viewer import selftest

        return selftest.main([a for a in argv if a != "--self-test"])
    if "--bench-stall" in argv:  # its own options (--arch, --tile, ...): see viewer.bench_stall
        from viewer import bench_stall

        return bench_stall.main([a for a in argv if a != "--bench-stall"])
    args = parse_args(argv)
    from viewer.settings import override_problem

    for name in ("device", "tile"):
        value = getattr(args, name)
        problem = None if value is None else override_problem(name, value)
        if problem:
            print(f"cxr-viewer: {problem}", file=sys.stderr)
            return 2
    if sys.platform == "win32":
        # torch >= 2.9 on Windows must load its DLLs before Qt's; elsewhere torch loads lazily
        # on the first Enhance so the window opens fast.
        import torch  # noqa: F401
    headless = bool(args.screenshot)
    if headless and not os.environ.get("QT_QPA_PLATFORM") and not os.environ.get("DISPLAY") \
            and sys.platform.startswith("linux"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"

    from PySide6.QtWidgets import QApplication

    from viewer import settings as settings_mod
    from viewer.main_window import MainWindow
    from viewer.theme import app_icon

    app = QApplication.instance() or QApplication([sys.argv[0], *args.rest])
    app.setApplicationName("CXR Enhance")
    app.setOrganizationName(settings_mod.ORGANISATION)
    app.setWindowIcon(app_icon())

    temp_settings = None
    if headless and not args.settings:
        import tempfile

        temp_settings = tempfile.TemporaryDirectory(prefix="cxr-viewer-")
        args.settings = str(Path(temp_settings.name) / "settings.ini")
    store = settings_mod.open_store(args.settings)
    window = MainWindow(store, model_override=args.model)
    # For this run only: the options are used, never written into the user's settings.
    window.set_overrides(**{name: getattr(args, name)
                            for name in ("theme", "device", "tile", "scope")
                            if getattr(args, name) is not None})

    if headless:
        from viewer.screenshot import take_screenshot

        code = take_screenshot(app, window, args)
        window.close()
        if temp_settings is not None:
            temp_settings.cleanup()
        return code

    window.show()
    if args.path:
        window.open_path(args.path)
    else:
        window.open_samples()
    return app.exec()


if __name__ == "__main__":
    raise SystemExit(main())
