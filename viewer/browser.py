"""The study browser: patient > study > series > image, filled in the background while scanning.

A ScanWorker on its own QThread iterates engine.io.scan(path), hands images and problems to the
UI thread in batches (so a folder of thousands of files does not flood the event loop), then makes
thumbnails one by one. The tree never parses files: it groups by what engine.io reports.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QSize, Qt, QThread, QTimer, Signal, Slot
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from viewer.context import ImageContext
from viewer.overlay import format_da, format_person_name

THUMB = 72
BATCH_SECONDS = 0.1  # hand found images to the UI at most ~10 times a second
FOLLOW_MS = 150  # the highlighted row loads once the arrow keys rest this long
ROLE_KEY = Qt.ItemDataRole.UserRole


def image_context(image: Any, study: Any = None, series: Any = None) -> ImageContext:
    """Describe an image from engine.io's Study/Series (grouping it alone when not given)."""
    if study is None:
        try:
            from engine import io

            study = io.group([image])[0]
            series = study.series[0]
        except Exception:  # noqa: BLE001 - an image without a study still shows
            return ImageContext(modality=str(getattr(image, "modality", "") or ""))
    return ImageContext(
        patient_name=str(study.patient_name or ""), patient_id=str(study.patient_id or ""),
        birth_date=str(study.birth_date or ""), sex=str(study.sex or ""),
        study_uid=str(study.study_uid or "") or f"study:{study.study_description}",
        study_date=str(study.study_date or ""),
        study_description=str(study.study_description or ""),
        series_uid=str(getattr(series, "series_uid", "") or "")
        or f"series:{getattr(series, 'description', '')}",
        series_number=getattr(series, "number", None),
        series_description=str(getattr(series, "description", "") or ""),
        modality=str(getattr(series, "modality", "") or getattr(image, "modality", "") or ""),
    )


class ScanWorker(QObject):
    """Every signal carries the scan's generation: the browser drops those of a replaced scan
    (queued batches of an old folder must never reach the new folder's tree)."""

    found = Signal(int, object, object)  # generation, [(image, context)], [problem]
    progress = Signal(int, int, int)  # generation, done, total (-1 unknown)
    scanned = Signal(int)  # generation; not sent when the scan was cancelled
    thumbnail = Signal(int, int, QImage)  # generation, image index, thumbnail
    finished = Signal()

    def __init__(self, path: Path, cancel: threading.Event, *, thumbnails: bool = True,
                 generation: int = 0) -> None:
        super().__init__()
        self.path = path
        self.cancel = cancel
        self.thumbnails = thumbnails
        self.generation = generation
        self._images: list[Any] = []

    @Slot()
    def run(self) -> None:
        try:
            self._scan()
            if self.cancel.is_set():
                return  # replaced or closing: the scan did not finish, so never say it did
            self.scanned.emit(self.generation)
            if self.thumbnails:
                self._make_thumbnails()
        finally:
            self.finished.emit()

    def _scan(self) -> None:
        from engine import io

        images: list[tuple[Any, ImageContext]] = []
        problems: list[Any] = []
        last = time.monotonic()
        try:
            for event in io.scan(self.path):
                if self.cancel.is_set():
                    return
                if event.kind == "image" and event.image is not None:
                    images.append((event.image, image_context(event.image)))
                    self._images.append(event.image)
                elif event.kind == "problem" and event.problem is not None:
                    problems.append(event.problem)
                elif event.kind == "progress":
                    total = -1 if event.total is None else event.total
                    self.progress.emit(self.generation, event.done, total)
                if (images or problems) and (time.monotonic() - last > BATCH_SECONDS
                                             or len(self._images) == 1 and images):
                    self.found.emit(self.generation, images, problems)
                    images, problems = [], []
                    last = time.monotonic()
        except Exception as exc:  # noqa: BLE001 - a scan that dies becomes one problem row
            problems.append(_ScanFailure(self.path, f"Scanning stopped: {exc}"))
        if images or problems:
            self.found.emit(self.generation, images, problems)

    def _make_thumbnails(self) -> None:
        from engine import display
        from viewer import decoding

        for index, image in enumerate(self._images):
            if self.cancel.is_set():
                return
            try:
                helper = decoding.needs_helper(image)
                values = decoding.modality_values(image, lane="thumbs")
                step = max(1, min(values.shape) // (THUMB * 2))
                small = values[::step, ::step]
                window = display.auto_window(small, getattr(image, "padding", None))
                frame = display.render(small, window=window,
                                       photometric=image.photometric,
                                       presentation_lut_shape=image.presentation_lut_shape)
                if not helper and hasattr(image, "release"):
                    image.release()  # do not hold every decoded image of a large folder
            except Exception:  # noqa: BLE001, S112 - the problem shows when the image opens
                continue
            from viewer.raster import frame_to_qimage

            qimage = frame_to_qimage(frame)
            row, column = getattr(image, "pixel_aspect", (1.0, 1.0))  # the image's real shape
            shape = QSize(round(qimage.width() * column), round(qimage.height() * row))
            qimage = qimage.scaled(shape.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio),
                                   Qt.AspectRatioMode.IgnoreAspectRatio,
                                   Qt.TransformationMode.SmoothTransformation)
            self.thumbnail.emit(self.generation, index, qimage)


@dataclass(frozen=True)
class _ScanFailure:
    path: Path
    reason: str
    skipped: bool = False


class StudyBrowser(QWidget):
    """Tree of what was found; emits imageActivated(image, context) when a row is chosen."""

    imageActivated = Signal(object, object)
    imagesAdded = Signal(int)  # total images so far
    problemsFound = Signal(object)
    scanFinished = Signal()
    scanProgress = Signal(int, int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tree = QTreeWidget()
        self.tree.setHeaderHidden(True)
        self.tree.setColumnCount(1)
        self.tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.setIconSize(QSize(THUMB, THUMB))
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.itemActivated.connect(self._activated)
        self.tree.itemClicked.connect(self._activated)
        # Arrow keys move the current row: the image follows, debounced so that holding a key
        # down does not decode every image passed on the way (click and Enter load at once).
        self._follow = QTimer(self)
        self._follow.setSingleShot(True)
        self._follow.setInterval(FOLLOW_MS)
        self._follow.timeout.connect(self._follow_current)
        self.tree.currentItemChanged.connect(self._on_current_changed)
        self.status = QLabel("")
        self.status.setObjectName("browserStatus")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tree)
        layout.addWidget(self.status)
        self.images: list[tuple[Any, ImageContext]] = []
        self.problems: list[Any] = []
        self._items: list[QTreeWidgetItem] = []
        self._nodes: dict[tuple, QTreeWidgetItem] = {}
        self._thread: QThread | None = None
        self._worker: ScanWorker | None = None
        # Every scan thread that has not ended yet, the current one included. A QThread must
        # outlive its run (destroying a running one aborts the process), and a cancelled scan
        # ends only at its next check between files, so replaced scans are kept here until
        # their thread says it finished.
        self._running: list[tuple[QThread, ScanWorker]] = []
        self._generation = 0
        self._cancel = threading.Event()
        self.scanning = False
        self.root: Path | None = None

    # -- scanning ------------------------------------------------------------------------------
    def scan(self, path: Path, *, thumbnails: bool = True) -> None:
        """Scan `path`, replacing any scan in progress at once (the old one ends by itself)."""
        self.stop()
        self.clear()
        self.root = path
        self.scanning = True
        self.status.setText(f"Scanning {path.name or path} \N{HORIZONTAL ELLIPSIS}")
        self._generation += 1
        self._cancel = threading.Event()
        thread = QThread()
        thread.setObjectName("scan")
        worker = ScanWorker(path, self._cancel, thumbnails=thumbnails,
                            generation=self._generation)
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.found.connect(self._on_found)
        worker.progress.connect(self._on_progress)
        worker.scanned.connect(self._on_scanned)
        worker.thumbnail.connect(self._on_thumbnail)
        # Direct: the thread ends itself, even while the UI thread is busy or waits for it.
        worker.finished.connect(thread.quit, Qt.ConnectionType.DirectConnection)
        thread.finished.connect(self._reap)
        self._thread, self._worker = thread, worker
        self._running.append((thread, worker))
        thread.start()

    def stop(self) -> None:
        """Cancel the scan in progress without waiting for it: its thread ends at the next file
        (see wait()); whatever it still sends is dropped, being of an old generation."""
        self._cancel.set()
        self._generation += 1
        self._thread = None
        self._worker = None
        self.scanning = False

    def wait(self, ms: int | None = None) -> bool:
        """Wait for every scan thread to end (all of them when ms is None); True when none runs.
        For closing: call stop() first."""
        deadline = None if ms is None else time.monotonic() + ms / 1000
        for thread, _worker in list(self._running):
            thread.quit()  # its event loop ends once the worker's run() has returned
            if deadline is None:
                thread.wait()
            elif not thread.wait(max(0, int((deadline - time.monotonic()) * 1000))):
                return False
        self._reap()
        return not self._running

    def running_threads(self) -> int:
        return len(self._running)

    @Slot()
    def _reap(self) -> None:
        """Let go of scan threads that have ended (a QThread is deleted only once it has)."""
        for entry in list(self._running):
            thread = entry[0]
            if thread.isFinished() and thread.wait(1000):
                self._running.remove(entry)
                if thread is self._thread:
                    self._thread = self._worker = None

    def clear(self) -> None:
        self._follow.stop()
        self.tree.clear()
        self.images.clear()
        self.problems.clear()
        self._items.clear()
        self._nodes.clear()

    @Slot(int, object, object)
    def _on_found(self, generation: int, images: list, problems: list) -> None:
        if generation != self._generation:
            return  # sent by a scan that has been replaced
        first = not self.images
        for image, context in images:
            self._add(image, context)
        if problems:
            self.problems.extend(problems)
            self.problemsFound.emit(problems)
        if images:
            self.imagesAdded.emit(len(self.images))
            if first:
                self.tree.expandAll()
        self._update_status()

    @Slot(int, int, int)
    def _on_progress(self, generation: int, done: int, total: int) -> None:
        if generation != self._generation:
            return
        self.scanProgress.emit(done, total)
        suffix = f" {done}/{total}" if total > 0 else f" {done}"
        self.status.setText(f"Scanning\N{HORIZONTAL ELLIPSIS}{suffix} files")

    @Slot(int)
    def _on_scanned(self, generation: int) -> None:
        if generation != self._generation:
            return
        self.scanning = False
        self.tree.expandAll()
        self._update_status()
        self.scanFinished.emit()

    @Slot(int, int, QImage)
    def _on_thumbnail(self, generation: int, index: int, qimage: QImage) -> None:
        if generation != self._generation or not 0 <= index < len(self._items):
            return
        pixmap = QPixmap.fromImage(qimage)
        icon = QIcon()
        # The same picture when the row is selected: Qt would otherwise tint the thumbnail with
        # the selection colour, which misrepresents the image's grey levels.
        for mode in (QIcon.Mode.Normal, QIcon.Mode.Selected, QIcon.Mode.Active):
            icon.addPixmap(pixmap, mode)
        self._items[index].setIcon(0, icon)

    def _update_status(self) -> None:
        n = len(self.images)
        skipped = sum(1 for p in self.problems if getattr(p, "skipped", False))
        failed = len(self.problems) - skipped
        text = f"{n} image{'s' * (n != 1)}"
        if failed:
            text += f", {failed} file{'s' * (failed != 1)} not opened"
        if skipped:
            text += f", {skipped} other file{'s' * (skipped != 1)} skipped"
        self.status.setText(text + (" \N{HORIZONTAL ELLIPSIS}" if self.scanning else ""))

    # -- tree ----------------------------------------------------------------------------------
    def _add(self, image: Any, ctx: ImageContext) -> None:
        patient = self._node(("p", ctx.patient_key), None, _patient_text(ctx))
        study = self._node(("s", ctx.patient_key, ctx.study_uid), patient, _study_text(ctx))
        series = self._node(("r", ctx.patient_key, ctx.study_uid, ctx.series_uid), study,
                            _series_text(ctx))
        item = QTreeWidgetItem(series, [str(getattr(image, "label", "") or Path(image.path).name)])
        item.setData(0, ROLE_KEY, len(self.images))
        item.setToolTip(0, str(Path(image.path).name))
        self.images.append((image, ctx))
        self._items.append(item)

    def _node(self, key: tuple, parent: QTreeWidgetItem | None, text: str) -> QTreeWidgetItem:
        node = self._nodes.get(key)
        if node is None:
            node = QTreeWidgetItem([text])
            node.setFlags(node.flags() & ~Qt.ItemFlag.ItemIsSelectable)
            if parent is None:
                self.tree.addTopLevelItem(node)
            else:
                parent.addChild(node)
            node.setExpanded(True)
            self._nodes[key] = node
        return node

    def _on_current_changed(self, current: QTreeWidgetItem | None, _previous: object) -> None:
        if current is not None and current.data(0, ROLE_KEY) is not None:
            self._follow.start()  # restarts while the key repeats
        else:
            self._follow.stop()

    def _follow_current(self) -> None:
        item = self.tree.currentItem()
        if item is not None:
            self._activated(item)

    def _activated(self, item: QTreeWidgetItem, _column: int = 0) -> None:
        index = item.data(0, ROLE_KEY)
        if index is None:
            return
        self._follow.stop()  # a click or Enter loaded it already
        image, ctx = self.images[int(index)]
        self.imageActivated.emit(image, ctx)

    def select_index(self, index: int) -> None:
        if 0 <= index < len(self._items):
            self.tree.setCurrentItem(self._items[index])
            self._activated(self._items[index])

    def current_index(self) -> int | None:
        item = self.tree.currentItem()
        value = item.data(0, ROLE_KEY) if item is not None else None
        return None if value is None else int(value)


def _patient_text(ctx: ImageContext) -> str:
    name = format_person_name(ctx.patient_name) or "(no name)"
    return f"{name}  {ctx.patient_id}".strip()


def _study_text(ctx: ImageContext) -> str:
    parts = [format_da(ctx.study_date), ctx.study_description or "(no description)"]
    return "  ".join(p for p in parts if p)


def _series_text(ctx: ImageContext) -> str:
    number = f"#{ctx.series_number} " if ctx.series_number is not None else ""
    return f"{ctx.modality} {number}{ctx.series_description}".strip() or "Series"
