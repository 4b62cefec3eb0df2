"""The image canvas: paints layers through a shared ViewTransform and turns the mouse into tools.

A plain QWidget rather than QGraphicsView: the whole view is one transform we own, which makes
linking two canvases (side by side) and keeping A/B in register trivial. Layers:
`base` (the original) and `top` (the enhanced image, or the difference image), each a
RasterLayer that maps itself onto original-image coordinates.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable

from PySide6.QtCore import QPointF, QRectF, QSizeF, Qt, QTimer, Signal
from PySide6.QtGui import (
    QColor,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPaintEvent,
    QPen,
    QResizeEvent,
    QTransform,
    QWheelEvent,
)
from PySide6.QtWidgets import QSizePolicy, QWidget

from viewer.overlay import paint_overlay
from viewer.raster import RasterLayer
from viewer.ruler import Measurement, paint_measurement
from viewer.view import ViewTransform

WHEEL_STEP = 1.15  # zoom factor per wheel notch
DIVIDER_GRAB = 8  # pixels either side of the split divider that pick it up
LOUPE_RADIUS = 120
LOUPE_ZOOM = 2.5
RENDER_BUDGET_S = 0.012  # chunk rendering per paint while tiles arrive (the UI stays fluid)


class Tool(enum.Enum):
    WINDOW = "window"
    PAN = "pan"
    ZOOM = "zoom"
    RULER = "ruler"
    MAGNIFY = "magnify"


# (lines per corner, AI mark text or None) for the overlay; supplied by the main window.
OverlayProvider = Callable[["ImageCanvas"], tuple[dict[str, list[str]], str | None]]
RulerLabeller = Callable[[Measurement], str]


class ImageCanvas(QWidget):
    windowDragged = Signal(float, float)  # screen dx, dy while the window tool drags
    cursorMoved = Signal(object)  # QPointF in image pixels, or None when off the image
    dividerMoved = Signal(float)

    def __init__(self, view: ViewTransform | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAcceptDrops(False)  # the main window takes drops
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.view = view or ViewTransform(self)
        self.view.changed.connect(self.update)
        self.base: RasterLayer | None = None
        self.top: RasterLayer | None = None
        self.show_top = False  # A/B: False shows the original
        self.split: float | None = None  # divider as a fraction of the width, None = no split
        self.smooth = True
        self.tool = Tool.WINDOW
        self.measurements: list[Measurement] = []
        self.ruler_label: RulerLabeller = lambda m: ""
        self.overlay_provider: OverlayProvider | None = None
        self.background = QColor(0, 0, 0)
        self.placeholder = ""
        self._drag_button = Qt.MouseButton.NoButton
        self._drag_mode: str | None = None
        self._last = QPointF()
        self._press = QPointF()
        self._loupe: QPointF | None = None
        self._draft: Measurement | None = None
        self._catch_up_pending = False

    # -- state ---------------------------------------------------------------------------------
    def set_view(self, view: ViewTransform) -> None:
        self.view.changed.disconnect(self.update)
        self.view = view
        view.changed.connect(self.update)
        self.update()

    def size_f(self) -> QSizeF:
        return QSizeF(self.width(), self.height())

    def image_to_widget(self) -> QTransform:
        return self.view.to_widget(self.size_f())

    def widget_to_image(self, p: QPointF) -> QPointF:
        return self.view.to_image(self.size_f()).map(p)

    def update_image_rect(self, rect: QRectF) -> None:
        """Repaint only where an image rectangle (e.g. a finished tile) appears on screen."""
        shown = self.image_to_widget().mapRect(rect).toAlignedRect().adjusted(-2, -2, 2, 2)
        if self._loupe is not None:
            self.update()  # the loupe may show the same place magnified
        elif shown.intersects(self.rect()):
            self.update(shown)

    def update_corner(self, corner: str, width: int = 560, height: int = 110) -> None:
        """Repaint one overlay corner (the cursor value changes many times a second)."""
        x = 0 if corner.endswith("l") else max(0, self.width() - width)
        y = 0 if corner.startswith("t") else max(0, self.height() - height)
        self.update(x, y, width, height)

    def showing_top(self) -> bool:
        return self.top is not None and (self.show_top or self.split is not None)

    def divider_x(self) -> float | None:
        return None if self.split is None or self.top is None else self.split * self.width()

    # -- painting ------------------------------------------------------------------------------
    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.background)
        exposed = QRectF(event.rect())
        if self.base is None:
            self._paint_placeholder(painter)
            painter.end()
            return
        to_widget = self.image_to_widget()
        self._paint_layers(painter, to_widget, exposed)
        for m in self.measurements + ([self._draft] if self._draft else []):
            paint_measurement(painter, to_widget, m, self.ruler_label(m))
        divider = self.divider_x()
        if divider is not None:
            self._paint_divider(painter, divider)
        if self._loupe is not None:
            self._paint_loupe(painter, to_widget)
        if self.overlay_provider is not None:
            lines, mark = self.overlay_provider(self)
            mark_rect = QRectF(self.rect())
            if mark and divider is not None:  # badge over the enhanced half only
                mark_rect = QRectF(divider, 0, self.width() - divider, self.height())
            paint_overlay(painter, QRectF(self.rect()), lines, mark=mark, mark_rect=mark_rect)
        painter.end()

    def _paint_layers(self, painter: QPainter, to_widget: QTransform, exposed: QRectF) -> None:
        assert self.base is not None
        top = self.top
        divider = self.divider_x()
        behind = False
        if divider is not None and top is not None:
            # Intersect, never replace: inside the loupe the circular clip must stay in force
            # (with no clip set, Qt treats IntersectClip as ReplaceClip).
            intersect = Qt.ClipOperation.IntersectClip
            painter.save()
            painter.setClipRect(QRectF(0, 0, divider, self.height()), intersect)
            self.base.paint(painter, to_widget, exposed, smooth=self.smooth)
            painter.restore()
            painter.save()
            painter.setClipRect(QRectF(divider, 0, self.width() - divider, self.height()),
                                intersect)
            if top.has_holes:  # unfinished tiles: the original shows through
                self.base.paint(painter, to_widget, exposed, smooth=self.smooth)
            behind = top.paint(painter, to_widget, exposed, smooth=self.smooth,
                               budget_s=RENDER_BUDGET_S)
            painter.restore()
        elif self.show_top and top is not None:
            if top.has_holes or not top.image_rect().contains(self.base.image_rect()):
                self.base.paint(painter, to_widget, exposed, smooth=self.smooth)
            behind = top.paint(painter, to_widget, exposed, smooth=self.smooth,
                               budget_s=RENDER_BUDGET_S)
        else:
            self.base.paint(painter, to_widget, exposed, smooth=self.smooth)
        if behind and not self._catch_up_pending:
            # Some chunks were drawn stale to keep this paint short: finish them next turn.
            self._catch_up_pending = True
            QTimer.singleShot(0, self._catch_up)

    def _catch_up(self) -> None:
        self._catch_up_pending = False
        self.update()

    def _paint_divider(self, painter: QPainter, x: float) -> None:
        painter.save()
        painter.setPen(QPen(QColor(0, 0, 0, 160), 4))
        painter.drawLine(QPointF(x, 0), QPointF(x, self.height()))
        painter.setPen(QPen(QColor(255, 176, 0), 2))
        painter.drawLine(QPointF(x, 0), QPointF(x, self.height()))
        painter.setBrush(QColor(255, 176, 0))
        painter.drawEllipse(QPointF(x, self.height() / 2), 7, 7)
        painter.restore()

    def _paint_loupe(self, painter: QPainter, to_widget: QTransform) -> None:
        assert self._loupe is not None
        c = self._loupe
        zoomed = to_widget * _scale_about(c, LOUPE_ZOOM)
        circle = QPainterPath()
        circle.addEllipse(c, LOUPE_RADIUS, LOUPE_RADIUS)
        painter.save()
        painter.setClipPath(circle)
        painter.fillRect(self.rect(), self.background)
        area = QRectF(c.x() - LOUPE_RADIUS, c.y() - LOUPE_RADIUS, 2 * LOUPE_RADIUS, 2 * LOUPE_RADIUS)
        self._paint_layers(painter, zoomed, area)
        painter.restore()
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setPen(QPen(QColor(255, 255, 255, 200), 2))
        painter.drawEllipse(c, LOUPE_RADIUS, LOUPE_RADIUS)
        painter.restore()

    def _paint_placeholder(self, painter: QPainter) -> None:
        if self.placeholder:
            painter.setPen(QColor(150, 150, 150))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self.placeholder)

    # -- mouse ---------------------------------------------------------------------------------
    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._drag_button != Qt.MouseButton.NoButton:
            return
        pos = event.position()
        self._drag_button = event.button()
        self._last = QPointF(pos)
        self._press = QPointF(pos)
        divider = self.divider_x()
        if event.button() == Qt.MouseButton.LeftButton and divider is not None and \
                abs(pos.x() - divider) <= DIVIDER_GRAB:
            self._drag_mode = "divider"
        elif event.button() == Qt.MouseButton.MiddleButton:
            self._drag_mode = "pan"
        elif event.button() == Qt.MouseButton.RightButton:
            self._drag_mode = "zoom"
        elif event.button() == Qt.MouseButton.LeftButton:
            self._drag_mode = self.tool.value
            if self.tool is Tool.RULER and self.base is not None:
                p = self.widget_to_image(pos)
                self._draft = Measurement(p, QPointF(p))
            elif self.tool is Tool.MAGNIFY:
                self._loupe = QPointF(pos)
                self.update()
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        pos = event.position()
        self._emit_cursor(pos)
        divider = self.divider_x()
        if self._drag_mode is None:
            near = divider is not None and abs(pos.x() - divider) <= DIVIDER_GRAB
            self.setCursor(Qt.CursorShape.SplitHCursor if near else Qt.CursorShape.CrossCursor)
            return
        dx, dy = pos.x() - self._last.x(), pos.y() - self._last.y()
        self._last = QPointF(pos)
        mode = self._drag_mode
        if mode == "divider":
            self.split = min(1.0, max(0.0, pos.x() / max(1, self.width())))
            self.dividerMoved.emit(self.split)
            self.update()
        elif mode == "pan":
            self.view.pan_by(dx, dy, self.size_f())
        elif mode == "zoom":
            self.view.zoom_by(math.pow(1.01, -dy), self.size_f(), self._press_anchor())
        elif mode == "window":
            self.windowDragged.emit(dx, dy)
        elif mode == "ruler" and self._draft is not None:
            self._draft.end = self.widget_to_image(pos)
            self.update()
        elif mode == "magnify":
            self._loupe = QPointF(pos)
            self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if event.button() != self._drag_button:
            return
        if self._drag_mode == "ruler" and self._draft is not None:
            if self._draft.start != self._draft.end:
                self.measurements.append(self._draft)
            self._draft = None
        self._loupe = None
        self._drag_mode = None
        self._drag_button = Qt.MouseButton.NoButton
        self.update()

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        notches = event.angleDelta().y() / 120
        if notches:
            self.view.zoom_by(WHEEL_STEP ** notches, self.size_f(), event.position())
        event.accept()

    def leaveEvent(self, event) -> None:  # noqa: ANN001, N802
        self.cursorMoved.emit(None)
        super().leaveEvent(event)

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802
        super().resizeEvent(event)
        self.update()

    def _press_anchor(self) -> QPointF:
        """Drag-zoom keeps the point where the drag began in place."""
        return QPointF(self._press)

    def _emit_cursor(self, pos: QPointF) -> None:
        if self.base is None:
            return
        p = self.widget_to_image(pos)
        inside = 0 <= p.x() < self.base.width and 0 <= p.y() < self.base.height
        self.cursorMoved.emit(p if inside else None)


def _scale_about(c: QPointF, factor: float) -> QTransform:
    t = QTransform()
    t.translate(c.x(), c.y())
    t.scale(factor, factor)
    t.translate(-c.x(), -c.y())
    return t
