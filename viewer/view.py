"""Where the image sits on screen: zoom, centre, rotation and flips, shared by linked views.

One `ViewTransform` drives every canvas that shows the same image (A/B in one canvas, or two
side-by-side canvases), so original and enhanced always stay in register. Coordinates are in
*original* image pixels; the enhanced layer maps itself there with a 1/scale transform.
Non-square pixels (Pixel Spacing or Pixel Aspect Ratio with unequal row and column values) are
drawn to their shape: `aspect` stretches image x or y before the zoom, so a circle on the patient
is a circle on screen, and every mapping between widget and image (ruler, cursor value, loupe)
goes through the same transform.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QObject, QPointF, QRectF, QSizeF, Signal
from PySide6.QtGui import QTransform

MIN_ZOOM = 1 / 64
MAX_ZOOM = 64.0


class ViewTransform(QObject):
    changed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.image_size = QSizeF(1, 1)
        self.aspect = (1.0, 1.0)  # screen x, y per image pixel at zoom 1: (column, row) shape
        self.zoom = 1.0  # logical (device-independent) screen pixels per original image pixel
        self.center = QPointF(0.5, 0.5)  # image point shown at the middle of the widget
        # Degrees, a multiple of 90, applied to the image *before* the screen-space flips
        # (screen = flip . rotate(rotation)): clockwise on screen while unflipped.
        self.rotation = 0
        self.flip_h = False  # mirrored left-right on screen
        self.flip_v = False
        self.fit = True  # zoom follows the widget size until the user zooms

    # -- state ---------------------------------------------------------------------------------
    def set_image_size(self, width: float, height: float,
                       pixel_aspect: tuple[float, float] = (1.0, 1.0)) -> None:
        """`pixel_aspect`: a pixel's (height, width) as engine.io reports it (row, column)."""
        self.image_size = QSizeF(width, height)
        row, column = pixel_aspect
        self.aspect = (float(column), float(row)) if row > 0 and column > 0 else (1.0, 1.0)
        self.reset()

    def reset(self) -> None:
        """Fit, centred, no rotation or flips (the space key)."""
        self.rotation = 0
        self.flip_h = self.flip_v = False
        self.set_fit()

    def set_fit(self) -> None:
        self.fit = True
        self.center = QPointF(self.image_size.width() / 2, self.image_size.height() / 2)
        self.changed.emit()

    def set_zoom(self, zoom: float, widget_size: QSizeF | None = None,
                 anchor: QPointF | None = None) -> None:
        """Zoom to `zoom`, keeping the image point under `anchor` (widget coordinates) in place."""
        zoom = min(MAX_ZOOM, max(MIN_ZOOM, zoom))
        if anchor is not None and widget_size is not None:
            fixed = self.to_image(widget_size).map(anchor)
            self.fit = False
            self.zoom = zoom
            linear = self._linear().inverted()[0]
            offset = linear.map(anchor - _centre(widget_size))
            self.center = fixed - offset
        else:
            self.fit = False
            self.zoom = zoom
        self.changed.emit()

    def zoom_by(self, factor: float, widget_size: QSizeF, anchor: QPointF | None = None) -> None:
        current = self.effective_zoom(widget_size)
        self.zoom = current  # leave fit mode from where the user is looking
        self.set_zoom(current * factor, widget_size, anchor if anchor is not None
                      else _centre(widget_size))

    def one_to_one(self, device_pixel_ratio: float = 1.0) -> None:
        """1:1 = one image pixel per *device* pixel: on a 2x HiDPI screen the zoom (logical
        pixels per image pixel) is 0.5, so no detail is thrown away and none is invented."""
        self.fit = False
        self.zoom = 1.0 / (device_pixel_ratio if device_pixel_ratio > 0 else 1.0)
        self.changed.emit()

    def pan_by(self, dx: float, dy: float, widget_size: QSizeF) -> None:
        """Move the image by (dx, dy) screen pixels."""
        if self.fit:
            self.zoom = self.effective_zoom(widget_size)
            self.fit = False
        linear = self._linear().inverted()[0]
        self.center = self.center - linear.map(QPointF(dx, dy))
        self.changed.emit()

    def rotate(self, degrees: int = 90) -> None:
        """Turn the image `degrees` clockwise *on screen* (negative: anticlockwise).

        The rotation sits inside the flips, and a single mirror reverses the sense of a turn
        (F . rotate(a) = rotate(-a) . F): once flipped in one axis only, the stored angle moves
        the other way so that R still turns the picture clockwise as the user sees it."""
        if self.flip_h != self.flip_v:
            degrees = -degrees
        self.rotation = (self.rotation + degrees) % 360
        self.changed.emit()

    def flip(self, horizontal: bool) -> None:
        if horizontal:
            self.flip_h = not self.flip_h
        else:
            self.flip_v = not self.flip_v
        self.changed.emit()

    def copy_from(self, other: ViewTransform) -> None:
        self.image_size = QSizeF(other.image_size)
        self.aspect = other.aspect
        self.zoom, self.center, self.fit = other.zoom, QPointF(other.center), other.fit
        self.rotation, self.flip_h, self.flip_v = other.rotation, other.flip_h, other.flip_v
        self.changed.emit()

    # -- geometry ------------------------------------------------------------------------------
    def fit_zoom(self, widget_size: QSizeF) -> float:
        w = self.image_size.width() * self.aspect[0]
        h = self.image_size.height() * self.aspect[1]
        if self.rotation % 180:
            w, h = h, w
        if w <= 0 or h <= 0 or widget_size.width() <= 0 or widget_size.height() <= 0:
            return 1.0
        return min(widget_size.width() / w, widget_size.height() / h)

    def effective_zoom(self, widget_size: QSizeF) -> float:
        return self.fit_zoom(widget_size) if self.fit else self.zoom

    def to_widget(self, widget_size: QSizeF) -> QTransform:
        """Image coordinates -> widget coordinates."""
        zoom = self.effective_zoom(widget_size)
        centre = _centre(widget_size)
        t = QTransform()
        t.translate(centre.x(), centre.y())
        t.scale(-1 if self.flip_h else 1, -1 if self.flip_v else 1)  # screen-space flips
        t.rotate(self.rotation)
        t.scale(zoom, zoom)
        t.scale(*self.aspect)
        t.translate(-self.center.x(), -self.center.y())
        return t

    def to_image(self, widget_size: QSizeF) -> QTransform:
        return self.to_widget(widget_size).inverted()[0]

    def visible_image_rect(self, widget_size: QSizeF) -> QRectF:
        """The part of the image on screen, in image pixels (clipped to the image)."""
        shown = self.to_image(widget_size).mapRect(QRectF(QPointF(0, 0), widget_size))
        return shown.intersected(QRectF(QPointF(0, 0), self.image_size))

    def _linear(self) -> QTransform:
        t = QTransform()
        t.scale(-1 if self.flip_h else 1, -1 if self.flip_v else 1)
        t.rotate(self.rotation)
        t.scale(self.zoom, self.zoom)
        t.scale(*self.aspect)
        return t


def _centre(size: QSizeF) -> QPointF:
    return QPointF(size.width() / 2, size.height() / 2)


def transform_scale(t: QTransform) -> float:
    """Screen pixels per source pixel (rotation/flip independent). For non-square pixels, along
    the axis drawn larger: one sampling stride serves both axes, and the stride that axis needs
    is the finer one, so neither axis drops rows or columns it could show."""
    return max(math.hypot(t.m11(), t.m12()), math.hypot(t.m21(), t.m22()))
