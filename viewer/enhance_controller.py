"""Enhance as the user sees it: start, progress with ETA, cancel, tiles arriving, errors.

Owns at most one EnhanceJob. Tiles are pasted into the document's enhanced layer as they arrive,
so the picture fills in tile by tile; the UI thread only copies and repaints.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal, Slot

from viewer.raster import Box
from viewer.worker import EnhanceJob, EnhanceRequest


class EnhanceController(QObject):
    started = Signal()
    progress = Signal(int, int, float, float)  # done, total, elapsed, eta (-1 unknown)
    tilePasted = Signal(object)  # box in output coordinates of the region
    finished = Signal(object)  # EnhanceResult
    failed = Signal(str, str)  # one sentence, the exception's class name
    cancelled = Signal()
    ended = Signal(str)  # "finished" | "failed" | "cancelled", after the thread has stopped

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.job: EnhanceJob | None = None
        # Earlier jobs whose outcome is known but whose thread may not have ended yet: kept
        # alive (deleting a job destroys its QThread) until their `done` arrives.
        self._retired: list[EnhanceJob] = []
        self.document: Any = None
        self.region: Box | None = None
        self.scale = 4
        self.enhancer: Any = None
        self.last_result: Any = None
        self.last_error = ""
        self.tiles_received = 0
        self.started_at = 0.0
        self.max_tile_ms = 0.0  # longest UI-thread time spent on one tile (paste + invalidate)

    def is_running(self) -> bool:
        return self.job is not None and self.job.outcome is None

    def start(self, document: Any, request: EnhanceRequest) -> bool:
        if self.is_running():
            return False
        self.document = document
        self.region = request.region or (0, 0, document.rows, document.columns)
        self.tiles_received = 0
        self.last_error = ""
        self.started_at = time.perf_counter()
        old = self.job
        if old is not None:
            if old.is_running():
                # Its outcome is known, but its thread is still finishing: deleting the job
                # now would destroy a running QThread. It goes when its `done` arrives.
                self._retired.append(old)
            else:
                old.deleteLater()
        job = EnhanceJob(request, self)
        job.ready.connect(self._on_ready)
        job.progress.connect(self.progress)
        job.tile.connect(self._on_tile)
        job.finished.connect(self._on_finished)
        job.failed.connect(self._on_failed)
        job.cancelled.connect(self._on_cancelled)
        job.done.connect(partial(self._on_done, job))  # each job's done with its own outcome
        self.job = job
        job.start()
        self.started.emit()
        return True

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def wait(self, ms: int = 30_000) -> bool:
        return True if self.job is None else self.job.wait(ms)

    def detach(self) -> None:
        """The image changed: stop the run and ignore whatever it still sends.

        The document keeps no half-finished layer: once detached, the cancel no longer reaches
        it (it would be left with part of the tiles, and B would flip to them when the new
        image fails to load). A complete earlier enhancement (the model was still loading)
        stays."""
        document = self.document
        running = self.is_running()
        self.cancel()
        self.document = None
        if running and document is not None and document.enhanced is not None \
                and not document.enhanced.complete:
            document.drop_enhanced()

    def shutdown(self, ms: int | None = None) -> bool:
        """Cancel and wait for every thread (closing the window). True when all have ended.

        ms=None waits as long as it takes: the cancel is checked between tiles, so this is at
        most the current tile, and a QThread destroyed while it runs aborts the process."""
        self.document = None
        for job in self._jobs():
            job.cancel()
        deadline = None if ms is None else time.perf_counter() + ms / 1000
        for job in self._jobs():
            while not job.wait(1000 if deadline is None else
                               max(0, int((deadline - time.perf_counter()) * 1000))):
                if deadline is not None and time.perf_counter() >= deadline:
                    return False
        return True

    def _jobs(self) -> list[EnhanceJob]:
        return [*self._retired, *([self.job] if self.job is not None else [])]

    # -- job signals ---------------------------------------------------------------------------
    @Slot(object, int, object)
    def _on_ready(self, enhancer: Any, scale: int, buffer: Any) -> None:
        self.enhancer = enhancer
        self.scale = int(scale)
        if self.document is not None and self.region is not None:
            self.document.begin_enhanced(self.region, self.scale, buffer)

    @Slot(object, object)
    def _on_tile(self, box: Any, pixels: Any) -> None:
        if self.document is None or self.region is None:
            return
        t0 = time.perf_counter()
        box = self._region_box(tuple(box))
        pasted = self.document.paste_tile(box, pixels)
        self.tiles_received += 1
        self.max_tile_ms = max(self.max_tile_ms, (time.perf_counter() - t0) * 1000)
        if pasted is not None:
            self.tilePasted.emit(pasted)

    def _region_box(self, box: Box) -> Box:
        """engine.sr gives tile boxes in output coordinates of the whole image; the enhanced
        layer holds only the region, so shift them by the region's origin."""
        y0r, x0r = self.region[:2]  # type: ignore[index]
        dy, dx = y0r * self.scale, x0r * self.scale
        return (box[0] - dy, box[1] - dx, box[2] - dy, box[3] - dx)

    @Slot(object)
    def _on_finished(self, result: Any) -> None:
        self.last_result = result
        if self.document is not None:
            image = np.asarray(result.image, np.float32)
            self.document.finish_enhanced(image, result)
        self.finished.emit(result)

    @Slot(str, str)
    def _on_failed(self, message: str, kind: str) -> None:
        self.last_error = message
        if self.document is not None:
            self.document.drop_enhanced()
        self.failed.emit(message, kind)

    @Slot()
    def _on_cancelled(self) -> None:
        if self.document is not None:
            self.document.drop_enhanced()
        self.cancelled.emit()

    def _on_done(self, job: EnhanceJob) -> None:
        if job is not self.job:
            # A previous run whose thread ended after the next run started: its outcome was
            # reported already; saying "ended" now would end the new run's progress in the UI.
            if job in self._retired:
                self._retired.remove(job)
            job.deleteLater()  # its thread has ended
            return
        self.ended.emit(job.outcome or "cancelled")
