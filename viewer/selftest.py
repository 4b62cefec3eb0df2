"""`cxr-viewer --self-test`: prove that an installed or packaged app has everything it needs.

Made for the frozen (PyInstaller) bundle, where a missing plugin, entry point or data file only
shows up when a user opens a file; works the same from a source checkout and an installed wheel.
Each check prints one line, ``OK``/``FAIL`` + one sentence + its time:

- resources: the bundled `resources/` folder (models, samples) is where `engine.resources` looks;
- Qt: the platform plugins this OS needs (offscreen + xcb / windows / cocoa) are installed and
  the native one loads (its system libraries are present);
- decoders: pydicom sees the decoding plugins (pylibjpeg + its openjpeg and rle plugins, which
  are found through entry points, GDCM, Pillow) for every compressed syntax the viewer reads;
- one line per bundled sample image (decoded to modality values through `engine.io`);
- one line per compressed transfer syntax, decoding a tiny pydicom test file (bundled into
  `resources/selftest/` by build.spec; a source checkout reads them from `pydicom.data`);
- torch: a tiny network saved, loaded through its card and run on one 64x64 tile in fp32 and bf16;
- one line per bundled model (`resources/models/` only: a user's model of the same name must not
  hide a broken bundle): one 64x64 tile on the CPU (`--require-model`: none is a failure);
- window: the real main window opens the sample study offscreen and its grab is not blank; also
  reports how long after the process started the first window was shown.

The window is offscreen unless QT_QPA_PLATFORM says otherwise or `--onscreen` is given.
Returns 0 only if every check passed. `python -m viewer.selftest [--require-model]` runs it too.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

# pydicom test file -> the transfer syntax it exercises. Bundled into resources/selftest/ by
# build.spec (pydicom's test data is not shipped in the bundle otherwise); all are local files of
# pydicom >= 3.0 (no download). One per compressed syntax engine.io decodes.
SELFTEST_FILES: dict[str, str] = {
    "JPEG2000.dcm": "JPEG 2000 (lossy), pylibjpeg-openjpeg",
    "MR_small_jp2klossless.dcm": "JPEG 2000 Lossless, pylibjpeg-openjpeg",
    "MR_small_RLE.dcm": "RLE Lossless, pylibjpeg-rle",
    "SC_rgb_small_odd_jpeg.dcm": "JPEG Baseline 8-bit, Pillow",
    "JPEG-lossy.dcm": "JPEG Extended 12-bit, GDCM",
    "SC_rgb_jpeg_gdcm.dcm": "JPEG Lossless SV1, GDCM",
    "MR_small_jpeg_ls_lossless.dcm": "JPEG-LS Lossless, GDCM",
    "JPEGLSNearLossless_16.dcm": "JPEG-LS Near-Lossless, GDCM",
    "image_dfl.dcm": "Deflated Explicit VR Little Endian, zlib",
    "MR_small_bigendian.dcm": "Explicit VR Big Endian, pydicom",
}
SELFTEST_DIRNAME = "selftest"

# transfer syntax -> decoding plugins that must be available (pydicom's plugin names)
REQUIRED_PLUGINS: dict[str, tuple[str, ...]] = {
    "1.2.840.10008.1.2.4.90": ("pylibjpeg", "gdcm"),  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91": ("pylibjpeg", "gdcm"),  # JPEG 2000
    "1.2.840.10008.1.2.5": ("pylibjpeg",),  # RLE Lossless (pydicom's own "pydicom" too)
    "1.2.840.10008.1.2.4.50": ("pillow", "gdcm"),  # JPEG Baseline
    "1.2.840.10008.1.2.4.70": ("gdcm",),  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80": ("gdcm",),  # JPEG-LS Lossless
}

ONSCREEN_ENV = "CXR_SELFTEST_ONSCREEN"
NATIVE_PLATFORM_PLUGIN = {"linux": "xcb", "win32": "windows", "darwin": "cocoa"}
TILE_INPUT = 64


@dataclass
class Check:
    name: str
    ok: bool
    text: str
    ms: float

    def line(self) -> str:
        return f"{'OK' if self.ok else 'FAIL':<4} {self.name}: {self.text} ({self.ms:.0f} ms)"


class _Failed(Exception):
    """A check failed; the message is its one sentence."""


class SelfTest:
    def __init__(self, stream: TextIO | None, *, require_model: bool = False,
                 timeout_s: float = 120.0) -> None:
        self.stream = stream
        self.require_model = require_model
        self.timeout_s = timeout_s
        self.checks: list[Check] = []

    # -- reporting ---------------------------------------------------------------------------
    def say(self, text: str) -> None:
        if self.stream is None:
            return
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def record(self, name: str, ok: bool, text: str, ms: float) -> Check:
        check = Check(name, ok, text.rstrip(".") + ".", ms)
        self.checks.append(check)
        self.say(check.line())
        return check

    @contextmanager
    def check(self, name: str) -> Iterator[dict[str, str]]:
        """`with self.check(name) as out: ... out["text"] = "..."`; an exception = FAIL."""
        out: dict[str, str] = {"text": "done"}
        start = time.perf_counter()
        try:
            yield out
        except _Failed as exc:
            self.record(name, False, str(exc), _ms(start))
        except Exception as exc:  # any error is this check's failure, the others still run
            where = traceback.extract_tb(exc.__traceback__)[-1]
            self.record(name, False, f"{type(exc).__name__}: {_one_line(exc)} "
                        f"[{Path(where.filename).name}:{where.lineno}]", _ms(start))
        else:
            self.record(name, True, out["text"], _ms(start))

    # -- the run -----------------------------------------------------------------------------
    def run(self) -> int:
        if sys.platform == "win32":
            import torch  # noqa: F401  torch >= 2.9 on Windows: its DLLs before Qt's (viewer.app)

        import engine

        frozen = getattr(sys, "frozen", False)
        where = (f"frozen bundle at {Path(sys.executable).parent}" if frozen
                 else f"Python {sys.version.split()[0]} at {Path(sys.executable).parent}")
        self.say(f"CXR Enhance {engine.__version__} self-test: {where}, {sys.platform}")
        start = time.perf_counter()
        self.check_resources()
        self.check_window()  # first, so its start-up times are those of a plain launch
        self.check_qt()
        self.check_decoders()
        self.check_samples()
        self.check_decode_helper()
        self.check_transfer_syntaxes()
        self.check_torch()
        self.check_models()
        self.check_metrics()
        failed = [c.name for c in self.checks if not c.ok]
        total = _ms(start)
        if failed:
            self.say(f"FAILED: {len(failed)} of {len(self.checks)} checks ({', '.join(failed)}); "
                     f"{total / 1000:.1f} s")
            return 1
        self.say(f"PASSED: all {len(self.checks)} checks; {total / 1000:.1f} s")
        return 0

    def check_resources(self) -> None:
        from engine.resources import models_dir, resources_dir, samples_dir

        with self.check("resources") as out:
            root = resources_dir()
            if not samples_dir().is_dir():
                raise _Failed(f"{root} has no samples/ folder")
            models = sorted(models_dir().glob("*.json")) if models_dir().is_dir() else []
            out["text"] = f"{root} (samples/, {len(models)} bundled model card(s))"

    def check_qt(self) -> None:
        with self.check("Qt") as out:
            from PySide6 import __version__ as pyside_version
            from PySide6.QtCore import QLibraryInfo

            folder = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms"
            found = sorted(_plugin_name(p) for p in folder.glob("*") if p.is_file()) \
                if folder.is_dir() else []
            needed = ["offscreen"]
            native = next((v for k, v in NATIVE_PLATFORM_PLUGIN.items()
                           if sys.platform.startswith(k)), None)
            if native:
                needed.append(native)
            missing = [n for n in needed if n not in found]
            if missing:
                raise _Failed(f"platform plugin(s) {', '.join(missing)} missing from {folder} "
                              f"(found: {', '.join(found) or 'none'})")
            out["text"] = f"PySide6 {pyside_version}, platform plugins {', '.join(found)}"
            if native:
                # Loading the plugin library (no display needed) proves the system libraries it
                # links to are there, e.g. libxcb-cursor0 for xcb on Linux.
                from PySide6.QtCore import QPluginLoader

                path = next(p for p in folder.glob("*") if _plugin_name(p) == native)
                loader = QPluginLoader(str(path))
                if not loader.load():
                    raise _Failed(f"the {native} platform plugin does not load, so the viewer "
                                  f"cannot open a window: {_one_line(loader.errorString())}")
                out["text"] += f"; {native} loads"

    def check_decoders(self) -> None:
        with self.check("decoders") as out:
            from pydicom.pixels import get_decoder
            from pydicom.uid import UID

            missing, seen = [], set()
            for syntax, plugins in REQUIRED_PLUGINS.items():
                available = set(get_decoder(UID(syntax)).available_plugins)
                seen |= available
                for plugin in plugins:
                    if plugin not in available:
                        missing.append(f"{plugin} for {UID(syntax).name}")
            # pylibjpeg finds its plugins through entry points (the dists' metadata)
            from pylibjpeg.utils import get_pixel_data_decoders

            entry_points = {name for by_syntax in get_pixel_data_decoders(version=2).values()
                            for name in by_syntax}
            for name in ("openjpeg", "rle"):
                if name not in entry_points:
                    missing.append(f"pylibjpeg plugin {name!r} (entry point metadata)")
            if missing:
                raise _Failed("missing " + "; ".join(missing))
            out["text"] = (f"plugins {', '.join(sorted(seen))}; pylibjpeg entry points "
                           f"{', '.join(sorted(entry_points))}")

    def check_samples(self) -> None:
        from engine import io
        from engine.resources import samples_dir

        images: list[Any] = []
        with self.check("samples") as out:
            collection = io.load(samples_dir())
            images = list(collection.images)
            broken = [p for p in collection.problems if not p.skipped]
            if broken:
                raise _Failed("; ".join(f"{Path(p.path).name}: {p.reason}" for p in broken))
            if not images:
                raise _Failed(f"no image found in {samples_dir()}")
            out["text"] = f"{len(images)} image(s) in {samples_dir().name}/"
        for image in images:
            with self.check(f"sample {Path(image.path).name}") as out:
                out["text"] = _decode(image)

    def check_decode_helper(self) -> None:
        """GDCM decodes run in spawned helper processes (engine.io.isolation): they must start
        from this program too (frozen: freeze_support in the entry script)."""
        with self.check("decode helper") as out:
            import os

            from engine.io import isolation

            if not isolation.enabled():
                raise _Failed("decoding in helper processes is switched off or cannot start here")
            pid = isolation.run(os.getpid, timeout=60.0)
            if pid == os.getpid():
                raise _Failed("the helper ran in this process")
            out["text"] = f"helper process {pid} answers (GDCM decodes run there)"

    def check_transfer_syntaxes(self) -> None:
        from engine import io

        for name, what in SELFTEST_FILES.items():
            with self.check(f"decode {what.split(',')[0]}") as out:
                path = selftest_file(name)
                if path is None:
                    raise _Failed(f"{name} is not bundled (resources/{SELFTEST_DIRNAME}/) and "
                                  "pydicom's test data does not have it")
                collection = io.load(path)
                if not collection.images:
                    reasons = "; ".join(p.reason for p in collection.problems) or "no image"
                    raise _Failed(f"{name}: {reasons}")
                out["text"] = f"{name}: " + _decode(collection.images[0])

    def check_torch(self) -> None:
        """torch and the Enhancer work even when no model is installed: a tiny random network
        is saved as safetensors + card, loaded back through the card and run on one tile."""
        with self.check("torch") as out:
            out["text"] = _enhance_tiny_network()

    def check_models(self) -> None:
        models: list[Any] = []
        with self.check("models") as out:
            from engine.sr.registry import ENV_MODELS_DIR, list_models

            folders = model_dirs()
            models = list_models(folders)
            if not models:
                where = ", ".join(str(d) for d in folders)
                if self.require_model:
                    raise _Failed(f"no models bundled or installed (searched {where})")
                out["text"] = f"no models bundled or installed (searched {where}); skipped"
            else:
                env = bool(os.environ.get(ENV_MODELS_DIR, "").strip())
                out["text"] = ", ".join(f"{m.name} ({m.source if env else 'bundled'})"
                                        for m in models)
        for info in models:
            with self.check(f"model {info.name}") as out:
                out["text"] = _enhance_one_tile(info)

    def check_metrics(self) -> None:
        """`cxr-enhance eval` (scikit-image + SciPy): PSNR/SSIM of a known pair."""
        with self.check("metrics") as out:
            import numpy as np

            from engine.evaluation import metrics

            hr = np.linspace(0.0, 1.0, 64 * 64).reshape(64, 64)
            sr = np.clip(hr + 0.01 * np.cos(np.arange(64))[None, :], 0.0, 1.0)
            got = metrics(sr, hr)
            if not (30.0 < got["psnr"] < 50.0 and 0.5 < got["ssim"] <= 1.0):
                raise _Failed(f"unexpected PSNR {got['psnr']:.2f} dB / SSIM {got['ssim']:.4f}")
            out["text"] = (f"engine.evaluation PSNR {got['psnr']:.2f} dB, SSIM {got['ssim']:.4f} "
                           "on a 64x64 pair (scikit-image, SciPy)")

    def check_window(self) -> None:
        with self.check("window") as out:
            out["text"] = render_window(self.timeout_s)


# -- helpers ---------------------------------------------------------------------------------
def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


def _plugin_name(path: Path) -> str:
    """libqxcb.so / qwindows.dll / libqcocoa.dylib -> xcb / windows / cocoa."""
    stem = path.name.split(".")[0]
    for prefix in ("libq", "q"):
        if stem.startswith(prefix):
            return stem[len(prefix):]
    return stem


def _decode(image: Any) -> str:
    import numpy as np

    values = image.modality_values()
    if values.shape[:2] != (image.rows, image.columns):
        raise _Failed(f"decoded {values.shape} instead of {image.rows}x{image.columns}")
    if not np.isfinite(values).all():
        raise _Failed("decoded values are not all finite")
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        raise _Failed(f"decoded to a constant image ({lo:g})")
    return (f"{image.columns}x{image.rows} {_syntax_name(image.transfer_syntax)}, "
            f"values {lo:g}..{hi:g}")


def _syntax_name(uid: str) -> str:
    if not uid:
        return "raster"
    from pydicom.uid import UID

    return UID(uid).name


def selftest_dir() -> Path:
    from engine.resources import resources_dir

    return resources_dir() / SELFTEST_DIRNAME


def selftest_file(name: str) -> Path | None:
    """The bundled copy, else (source checkout, wheel) pydicom's own test file, else None."""
    bundled = selftest_dir() / name
    if bundled.is_file():
        return bundled
    try:
        from pydicom.data import get_testdata_file

        found = get_testdata_file(name, download=False)
    except Exception:
        return None
    return Path(found) if found else None


def model_dirs() -> list[Path]:
    """The folders whose models the self-test checks: the bundled `resources/models/` only, so a
    user's model of the same name (which wins in the registry) cannot hide a bundle that lost or
    broke its own. CXR_ENHANCE_MODELS_DIR, which replaces the model folders for the whole app
    (tests, portable installs), replaces this one too."""
    from engine.sr.registry import ENV_MODELS_DIR, bundled_models_dir, search_dirs

    if os.environ.get(ENV_MODELS_DIR, "").strip():
        return search_dirs()
    return [bundled_models_dir()]


def _enhance_one_tile(info: Any) -> str:
    import numpy as np

    from engine.sr.enhancer import Enhancer

    y, x = np.mgrid[0:TILE_INPUT, 0:TILE_INPUT].astype(np.float32)
    image = (2048 + 1000 * np.sin(x / 5.0) * np.cos(y / 7.0)).astype(np.float32)
    result = Enhancer(info, device="cpu", precision="fp32", tile=TILE_INPUT).enhance(image)
    out = result.image
    expected = (TILE_INPUT * result.scale, TILE_INPUT * result.scale)
    if out.shape != expected:
        raise _Failed(f"output {out.shape} instead of {expected}")
    if not np.isfinite(out).all():
        raise _Failed("the output is not finite")
    return (f"{TILE_INPUT}x{TILE_INPUT} -> {out.shape[1]}x{out.shape[0]} on {result.device} "
            f"{result.precision} in {result.seconds * 1000:.0f} ms")


def _enhance_tiny_network() -> str:
    import numpy as np
    import torch

    from engine.sr.archs import SRVGGNetCompact
    from engine.sr.card import ModelCard
    from engine.sr.enhancer import Enhancer
    from engine.sr.weights import save_model

    torch.manual_seed(0)
    net = SRVGGNetCompact(num_feat=4, num_conv=1, upscale=4).eval()
    image = np.linspace(0, 4095, TILE_INPUT * TILE_INPUT, dtype=np.float32)
    image = image.reshape(TILE_INPUT, TILE_INPUT)
    with tempfile.TemporaryDirectory(prefix="cxr-selftest-") as tmp:
        weights = Path(tmp) / "selftest-tiny.safetensors"
        save_model(net, weights, ModelCard(name="selftest-tiny", title="Self-test",
                                           architecture="?"), dtype="fp32")
        done = []
        # bf16 named, not "auto": auto is fp32 on CPUs without native bf16, and bf16 (which torch
        # runs on any CPU, emulated where the hardware lacks it) would never be exercised there
        for precision in ("fp32", "bf16"):
            result = Enhancer(weights.with_suffix(".json"), device="cpu", precision=precision,
                              tile=TILE_INPUT).enhance(image)
            if result.precision != precision or result.fp32_fallback_tiles:
                raise _Failed(f"asked for {precision}, the tile ran in {result.precision}"
                              + (" (recomputed in fp32)" if result.fp32_fallback_tiles else ""))
            if result.image.shape != (TILE_INPUT * 4, TILE_INPUT * 4):
                raise _Failed(f"output {result.image.shape} instead of {TILE_INPUT * 4}^2")
            if not np.isfinite(result.image).all():
                raise _Failed(f"the {result.precision} output is not finite")
            done.append(f"{result.precision} {result.seconds * 1000:.0f} ms")
    return (f"torch {torch.__version__}: a tiny network saved as safetensors, loaded through its "
            f"card and run on a {TILE_INPUT}x{TILE_INPUT} tile on cpu ({', '.join(done)})")


def seconds_since_process_start() -> float | None:
    """Wall time since this process started (Linux: /proc; elsewhere psutil if installed)."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime", encoding="ascii") as f:
            uptime = float(f.read().split()[0])
        return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import psutil  # type: ignore[import-not-found]

        return time.time() - psutil.Process().create_time()
    except Exception:
        return None


def _qapp() -> Any:
    """The running QApplication, else a new one: offscreen unless QT_QPA_PLATFORM says
    otherwise (`--onscreen` clears it to use the native platform)."""
    from PySide6.QtWidgets import QApplication

    if QApplication.instance() is None and os.environ.get(ONSCREEN_ENV) != "1":
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    return QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "cxr-viewer"])


def _wait_until(predicate: Callable[[], bool], timeout_s: float) -> bool:
    from PySide6.QtCore import QEventLoop, QTimer

    deadline = time.monotonic() + timeout_s
    loop = QEventLoop()
    while not predicate():
        if time.monotonic() > deadline:
            return False
        QTimer.singleShot(20, loop.quit)
        loop.exec()
    return True


def _image_stats(qimage: Any) -> tuple[float, int]:
    """(standard deviation of grey levels, number of distinct grey levels) of a QImage."""
    import numpy as np
    from PySide6.QtGui import QImage

    gray = qimage.convertToFormat(QImage.Format.Format_Grayscale8)
    width, height, stride = gray.width(), gray.height(), gray.bytesPerLine()
    if width == 0 or height == 0:
        return 0.0, 0
    buffer = np.frombuffer(gray.constBits(), dtype=np.uint8, count=stride * height)
    pixels = buffer.reshape(height, stride)[:, :width]
    return float(pixels.std()), int(np.unique(pixels).size)


def render_window(timeout_s: float = 120.0, path: str | Path | None = None) -> str:
    """Open `path` (default: the sample study) in the real main window (offscreen if there is
    no display), grab it and check the image area is not blank. Falls back to a QLabel showing
    engine.display's frame when the main window cannot be built."""
    from engine.resources import samples_dir

    path = Path(path) if path is not None else samples_dir()
    app = _qapp()
    try:
        from viewer.main_window import MainWindow  # noqa: F401
    except ImportError as exc:
        return _render_label(app, path, f"main window unavailable ({_one_line(exc)})")
    return _render_main_window(app, timeout_s, path)


def _render_main_window(app: Any, timeout_s: float, path: Path) -> str:
    from viewer import settings as settings_mod
    from viewer.main_window import MainWindow

    with tempfile.TemporaryDirectory(prefix="cxr-selftest-") as tmp:
        store = settings_mod.open_store(str(Path(tmp) / "settings.ini"))
        window = MainWindow(store)
        try:
            window.resize(1000, 700)
            window.show()
            shown_at = seconds_since_process_start()
            window.open_path(path, remember=False)
            loaded = _wait_until(
                lambda: window.document is not None or bool(window.message.text()), timeout_s)
            image_at = seconds_since_process_start()
            if window.document is None:
                reason = window.message.text() if loaded else f"nothing shown in {timeout_s:g} s"
                raise _Failed(f"{path.name} was not shown: {reason}")
            _wait_until(lambda: False, 0.2)  # let the paints settle
            std, levels = _image_stats(window.compare.grab().toImage())
            if std < 5.0 or levels < 16:
                raise _Failed(f"the image area looks blank (std {std:.1f}, {levels} grey levels)")
            image = window.document.image
            text = (f"main window showed {Path(image.path).name} ({image.columns}x{image.rows}) "
                    f"on {app.platformName()}; grab std {std:.0f}, {levels} grey levels")
            text += _helper_note(image)
            if shown_at is not None and image_at is not None:
                text += (f"; after process start: window shown {shown_at:.2f} s, "
                         f"image shown {image_at:.2f} s")
        finally:
            window.close()
            _stop_helpers()
    return text


def _helper_note(image: Any) -> str:
    """Compressed images decode in a helper process (viewer.decoding, spawned: in a frozen app
    it re-runs the executable). Falling back to in-process decoding would freeze the UI."""
    import multiprocessing

    from viewer import decoding

    if not decoding.needs_helper(image):
        return ""
    if getattr(decoding, "_disabled", False) or not multiprocessing.active_children():
        raise _Failed(f"{Path(image.path).name} was shown but its decoding helper process did "
                      "not run (viewer.decoding fell back to decoding on the UI's process)")
    return "; decoded in a helper process"


def _stop_helpers() -> None:
    try:
        from viewer import decoding, tasks

        tasks.wait_for_background(10_000)
        decoding.shutdown()
    except Exception:
        pass


def _render_label(app: Any, path: Path, why: str) -> str:
    import numpy as np
    from PySide6.QtGui import QImage, QPixmap
    from PySide6.QtWidgets import QLabel

    from engine import io
    from engine.display import render_image

    images = io.load(path).images
    if not images:
        raise _Failed(f"no image to render in {path}")
    frame = np.ascontiguousarray(render_image(images[0]))
    height, width = frame.shape
    qimage = QImage(frame.data, width, height, width, QImage.Format.Format_Grayscale8).copy()
    label = QLabel()
    label.setPixmap(QPixmap.fromImage(qimage).scaled(512, 512))
    label.show()
    _wait_until(lambda: False, 0.1)
    std, levels = _image_stats(label.grab().toImage())
    label.close()
    if std < 5.0 or levels < 16:
        raise _Failed(f"{why}; the rendered frame looks blank (std {std:.1f})")
    return f"{why}; rendered {Path(images[0].path).name} in a QLabel on {app.platformName()}"


# -- entry points ----------------------------------------------------------------------------
def run_self_test(stream: TextIO | None = sys.stdout, *, require_model: bool = False,
                  timeout_s: float = 120.0) -> int:
    """Run every check, print one line each to `stream`; 0 if all passed, else 1."""
    return SelfTest(stream, require_model=require_model, timeout_s=timeout_s).run()


def _console_stream() -> TextIO | None:
    """stdout; for a Windows GUI-subsystem exe (console=False) the console it was started from."""
    if sys.stdout is not None:
        return sys.stdout
    if sys.platform == "win32":
        try:
            import ctypes

            if ctypes.windll.kernel32.AttachConsole(-1):  # ATTACH_PARENT_PROCESS
                return open("CONOUT$", "w", encoding="utf-8", errors="replace")  # noqa: SIM115
        except Exception:
            pass
    return None


class _Tee:
    def __init__(self, *streams: TextIO | None) -> None:
        self.streams = [s for s in streams if s is not None]

    def write(self, text: str) -> None:
        for s in self.streams:
            s.write(text)

    def flush(self) -> None:
        for s in self.streams:
            s.flush()


def main(argv: list[str] | None = None) -> int:
    """`cxr-viewer --self-test [--require-model] [--output FILE]`."""
    p = argparse.ArgumentParser(prog="cxr-viewer --self-test",
                                description="Check that this installation can read, enhance "
                                            "and show images; exit status 0 if it can.")
    p.add_argument("--require-model", action="store_true",
                   help="fail when no model is bundled or installed")
    p.add_argument("--output", metavar="FILE", help="also write the report to FILE")
    p.add_argument("--timeout", type=float, default=120.0, help="time limit per wait, s")
    p.add_argument("--onscreen", action="store_true",
                   help="open the test window on the native platform (xcb, windows, cocoa) "
                        "instead of offscreen")
    args, _ = p.parse_known_args(argv)
    if args.onscreen:
        os.environ[ONSCREEN_ENV] = "1"
    console = _console_stream()
    report = open(args.output, "w", encoding="utf-8") if args.output else None  # noqa: SIM115
    try:
        return run_self_test(_Tee(console, report), require_model=args.require_model,
                             timeout_s=args.timeout)
    finally:
        if report is not None:
            report.close()


if __name__ == "__main__":
    import multiprocessing

    multiprocessing.freeze_support()
    raise SystemExit(main(sys.argv[1:]))
