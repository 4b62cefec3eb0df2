"""The main window: menus and shortcuts, the study browser, the image area and Enhance."""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QPointF, QSettings, Qt, QUrl, Signal, Slot
from PySide6.QtGui import (
    QCloseEvent,
    QDesktopServices,
    QDragEnterEvent,
    QDropEvent,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine import __version__, display
from viewer import decoding, theme
from viewer import settings as settings_mod
from viewer.actions import PRESET_KEYS, build_actions, build_menus
from viewer.browser import StudyBrowser, image_context
from viewer.canvas import ImageCanvas, Tool
from viewer.compare import CompareView
from viewer.context import ImageContext
from viewer.dialogs import AboutDialog, HelpDialog, SettingsDialog, model_title
from viewer.document import ImageDocument
from viewer.enhance_controller import EnhanceController
from viewer.export import FORMATS, copy_to_clipboard, export_enhanced, kind_for
from viewer.messagebar import MessageBar
from viewer.overlay import AI_MARK, OverlayInfo, corner_lines
from viewer.problems import ProblemsDock
from viewer.ruler import Measurement, ruler_label, spacing_text
from viewer.tasks import run_in_background, wait_for_background
from viewer.view import ViewTransform
from viewer.worker import EnhanceRequest

SLOW_HINT_S = 90.0  # an Enhance expected to run longer than this suggests the quicker ways


class MainWindow(QMainWindow):
    documentLoaded = Signal(object)  # ImageDocument
    loadFailed = Signal(str)
    differenceReady = Signal()

    def __init__(self, store: QSettings | None = None, *, model_override: Any = None) -> None:
        super().__init__()
        self.store = store if store is not None else settings_mod.open_store()
        self.settings = settings_mod.load(self.store)
        self.model_override = model_override  # a path or nn.Module (tests, --model)
        # Command-line settings for this session (set_overrides): name -> (override, stored).
        self._overrides: dict[str, tuple[Any, Any]] = {}
        self.setWindowTitle("CXR Enhance")
        self.setAcceptDrops(True)
        self.resize(1400, 900)

        self.view = ViewTransform(self)
        self.compare = CompareView(self.view)
        self.message = MessageBar()
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.message)
        layout.addWidget(self.compare, 1)
        self.setCentralWidget(central)

        self.browser = StudyBrowser()
        self.browser_dock = QDockWidget("Studies", self)
        self.browser_dock.setObjectName("studiesDock")
        self.browser_dock.setWidget(self.browser)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.browser_dock)
        self.problems = ProblemsDock(self)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.problems)
        self.problems.hide()

        self.document: ImageDocument | None = None
        self.context: ImageContext | None = None
        self.cursor: QPointF | None = None
        self.enhance = EnhanceController(self)
        self._loading: Any = None
        self._open_first = True
        self._difference_for: Any = None  # the EnhancedState a difference is being made for
        self._slow_hint_shown = False  # the "this will take a while" hint, once per Enhance run

        self._build_status_bar()
        self.actions_by_name = build_actions(self)
        self.recent_menu, self.window_menu = build_menus(self, self.actions_by_name)
        self.window_menu.aboutToShow.connect(self._fill_window_menu)
        self._fill_recent_menu()
        self._wire()
        self.apply_settings()
        self._set_tool(Tool.WINDOW)
        self._restore_geometry()
        self.compare.primary.placeholder = ("Open a study: File > Open, or drop files or a "
                                            "folder here.")

    # ================================================================== construction
    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setTextVisible(True)
        self.progress.hide()
        self.eta = QLabel()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.hide()
        self.cancel_button.clicked.connect(self.cancel_enhance)
        self.device_label = QLabel("Device: \N{EM DASH}")
        self.model_label = QLabel("Model: default")
        self.time_label = QLabel("")
        for w in (self.progress, self.eta, self.cancel_button):
            bar.addWidget(w)
        for w in (self.model_label, self.device_label, self.time_label):
            bar.addPermanentWidget(w)

    def _wire(self) -> None:
        for canvas in self.compare.canvases:
            canvas.windowDragged.connect(self._on_window_drag)
            canvas.cursorMoved.connect(self._on_cursor)
            canvas.overlay_provider = self._overlay
            canvas.ruler_label = self._ruler_label
        self.compare.secondary.measurements = self.compare.primary.measurements  # one list
        self.browser.imageActivated.connect(self.show_image)
        self.browser.imagesAdded.connect(self._on_images_added)
        self.browser.problemsFound.connect(self._on_problems)
        self.enhance.started.connect(self._on_enhance_started)
        self.enhance.progress.connect(self._on_enhance_progress)
        self.enhance.tilePasted.connect(self._on_tile_pasted)
        self.enhance.finished.connect(self._on_enhance_finished)
        self.enhance.failed.connect(self._on_enhance_failed)
        self.enhance.cancelled.connect(self._on_enhance_cancelled)
        self.enhance.ended.connect(self._on_enhance_ended)
        self.view.changed.connect(self._repaint)

    # ================================================================== settings / theme
    def apply_settings(self) -> None:
        theme.apply(QApplication.instance(), self.settings.theme)
        smooth = self.settings.interpolation == "smooth"
        background = theme.canvas_background(self.settings.theme)
        for canvas in self.compare.canvases:
            canvas.smooth = smooth
            canvas.background = background
        self.actions_by_name["theme"].setChecked(self.settings.theme == "light")
        self.model_label.setText(f"Model: {self._model_name_for_status()}")
        self._repaint()

    def set_overrides(self, **values: Any) -> None:
        """Use these settings for this session only (--theme, --device, --tile, --scope): they
        are never saved. Changing one here afterwards (Settings, the theme key) is the user's
        own choice again, and is saved as usual."""
        for name, value in values.items():
            stored = self._overrides.get(name, (None, getattr(self.settings, name)))[1]
            self._overrides[name] = (value, stored)
            setattr(self.settings, name, value)
        self.apply_settings()

    def save_settings(self) -> None:
        stored = dataclasses.replace(self.settings, recent=list(self.settings.recent))
        for name, (value, before) in list(self._overrides.items()):
            if getattr(self.settings, name) == value:
                setattr(stored, name, before)  # still the session's override: keep the user's
            else:
                del self._overrides[name]  # changed in the window since: save the new choice
        settings_mod.save(stored, self.store)

    def _model_name_for_status(self) -> str:
        if self.model_override is not None:
            return Path(str(self.model_override)).name if isinstance(
                self.model_override, str | Path) else type(self.model_override).__name__
        chosen = self._settings_model()
        return chosen and Path(chosen).name or "default"

    def _settings_model(self) -> str | None:
        """The model chosen in Settings, or None for the default, also when the chosen one is
        no longer installed (a removed user model must not stop Enhance; About says so). Reads
        model cards only, never weights, so it is quick enough for the UI thread."""
        chosen = self.settings.model
        if not chosen:
            return None
        try:
            from engine.sr import registry
        except Exception:  # noqa: BLE001 - cannot tell: let Enhance try it and say what it finds
            return chosen
        try:
            path = Path(chosen).expanduser()
            if path.suffix.lower() in (".json", *registry.WEIGHT_SUFFIXES) or path.is_file():
                return chosen if path.is_file() else None  # a damaged file: Enhance says so
            registry.find_model(chosen)  # the same name/title matching Enhance will do
        except registry.NoModelInstalled:
            return chosen  # nothing installed at all: Enhance says where to put a model
        except registry.ModelNotFound:
            return None
        except Exception:  # noqa: BLE001 - cannot tell: let Enhance try it and say what it finds
            return chosen
        return chosen

    def toggle_theme(self) -> None:
        self.settings.theme = "light" if self.settings.theme == "dark" else "dark"
        self.apply_settings()
        self.save_settings()

    def settings_dialog(self) -> None:
        dialog = SettingsDialog(self.settings, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)  # one per opening, not kept
        if dialog.exec():
            new = dialog.result_settings()
            if (new.model, new.device, new.precision, new.tile) != (
                    self.settings.model, self.settings.device, self.settings.precision,
                    self.settings.tile):
                from viewer.worker import clear_enhancers

                clear_enhancers()
            self.settings = new
            self.apply_settings()
            self.save_settings()

    # ================================================================== opening
    def open_file_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open image", self._start_dir(),
            "Images (*.dcm *.dicom *.ima *.png *.jpg *.jpeg *.tif *.tiff *.zip DICOMDIR);;"
            "All files (*)")
        if path:
            self.open_path(path)

    def open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open folder", self._start_dir())
        if path:
            self.open_path(path)

    def open_dicomdir_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open DICOMDIR", self._start_dir(),
                                              "DICOMDIR (DICOMDIR dicomdir);;All files (*)")
        if path:
            self.open_path(path)

    def _start_dir(self) -> str:
        return str(Path(self.settings.recent[0]).parent) if self.settings.recent else ""

    def open_samples(self) -> None:
        from engine.resources import samples_dir

        self.open_path(samples_dir(), remember=False)

    def open_path(self, path: str | Path, *, remember: bool = True,
                  thumbnails: bool = True) -> None:
        path = Path(path).expanduser()
        if not path.exists():
            self.message.show_message(f"{path} does not exist; choose another file or folder.",
                                      action="Open\N{HORIZONTAL ELLIPSIS}",
                                      callback=self.open_file_dialog)
            return
        if remember:
            self.settings.add_recent(path)
            self.save_settings()
            self._fill_recent_menu()
        self.message.hide()
        self.problems.clear()
        self.problems.hide()  # an empty list says nothing; it shows again if this folder has some
        self._open_first = True
        self.setWindowTitle(f"CXR Enhance \N{EM DASH} {path.name or path}")
        self.browser.scan(path, thumbnails=thumbnails)

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for entry in self.settings.recent:
            action = self.recent_menu.addAction(entry)
            action.triggered.connect(lambda _=False, p=entry: self.open_path(p))
        self.recent_menu.setEnabled(bool(self.settings.recent))

    @Slot(int)
    def _on_images_added(self, count: int) -> None:
        if self._open_first and count:
            self._open_first = False
            self.browser.select_index(0)

    @Slot(object)
    def _on_problems(self, problems: list) -> None:
        self.problems.add(problems)
        if any(not getattr(p, "skipped", False) for p in problems):
            self.problems.show()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            # Several dropped files: open their common folder (the browser lists all of it).
            target = paths[0] if len(paths) == 1 else str(Path(paths[0]).parent)
            self.open_path(target)
            event.acceptProposedAction()

    # ================================================================== showing an image
    @Slot(object, object)
    def show_image(self, image: Any, context: ImageContext | None = None) -> None:
        """Decode off the UI thread, then show with the file's first window."""
        if self._loading is image:
            return  # already shown or on its way: clicking it again must not cancel Enhance
        self.enhance.detach()
        self._loading = image
        ctx = context or image_context(image)

        def load() -> tuple[Any, Any]:
            values = decoding.modality_values(image, lane="view")
            return values, display.image_windows(image, values)

        def done(result: tuple[Any, Any]) -> None:
            if self._loading is not image:
                return  # the user picked another image meanwhile
            values, windows = result
            self._set_document(ImageDocument(image, values, windows=windows), ctx)

        def failed(exc: BaseException) -> None:
            if self._loading is image:
                self._loading = None  # a click on it tries again
                text = str(exc) or exc.__class__.__name__
                if isinstance(exc, decoding.DecodeStopped):
                    return  # closing: nobody is waiting for this image any more
                if isinstance(exc, decoding.DecodeTimeout):
                    self.message.show_message(text)  # a whole sentence already
                else:
                    self.message.show_message(f"This image cannot be shown: {text}")
                self.loadFailed.emit(text)

        run_in_background(load, done, failed)

    def _set_document(self, document: ImageDocument, context: ImageContext) -> None:
        old = self.document
        if old is not None:
            old.displayChanged.disconnect(self._repaint)
            old.enhancedChanged.disconnect(self._on_enhanced_changed)
        self.document = document
        self.context = context
        document.displayChanged.connect(self._repaint)
        document.enhancedChanged.connect(self._on_enhanced_changed)
        self.compare.primary.measurements.clear()
        self.view.set_image_size(document.columns, document.rows,
                                 getattr(document.image, "pixel_aspect", (1.0, 1.0)))
        if self.compare.mode != "ab":
            self.compare.set_mode("ab")
        self.compare.primary.show_top = False
        self.compare.set_document(document)
        self.time_label.setText("")
        self.documentLoaded.emit(document)

    @Slot()
    def _on_enhanced_changed(self) -> None:
        self.compare.refresh_layers()
        self._repaint()

    @Slot()
    def _repaint(self) -> None:
        for canvas in self.compare.canvases:
            if canvas.isVisible():
                canvas.update()

    # ================================================================== reading tools
    def _set_tool(self, tool: Tool) -> None:
        for canvas in self.compare.canvases:
            canvas.tool = tool
        self.actions_by_name[f"tool_{tool.value}"].setChecked(True)

    def one_to_one(self) -> None:
        """1:1 pixels: one image pixel per device pixel of the screen the image is on."""
        self.view.one_to_one(self.compare.primary.devicePixelRatioF())

    def zoom_by(self, factor: float) -> None:
        canvas = self.compare.primary
        self.view.zoom_by(factor, canvas.size_f())

    def reset_view(self) -> None:
        self.view.reset()
        if self.document is not None:
            self.document.invert = False
            self.document.set_preset(0)

    def toggle_invert(self) -> None:
        if self.document is not None:
            self.document.toggle_invert()

    def apply_preset(self, index: int) -> None:
        if self.document is not None and not self.document.set_preset(index):
            self.statusBar().showMessage(f"This image has no window preset {index + 1}.", 3000)

    def apply_named_window(self, explanation: str) -> None:
        doc = self.document
        if doc is None:
            return
        for i, w in enumerate(doc.windows):
            if w.explanation == explanation:
                doc.set_preset(i)
                return

    def clear_measurements(self) -> None:
        self.compare.primary.measurements.clear()
        self._repaint()

    @Slot(float, float)
    def _on_window_drag(self, dx: float, dy: float) -> None:
        if self.document is None:
            return
        s = self.settings
        self.document.drag_window(-dx if s.drag_reverse_width else dx,
                                  -dy if s.drag_reverse_level else dy, speed=s.drag_sensitivity)

    @Slot(object)
    def _on_cursor(self, point: QPointF | None) -> None:
        self.cursor = point
        for canvas in self.compare.canvases:
            if canvas.isVisible():
                canvas.update_corner("bl")

    def _ruler_label(self, m: Measurement) -> str:
        if self.document is None:
            return ""
        image = self.document.image
        return ruler_label(m.start, m.end, getattr(image, "pixel_spacing", None),
                           getattr(image, "spacing_source", "none"))

    def _fill_window_menu(self) -> None:
        menu = self.window_menu
        menu.clear()
        doc = self.document
        if doc is None:
            menu.addAction("(no image)").setEnabled(False)
            return
        for i, w in enumerate(doc.windows):
            key = f"  [{i + 1}]" if i < PRESET_KEYS else ""
            text = f"{w.explanation or 'Window'}: WC {w.center:.0f} / WW {w.width:.0f}{key}"
            act = menu.addAction(text)
            act.setCheckable(True)
            act.setChecked(doc.window_index == i)
            act.triggered.connect(lambda _=False, i=i: self.apply_preset(i))
        menu.addSeparator()
        menu.addAction(self.actions_by_name["invert"])

    # ================================================================== overlay
    def overlay_info(self, canvas: ImageCanvas) -> OverlayInfo:
        doc, ctx = self.document, self.context or ImageContext()
        assert doc is not None
        image = doc.image
        showing = self.compare.showing(canvas)
        info = OverlayInfo(
            context=ctx, image_label=str(getattr(image, "label", "")),
            columns=doc.columns, rows=doc.rows,
            spacing=spacing_text(getattr(image, "pixel_spacing", None),
                                 getattr(image, "spacing_source", "none"),
                                 getattr(image, "pixel_aspect", (1.0, 1.0))),
            lossy=bool(getattr(image, "lossy", False)),
            window_center=float(doc.window.center), window_width=float(doc.window.width),
            window_name=doc.window.explanation, invert=doc.invert,
            # Zoom % counts device pixels per image pixel, like 1:1 (= 100%): on a 2x HiDPI
            # screen 100% is 0.5 logical pixels per image pixel, every pixel shown once.
            zoom=self.view.effective_zoom(canvas.size_f()) * canvas.devicePixelRatioF(),
            rotation=self.view.rotation,
            flip_h=self.view.flip_h, flip_v=self.view.flip_v, showing=showing,
        )
        if showing == "diff":
            info.difference_span = doc.difference_span
        if doc.enhanced is not None:
            info.scale = doc.enhanced.scale
            h, w = doc.enhanced.values.shape
            info.enhanced_size = (w, h)
        if self.cursor is not None and canvas.underMouse():
            enhanced = self._enhanced_under_cursor(canvas, showing) and doc.has_enhanced
            value = doc.value_at(self.cursor.x(), self.cursor.y(), enhanced=enhanced)
            if value is not None:
                info.cursor_value = (f"({int(self.cursor.x())}, {int(self.cursor.y())})  "
                                     f"{value:.1f}")
                if showing == "split":  # two layers on screen: say which one was read
                    info.cursor_value += "  enhanced" if enhanced else "  original"
        return info

    def _enhanced_under_cursor(self, canvas: ImageCanvas, showing: str) -> bool:
        """Whether the layer drawn under the cursor is the enhanced one. In split view the
        enhanced layer is drawn right of the divider (canvas.split, a fraction of the width)."""
        if showing in ("enhanced", "side"):
            return True
        divider = canvas.divider_x()
        if showing != "split" or divider is None or self.cursor is None:
            return False
        return canvas.image_to_widget().map(self.cursor).x() >= divider

    def _overlay(self, canvas: ImageCanvas) -> tuple[dict[str, list[str]], str | None]:
        info = self.overlay_info(canvas)
        mark = AI_MARK.format(scale=info.scale) if info.ai_enhanced else None
        if info.showing == "diff":
            mark = f"AI DIFFERENCE x{info.scale} \N{EN DASH} not for diagnosis"
        return corner_lines(info), mark

    # ================================================================== compare
    def toggle_ab(self) -> None:
        if self.document is None or self.document.enhanced_layer is None:
            self.statusBar().showMessage("Nothing to compare yet: press E to Enhance.", 3000)
            return
        self.compare.toggle_ab()
        self._repaint()

    def set_compare(self, mode: str) -> None:
        if mode != "ab" and (self.document is None or not self.document.has_enhanced):
            self.statusBar().showMessage("Compare needs an enhanced image: press E first.", 3000)
            return
        self.compare.set_mode(mode)
        if mode == "diff" and self.document is not None and self.document.difference_layer is None:
            self._compute_difference()
        self._repaint()

    def _compute_difference(self) -> None:
        """One computation at a time. A request made while an outdated one (an earlier
        enhancement or image) still runs is not lost: when that one ends, the difference for
        what Difference mode shows then is started (_difference_wanted)."""
        doc = self.document
        if doc is None or doc.enhanced is None or self._difference_for is not None:
            return
        state = doc.enhanced
        y0, x0, y1, x1 = state.region
        original = doc.values[y0:y1, x0:x1]
        self._difference_for = state
        self.statusBar().showMessage("Computing the difference image\N{HORIZONTAL ELLIPSIS}")

        def done(diff: Any) -> None:
            self._difference_for = None
            self.statusBar().clearMessage()
            if self.document is doc and doc.enhanced is state:
                doc.set_difference(diff)
                self.compare.refresh_layers()
                self.differenceReady.emit()
            else:
                self._difference_wanted()

        def failed(exc: BaseException) -> None:
            self._difference_for = None
            self.statusBar().clearMessage()
            if self.document is doc and doc.enhanced is state:
                self.message.show_message(f"The difference image could not be made: {exc}")
            else:
                self._difference_wanted()

        def compute() -> Any:
            from engine.evaluation import difference_from_bicubic  # scikit-image: load on first use

            return difference_from_bicubic(original, state.values, state.scale)

        run_in_background(compute, done, failed)

    def _difference_wanted(self) -> None:
        """Start the difference Difference mode waits for, if it does (an outdated one ended)."""
        doc = self.document
        if self.compare.mode == "diff" and doc is not None and doc.has_enhanced \
                and doc.difference_layer is None:
            self._compute_difference()

    # ================================================================== enhance
    def enhance_region(self, scope: str) -> tuple[int, int, int, int] | None:
        """None = the whole image; else the visible part, (y0, x0, y1, x1) in input pixels."""
        doc = self.document
        if doc is None or scope != "visible":
            return None
        r = self.view.visible_image_rect(self.compare.primary.size_f())
        y0, x0 = max(0, math.floor(r.top())), max(0, math.floor(r.left()))
        y1, x1 = min(doc.rows, math.ceil(r.bottom())), min(doc.columns, math.ceil(r.right()))
        if y1 - y0 < 8 or x1 - x0 < 8:
            return None
        if (y0, x0, y1, x1) == (0, 0, doc.rows, doc.columns):
            return None
        return (y0, x0, y1, x1)

    def enhance_request(self, scope: str | None = None) -> EnhanceRequest:
        assert self.document is not None
        s = self.settings
        model = self.model_override if self.model_override is not None else self._settings_model()
        return EnhanceRequest(values=self.document.values,
                              region=self.enhance_region(scope or s.scope), model=model,
                              device=s.device, precision=s.precision, tile=s.tile,
                              overlap=s.overlap, threads=s.threads,
                              inverted=self.document.shows_inverted,
                              image=self.document.image)

    def start_enhance(self, scope: str | None = None) -> bool:
        if self.document is None:
            self.statusBar().showMessage("Open an image first.", 3000)
            return False
        if self.enhance.is_running():
            self.statusBar().showMessage("Enhance is already running.", 3000)
            return False
        self.message.hide()
        if self.compare.mode in ("diff",):
            self.compare.set_mode("ab")
        started = self.enhance.start(self.document, self.enhance_request(scope))
        if started and self.model_override is None and self.settings.model \
                and self._settings_model() is None:
            self.statusBar().showMessage(
                f"The model chosen in Settings, {self.settings.model}, is no longer installed; "
                "enhancing with the default model.", 8000)
        return started

    def cancel_enhance(self) -> None:
        if self.enhance.is_running():
            self.enhance.cancel()
            self.eta.setText("Cancelling\N{HORIZONTAL ELLIPSIS}")

    @Slot()
    def _on_enhance_started(self) -> None:
        self._slow_hint_shown = False
        self.progress.setRange(0, 0)  # busy until the model has loaded
        self.progress.show()
        self.cancel_button.show()
        self.eta.setText("Loading the model\N{HORIZONTAL ELLIPSIS}")
        self.actions_by_name["enhance"].setEnabled(False)
        if self.compare.mode == "ab":
            self.compare.primary.show_top = True  # watch the tiles arrive

    @Slot(int, int, float, float)
    def _on_enhance_progress(self, done: int, total: int, elapsed: float, eta: float) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)
        self.progress.setFormat("Enhance %v/%m tiles")
        left = f", about {_duration(eta)} left" if eta >= 0 and done < total else ""
        self.eta.setText(f"{_duration(elapsed)} elapsed{left}")
        if eta > SLOW_HINT_S and done < total and not self._slow_hint_shown:
            self._slow_hint_shown = True  # once per run: a hint, not a nag
            self.message.show_message(
                f"Enhance needs about {_duration(eta)} more on this machine. Press Escape to "
                "cancel, then Shift+E enhances only the visible region, or choose the Fast model "
                "in Settings (about 20x quicker).", level="info",
                action="Settings\N{HORIZONTAL ELLIPSIS}", callback=self.settings_dialog)

    @Slot(object)
    def _on_tile_pasted(self, box: Any) -> None:
        doc = self.document
        if doc is None or doc.enhanced_layer is None:
            return
        rect = doc.enhanced_layer.box_to_image(box)
        for canvas in self.compare.canvases:
            if canvas.isVisible():
                canvas.update_image_rect(rect)

    @Slot(object)
    def _on_enhance_finished(self, result: Any) -> None:
        device = str(getattr(result, "device", "?"))
        precision = str(getattr(result, "precision", ""))
        self.device_label.setText(f"Device: {device}{' ' + precision if precision else ''}")
        self.model_label.setText(f"Model: {getattr(result, 'model_name', '?')}")
        self.time_label.setText(f"Enhanced in {_duration(float(getattr(result, 'seconds', 0)))} "
                                f"at {time.strftime('%H:%M')}")
        if self.compare.mode == "diff":
            self._compute_difference()

    @Slot(str, str)
    def _on_enhance_failed(self, message: str, kind: str) -> None:
        self.compare.primary.show_top = False
        if kind == "NoModelInstalled":
            self.message.show_message(message, action="Open the models folder",
                                      callback=self.open_models_folder)
        else:
            self.message.show_message(message, action="Settings\N{HORIZONTAL ELLIPSIS}",
                                      callback=self.settings_dialog)

    def open_models_folder(self) -> None:
        from engine.sr import registry

        folder = registry.install_dir()
        folder.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    @Slot()
    def _on_enhance_cancelled(self) -> None:
        self.compare.primary.show_top = False
        self.statusBar().showMessage("Enhance cancelled.", 4000)

    @Slot(str)
    def _on_enhance_ended(self, _outcome: str) -> None:
        self.progress.hide()
        self.cancel_button.hide()
        self.eta.setText("")
        self.actions_by_name["enhance"].setEnabled(True)
        self.compare.refresh_layers()
        self._repaint()

    # ================================================================== export
    def export_dialog(self) -> None:
        doc = self.document
        if doc is None or not doc.has_enhanced:
            self.statusBar().showMessage("Nothing to export yet: press E to Enhance.", 3000)
            return
        stem = Path(str(doc.image.path)).stem + "_enhanced_x4"
        start = str(Path(self._start_dir() or ".") / stem)
        path, chosen = QFileDialog.getSaveFileName(self, "Export enhanced image", start,
                                                   ";;".join(f[0] for f in FORMATS))
        if path:
            self.export_to(path, kind_for(chosen, path))

    def export_to(self, path: str | Path, kind: str) -> Path | None:
        assert self.document is not None
        try:
            written = export_enhanced(self.document, path, kind)
        except Exception as exc:  # noqa: BLE001 - one sentence in the bar
            self.message.show_message(f"Export failed: {exc}")
            return None
        self.statusBar().showMessage(f"Saved {written}", 6000)
        return written

    def copy_image(self) -> None:
        doc = self.document
        if doc is None:
            return
        enhanced = self.compare.showing(self.compare.primary) != "original"
        copy_to_clipboard(doc, enhanced=enhanced and doc.has_enhanced)
        self.statusBar().showMessage("Copied the image as shown.", 3000)

    # ================================================================== help / about
    def shortcut_rows(self) -> list[tuple[str, str]]:
        rows = []
        for action in self.actions_by_name.values():
            keys = ", ".join(k.toString(QKeySequence.SequenceFormat.NativeText)
                             for k in action.shortcuts())
            if keys:
                rows.append((keys, action.text().replace("&", "")))
        return rows

    def help_dialog(self) -> None:
        HelpDialog(self.shortcut_rows(), self).exec()

    def about_dialog(self) -> None:
        info, note = self.model_choice()
        AboutDialog(info, __version__, self, note=note).exec()

    def _model_info(self) -> Any:
        return self.model_choice()[0]

    def model_choice(self) -> tuple[Any, str]:
        """(ModelInfo or None, a sentence or "") for the model Enhance would use now: the one
        given with --model, else the one chosen in Settings, else the default. None with no
        sentence: no model is installed at all."""
        override = self.model_override
        try:
            from engine.sr import registry

            if override is not None and not isinstance(override, str | Path):
                return None, (f"Enhance uses the network given when the viewer was started "
                              f"({type(override).__name__}), which has no model card.")
            if override is not None:
                try:
                    return registry.find_model(override), (
                        f"Enhance uses {Path(str(override)).name}, given with --model for this "
                        "session.")
                except registry.NoModelInstalled:
                    raise
                except registry.ModelNotFound as exc:
                    return None, (f"The model given with --model cannot be used, so Enhance will "
                                  f"stop with this message: {exc}")
            chosen = self.settings.model
            if chosen and self._settings_model() is None:
                default = registry.default_model()
                return default, (f"The model chosen in Settings, {chosen}, is no longer "
                                 f"installed; Enhance uses the default model, "
                                 f"{model_title(default)}, instead.")
            return (registry.find_model(chosen) if chosen else registry.default_model()), ""
        except Exception as exc:  # noqa: BLE001 - About still opens and says why
            if exc.__class__.__name__ == "NoModelInstalled":
                return None, ""
            return None, f"The model could not be read: {exc}"

    # ================================================================== closing
    def _restore_geometry(self) -> None:
        geometry, state = self.store.value("window/geometry"), self.store.value("window/state")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        if isinstance(state, QByteArray) and not state.isEmpty():
            self.restoreState(state)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        # Enhance's thread must have ended before the window (which owns it) can go: a QThread
        # destroyed while running aborts the process, and keeping a reference only moves that
        # to interpreter exit. Cancel is checked between tiles, so the wait is at most the tile
        # in progress, which with a large tile on a CPU can be minutes; no time limit is safe
        # to pick, so wait it out, with the window already hidden so closing looks immediate.
        if not self.enhance.shutdown(500):  # cancels every run
            self.hide()
            self.enhance.shutdown()  # no time limit
        # A scan is cancelled and checks that between files; a decode in a helper process is
        # ended by killing the helpers (a hung decoder never returns). Then the scan threads
        # must end before the window goes, for the same reason as Enhance's: wait, hidden.
        self.browser.stop()
        decoding.shutdown()
        if not self.browser.wait(500):
            self.hide()
            self.browser.wait()
        wait_for_background(10_000)
        self.store.setValue("window/geometry", self.saveGeometry())
        self.store.setValue("window/state", self.saveState())
        self.save_settings()
        super().closeEvent(event)


def _duration(seconds: float) -> str:
    if seconds < 0:
        return "?"
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"

