"""A raster layer painted from modality values in chunks, rendered on demand with the window.

Why chunks: a 4x enhanced radiograph is ~8000x8500 values. Re-rendering all of it on every
window drag would stall the UI, so the layer renders only the chunks on screen, and when zoomed
out only every n-th value (n = source pixels per device pixel). All grey-level maths is the
`render` callable (engine.display.render with the current window); this module only slices
arrays and hands 8-bit frames to Qt.
"""

from __future__ import annotations

import math
import os
import time
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QImage, QPainter, QTransform

os.environ.setdefault("QT_DRIVER", "PySide6")  # qimage2ndarray: use the bindings we ship
import qimage2ndarray  # noqa: E402

from viewer.view import transform_scale  # noqa: E402

Box = tuple[int, int, int, int]  # (y0, x0, y1, x1), numpy order, end exclusive
Renderer = Callable[[np.ndarray], np.ndarray]  # float32 values -> uint8 frame, same shape

CHUNK = 512  # screen-sized pieces: cheap to render, few enough to keep in a cache
CACHE_CHUNKS = 96


def frame_to_qimage(frame: np.ndarray) -> QImage:
    """An 8-bit grey frame as a QImage (Grayscale8) that owns its pixels."""
    h, w = frame.shape
    qimage = QImage(w, h, QImage.Format.Format_Grayscale8)
    qimage2ndarray.raw_view(qimage)[...] = frame
    return qimage


def qimage_to_frame(qimage: QImage) -> np.ndarray:
    """A Grayscale8 QImage's pixels as a new (rows, columns) uint8 array."""
    return qimage2ndarray.raw_view(qimage).copy()


def frame_to_rgb32(frame: np.ndarray, alpha: np.ndarray | None = None) -> QImage:
    """An 8-bit grey frame in the raster engine's native 32-bit format, optionally with a 0/255
    alpha mask. Qt converts Grayscale8 on every draw (a few ms per chunk); this converts once."""
    h, w = frame.shape
    argb = frame.astype(np.uint32)
    argb *= np.uint32(0x010101)
    if alpha is None:
        argb |= np.uint32(0xFF000000)
        qimage = QImage(w, h, QImage.Format.Format_RGB32)
    else:  # premultiplied: with alpha 0 or 255 a pixel is either itself or all zero
        argb |= np.uint32(0xFF000000)
        argb[alpha == 0] = 0
        qimage = QImage(w, h, QImage.Format.Format_ARGB32_Premultiplied)
    qimage2ndarray.raw_view(qimage)[...] = argb
    return qimage


class RasterLayer:
    """Values shown at `scale` layer pixels per image pixel, with the layer's (0, 0) at `origin`.

    The original image has scale 1 and origin (0, 0); an enhanced region (y0, x0, y1, x1) of the
    input has scale 4 and origin (x0, y0), so both occupy the same image rectangle.
    """

    def __init__(self, values: np.ndarray, render: Renderer, *, scale: float = 1.0,
                 origin: QPointF | None = None, complete: bool = True) -> None:
        self.values = values
        self.render = render
        self.scale = float(scale)
        self.origin = QPointF(origin) if origin is not None else QPointF(0, 0)
        self.complete = complete
        self.filled: list[Box] = []  # finished boxes while not complete
        self._cache: OrderedDict[tuple[int, int, int], QImage] = OrderedDict()
        self._dirty: set[tuple[int, int, int]] = set()  # cached, but tiles arrived since
        self._holed: set[tuple[int, int, int]] = set()  # cached with transparent holes
        self._deadline: float | None = None
        self._rendered = 0
        self._behind = False

    @property
    def height(self) -> int:
        return int(self.values.shape[0])

    @property
    def width(self) -> int:
        return int(self.values.shape[1])

    def to_image(self) -> QTransform:
        """Layer pixels -> original image pixels."""
        t = QTransform()
        t.translate(self.origin.x(), self.origin.y())
        t.scale(1 / self.scale, 1 / self.scale)
        return t

    def image_rect(self) -> QRectF:
        return self.to_image().mapRect(QRectF(0, 0, self.width, self.height))

    # -- updates -------------------------------------------------------------------------------
    def invalidate(self) -> None:
        """The window (or invert) changed: every chunk renders again when next shown."""
        self._cache.clear()
        self._dirty.clear()
        self._holed.clear()

    def set_values(self, values: np.ndarray, *, complete: bool = True,
                   same_pixels: bool = False) -> None:
        """New values. `same_pixels`: they equal what was pasted tile by tile (the finished
        result), so rendered chunks stay valid and only those drawn with holes render again."""
        self.values = values
        self.complete = complete
        if complete:
            self.filled.clear()
        if same_pixels:
            self._dirty.update(self._holed & set(self._cache))
        else:
            self.invalidate()

    def paste(self, box: Box, pixels: np.ndarray) -> None:
        """A finished tile (layer coordinates): copy it in; the chunks it touches render again
        (until then they are drawn as they were, with the original showing through)."""
        y0, x0, y1, x1 = box
        self.values[y0:y1, x0:x1] = pixels
        self.filled.append(box)
        self._dirty.update(k for k in self._cache if _chunk_touches(k, box))

    @property
    def has_holes(self) -> bool:
        """Whether the original must be painted underneath (unfinished or stale chunks)."""
        return not self.complete or bool(self._holed) or bool(self._dirty)

    def box_to_image(self, box: Box) -> QRectF:
        y0, x0, y1, x1 = box
        return self.to_image().mapRect(QRectF(x0, y0, x1 - x0, y1 - y0))

    # -- painting ------------------------------------------------------------------------------
    def paint(self, painter: QPainter, image_to_widget: QTransform, exposed: QRectF,
              *, smooth: bool = True, budget_s: float | None = None) -> bool:
        """Draw the chunks that cover `exposed` (widget coordinates).

        With `budget_s`, chunks that only gained tiles (or, while the layer is unfinished, new
        chunks) stop rendering once the budget is spent: they are drawn as they were and the
        call returns True, asking for another paint. So a burst of tiles never stalls the UI.
        A window change always renders everything on screen at once (no patchwork of windows).
        """
        to_widget = self.to_image() * image_to_widget
        device = painter.device()
        dpr = device.devicePixelRatioF() if device is not None else 1.0
        # Device pixels per layer pixel: on a 2x HiDPI screen a logical pixel is 2x2 device
        # pixels, and sampling must follow what the screen can actually show.
        device_per_pixel = transform_scale(to_widget) * dpr
        if device_per_pixel <= 0:
            return False
        stride = sampling_stride(device_per_pixel)
        shown = to_widget.inverted()[0].mapRect(exposed)
        x0, y0 = max(0, math.floor(shown.left())), max(0, math.floor(shown.top()))
        x1, y1 = min(self.width, math.ceil(shown.right())), min(self.height, math.ceil(shown.bottom()))
        if x1 <= x0 or y1 <= y0:
            return False
        span = CHUNK * stride
        self._deadline = None if budget_s is None else time.perf_counter() + budget_s
        self._rendered = 0
        self._behind = False
        painter.save()
        painter.setTransform(to_widget, combine=False)
        painter.setClipRect(QRectF(0, 0, self.width, self.height), _intersect(painter))
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform,
                              smooth or device_per_pixel * stride < 1)
        for cy in range(y0 // span, (y1 - 1) // span + 1):
            for cx in range(x0 // span, (x1 - 1) // span + 1):
                qimage = self._chunk(cy, cx, stride)
                if qimage is None:
                    continue
                target = QRectF(cx * span, cy * span, qimage.width() * stride,
                                qimage.height() * stride)
                painter.drawImage(target, qimage)
        painter.restore()
        return self._behind

    def _over_budget(self) -> bool:
        # At least one chunk per paint renders, so a slow machine still makes progress.
        if self._deadline is None or self._rendered == 0:
            return False
        if time.perf_counter() > self._deadline:
            self._behind = True
            return True
        return False

    def _chunk(self, cy: int, cx: int, stride: int) -> QImage | None:
        key = (cy, cx, stride)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            if key not in self._dirty or self._over_budget():
                return cached
        elif not self.complete and self._over_budget():
            return None  # the original shows through until a later paint
        span = CHUNK * stride
        # One sample more than the chunk on the right and bottom: neighbouring chunks overlap by
        # a pixel, so no background shows through where their edges meet at fractional screen
        # positions (a dark seam line otherwise), and smoothing sees the true neighbour.
        reach = span + stride
        ys = slice(cy * span, cy * span + reach, stride)
        xs = slice(cx * span, cx * span + reach, stride)
        alpha = None if self.complete else self._alpha(cy * span, cx * span, reach, stride)
        self._dirty.discard(key)
        if alpha is not None and not alpha.any():
            self._cache.pop(key, None)
            return None  # nothing enhanced here yet: the original shows through
        frame = self.render(self.values[ys, xs])
        holed = alpha is not None and not alpha.all()
        qimage = frame_to_rgb32(frame, alpha if holed else None)
        self._rendered += 1
        self._cache[key] = qimage
        if holed:
            self._holed.add(key)
        else:
            self._holed.discard(key)
        while len(self._cache) > CACHE_CHUNKS:
            old, _ = self._cache.popitem(last=False)
            self._dirty.discard(old)
            self._holed.discard(old)
        return qimage

    def _alpha(self, top: int, left: int, span: int, stride: int) -> np.ndarray:
        h = len(range(top, min(top + span, self.height), stride))
        w = len(range(left, min(left + span, self.width), stride))
        alpha = np.zeros((h, w), np.uint8)
        for y0, x0, y1, x1 in self.filled:
            ys = _strided_span(y0 - top, y1 - top, stride, h)
            xs = _strided_span(x0 - left, x1 - left, stride, w)
            if ys and xs:
                alpha[ys[0]:ys[1], xs[0]:xs[1]] = 255
        return alpha


def sampling_stride(device_per_pixel: float) -> int:
    """Every n-th value to render when one layer pixel covers `device_per_pixel` device pixels
    (logical screen pixels x the device pixel ratio): no value is skipped while each still
    reaches a device pixel of its own, so a HiDPI screen gets its full resolution."""
    if device_per_pixel <= 0 or device_per_pixel >= 1:
        return 1
    return max(1, math.floor(1 / device_per_pixel))


def _strided_span(a: int, b: int, stride: int, n: int) -> tuple[int, int] | None:
    """Indices i in [0, n) whose sample i*stride falls in [a, b)."""
    lo, hi = max(0, -(-a // stride)), min(n, -(-b // stride))
    return (lo, hi) if hi > lo else None


def _chunk_touches(key: tuple[int, int, int], box: Box) -> bool:
    cy, cx, stride = key
    span = CHUNK * stride
    reach = span + stride  # chunks hold one extra sample (see RasterLayer._chunk)
    y0, x0, y1, x1 = box
    return cy * span < y1 and cy * span + reach > y0 and cx * span < x1 and cx * span + reach > x0


def _intersect(painter: QPainter) -> Qt.ClipOperation:
    return Qt.ClipOperation.IntersectClip if painter.hasClipping() else Qt.ClipOperation.ReplaceClip
