"""The Qt adapter around engine.sr's Enhancer: runs it on a QThread, reports back by signals.

The worker thread builds (or reuses) the Enhancer, so importing torch and loading weights never
block the window. Tiles come back as (box, pixels) signals and are pasted on the UI thread, which
only copies and repaints the chunks they touch: the heavy work stays off the UI thread, and torch
releases the GIL inside its convolutions.

Connections: the worker's signals go to slots of `EnhanceJob`, a QObject that lives on the UI
thread, so they are queued (a plain lambda would run on the worker thread in PySide6).
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QThread, Signal, Slot

from viewer.raster import Box


@dataclass
class EnhanceRequest:
    values: np.ndarray  # float32 modality values of the whole image
    region: Box | None = None  # (y0, x0, y1, x1) of the input, None = whole image
    model: Any = None  # ModelInfo, name, path, torch nn.Module, or None = registry default
    device: str = "auto"
    precision: str = "auto"
    tile: int = 256
    overlap: int = 16
    inverted: bool = False  # MONOCHROME1: the network sees the image as displayed (bone bright)
    threads: int = 0  # CPU threads for torch (process-wide); 0 = one per core
    value_range: tuple[float, float] | None = None  # -> [0, 1] for the network; None: from image
    image: Any = None  # the engine.io Image: its network range is worked out here, off the UI thread
    extra: dict[str, Any] = field(default_factory=dict)


_cache_lock = threading.Lock()
_enhancers: dict[tuple, Any] = {}


def get_enhancer(request: EnhanceRequest) -> Any:
    """A cached Enhancer for the request's model and settings (imports torch on first use)."""
    from engine.sr.enhancer import Enhancer  # lazy: torch is heavy

    model = request.model
    # A name or path by value; anything else (an nn.Module, a ModelInfo) by identity: the cached
    # Enhancer keeps it alive, so its id cannot be reused while the entry exists.
    model_key = str(model) if model is None or isinstance(model, str | Path) else ("id", id(model))
    key = (model_key, request.device, request.precision, request.tile, request.overlap)
    with _cache_lock:
        enhancer = _enhancers.get(key)
        if enhancer is None:
            enhancer = Enhancer(model, device=request.device, precision=request.precision,
                                tile=request.tile, overlap=request.overlap)
            _enhancers.clear()  # one model in memory at a time
            _enhancers[key] = enhancer
    return enhancer


def clear_enhancers() -> None:
    with _cache_lock:
        _enhancers.clear()


def error_message(exc: BaseException) -> str:
    """One sentence and the next step for an error the user can meet."""
    text = str(exc).strip() or exc.__class__.__name__
    name = exc.__class__.__name__
    if name in ("EnhanceError", "WeightsError", "NoModelInstalled", "ModelNotFound", "CardError",
                "DeviceError", "ReadError", "ExportError"):
        # The engine already words these for people, for its command line: here the way on is
        # the Settings dialog ("use --device cpu" -> "choose cpu as the Device in Settings").
        return re.sub(r"\buse --(device|precision|tile) ([\w:]+)",
                      lambda m: f"choose {m.group(2)} as the {m.group(1).capitalize()} in Settings",
                      text)
    if _out_of_memory(exc):
        # Smaller tiles are tried by the engine itself; what is left to the reader:
        return ("Enhance ran out of memory; choose the visible region or the Fast model in "
                "Settings, or close other programs, and try again.")
    if isinstance(exc, FileNotFoundError):
        return f"A file is missing ({exc.filename}); choose another model in Settings."
    return f"Enhance failed ({name}: {text.splitlines()[0][:160]}); see Settings or try again."


def _out_of_memory(exc: BaseException) -> bool:
    try:
        from engine.sr.device import is_out_of_memory
    except Exception:  # noqa: BLE001 - torch broken: judge by the words alone
        return isinstance(exc, MemoryError) or "out of memory" in str(exc).lower()
    return is_out_of_memory(exc)


WORKER_NICE = 5


def lower_this_thread_priority() -> None:
    """Let the UI thread win the CPU over Enhance when cores are busy.

    On Linux the nice value is per thread and is inherited by threads created later, such as
    the OpenMP pool torch starts on its first parallel op (from this thread, in the viewer). On a
    loaded two-core machine this cut the longest UI stall while enhancing several-fold. Elsewhere
    QThread's LowPriority (set at start) does the same job.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid),
                                                 WORKER_NICE))
    except (AttributeError, OSError):
        pass  # not permitted or not supported: run at normal priority


class EnhanceWorker(QObject):
    # The Enhancer with its model loaded, the model's scale, and a zeroed float32 buffer of the
    # output's size for the viewer to paste tiles into.
    ready = Signal(object, int, object)
    progress = Signal(int, int, float, float)  # done, total, elapsed_s, eta_s
    tile = Signal(object, object)  # box (output coords of the whole image), pixels float32
    finished = Signal(object)  # EnhanceResult
    failed = Signal(str, str)  # one sentence, the exception's class name
    cancelled = Signal()

    def __init__(self, request: EnhanceRequest, cancel: threading.Event) -> None:
        super().__init__()
        self.request = request
        self.cancel_event = cancel

    @Slot()
    def run(self) -> None:
        lower_this_thread_priority()
        try:
            self._run()
        finally:
            # End the thread's event loop from here: the UI thread may be blocked in wait()
            # (closing the window) and could not deliver a queued quit().
            QThread.currentThread().quit()

    def _run(self) -> None:
        try:
            from engine.sr.enhancer import EnhanceCancelled
        except Exception as exc:  # noqa: BLE001 - engine missing or torch broken
            self.failed.emit(error_message(exc), type(exc).__name__)
            return
        try:
            from engine.sr.device import set_cpu_threads
            from engine.sr.enhancer import network_scale

            set_cpu_threads(self.request.threads)
            enhancer = get_enhancer(self.request)
            scale = network_scale(enhancer.load())  # load here, off the UI thread
            self.ready.emit(enhancer, scale, self._output_buffer(scale))
            if self.cancel_event.is_set():
                self.cancelled.emit()
                return
            result = enhancer.enhance(self.request.values, progress=self._on_progress,
                                      cancel=self.cancel_event, on_tile=self._on_tile,
                                      region=self.request.region,
                                      value_range=self._value_range(),
                                      inverted=self.request.inverted)
        except EnhanceCancelled:
            self.cancelled.emit()
        except BaseException as exc:  # noqa: BLE001 - everything becomes one sentence
            if self.cancel_event.is_set():
                self.cancelled.emit()
            else:
                self.failed.emit(error_message(exc), type(exc).__name__)
        else:
            if self.cancel_event.is_set():
                self.cancelled.emit()
            else:
                self.finished.emit(result)

    def _value_range(self) -> tuple[float, float] | None:
        """The request's range, else the image's (engine.sr.ranges: leaving Pixel Padding out
        masks the whole image, tens of MB for a radiograph, so not on the UI thread)."""
        if self.request.value_range is not None or self.request.image is None:
            return self.request.value_range
        from engine.sr.ranges import network_range

        return network_range(self.request.image, self.request.values)

    def _output_buffer(self, scale: int) -> np.ndarray:
        """Allocated and touched here: first writes to fresh pages cost page faults (measured up
        to ~45 ms for a 512x512 tile on a busy machine), which must not land on the UI thread."""
        values = self.request.values
        y0, x0, y1, x1 = self.request.region or (0, 0, *values.shape)
        buffer = np.empty(((y1 - y0) * scale, (x1 - x0) * scale), np.float32)
        buffer.fill(0.0)
        return buffer

    def _on_progress(self, p: Any) -> None:
        self.progress.emit(int(p.done), int(p.total), float(p.elapsed_s),
                           float(p.eta_s) if p.eta_s is not None else -1.0)

    def _on_tile(self, t: Any) -> None:
        # Copy here, on the worker thread: the engine may reuse its buffer for the next tile.
        self.tile.emit(tuple(int(v) for v in t.box), np.array(t.pixels, np.float32, copy=True))


class EnhanceJob(QObject):
    """One Enhance run: owns the thread, re-emits the worker's signals on the UI thread."""

    ready = Signal(object, int, object)
    progress = Signal(int, int, float, float)
    tile = Signal(object, object)
    finished = Signal(object)
    failed = Signal(str, str)
    cancelled = Signal()
    done = Signal()  # after any of finished / failed / cancelled, once the thread has ended

    def __init__(self, request: EnhanceRequest, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.request = request
        self.started_at = 0.0
        self.outcome: str | None = None
        self._cancel = threading.Event()
        self._thread = QThread()
        self._thread.setObjectName("enhance")
        self._worker = EnhanceWorker(request, self._cancel)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.ready.connect(self._on_ready)
        self._worker.progress.connect(self._on_progress)
        self._worker.tile.connect(self._on_tile)
        self._worker.finished.connect(self._on_finished)
        self._worker.failed.connect(self._on_failed)
        self._worker.cancelled.connect(self._on_cancelled)
        self._thread.finished.connect(self._on_thread_finished)

    def start(self) -> None:
        self.started_at = time.perf_counter()
        self._thread.start(QThread.Priority.LowPriority)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def is_running(self) -> bool:
        return self._thread.isRunning()

    def wait(self, ms: int = 30_000) -> bool:
        """Block until the thread ends (closing the window). True when it did."""
        if not self._thread.isRunning():
            return True
        return bool(self._thread.wait(ms))

    def stop(self, ms: int = 30_000) -> bool:
        """Cancel and wait: the current tile finishes, then the thread ends."""
        self._cancel.set()
        return self.wait(ms)

    @Slot(object, int, object)
    def _on_ready(self, enhancer: Any, scale: int, buffer: Any) -> None:
        self.ready.emit(enhancer, scale, buffer)

    @Slot(int, int, float, float)
    def _on_progress(self, done: int, total: int, elapsed: float, eta: float) -> None:
        if not self._cancel.is_set():
            self.progress.emit(done, total, elapsed, eta)

    @Slot(object, object)
    def _on_tile(self, box: Any, pixels: Any) -> None:
        if not self._cancel.is_set():
            self.tile.emit(box, pixels)

    @Slot(object)
    def _on_finished(self, result: Any) -> None:
        self.outcome = "finished"
        self._thread.quit()
        self.finished.emit(result)

    @Slot(str, str)
    def _on_failed(self, message: str, kind: str) -> None:
        self.outcome = "failed"
        self._thread.quit()
        self.failed.emit(message, kind)

    @Slot()
    def _on_cancelled(self) -> None:
        self.outcome = "cancelled"
        self._thread.quit()
        self.cancelled.emit()

    @Slot()
    def _on_thread_finished(self) -> None:
        self.done.emit()
