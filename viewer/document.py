"""What is open: one image, its window, and its enhanced version. Shared by every canvas.

The document owns the raster layers (original, enhanced, difference) so that A/B, split and
side-by-side views all draw the same pixels with the same window. Grey-level maths is
engine.display; the document only decides *which* window and calls it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QPointF, Signal

from engine import display
from viewer.raster import Box, RasterLayer


@dataclass
class EnhancedState:
    values: np.ndarray  # float32 output, modality-value range of the input
    region: Box  # (y0, x0, y1, x1) of the input that was enhanced
    scale: int
    complete: bool = False
    result: Any = None  # engine.sr.enhancer.EnhanceResult once finished


class ImageDocument(QObject):
    displayChanged = Signal()  # window or invert: every layer renders again
    enhancedChanged = Signal()  # enhanced layer added, filled, finished or dropped

    def __init__(self, image: Any, values: np.ndarray, *, study: Any = None, series: Any = None,
                 windows: list[display.Window] | None = None) -> None:
        super().__init__()
        self.image = image
        self.study = study
        self.series = series
        self.values = values
        self.windows = windows if windows is not None else display.image_windows(image, values)
        self.window: display.Window = self.windows[0]
        self.window_index: int | None = 0
        self.invert = False
        self.sensitivity = display.drag_sensitivity(values)
        self.original = RasterLayer(values, self.render)
        self.enhanced: EnhancedState | None = None
        self.enhanced_layer: RasterLayer | None = None
        self.difference_layer: RasterLayer | None = None
        self.difference_span = 1.0  # +- this many modality units span black..white

    # -- grey levels ---------------------------------------------------------------------------
    @property
    def shows_inverted(self) -> bool:
        """High values display dark (MONOCHROME1 / INVERSE): Enhance must know (polarity)."""
        return display.shows_inverted(getattr(self.image, "photometric", "MONOCHROME2"),
                                      getattr(self.image, "presentation_lut_shape", None))

    def render(self, values: np.ndarray) -> np.ndarray:
        return display.render(values, window=self.window,
                              photometric=getattr(self.image, "photometric", "MONOCHROME2"),
                              presentation_lut_shape=getattr(self.image, "presentation_lut_shape",
                                                             None),
                              invert=self.invert)

    def render_difference(self, values: np.ndarray) -> np.ndarray:
        """Mid grey = unchanged; brighter = the model added signal, darker = removed.

        The window is symmetric about zero and spans the body's differences (engine auto window),
        so a faint change is visible; invert flips added/removed like any other image."""
        window = display.Window(0.0, 2.0 * self.difference_span, "Difference", "LINEAR_EXACT")
        return display.render(values, window=window, invert=self.invert)

    def set_window(self, window: display.Window, index: int | None = None) -> None:
        self.window = window
        self.window_index = index
        self._changed()

    def set_preset(self, index: int) -> bool:
        if not 0 <= index < len(self.windows):
            return False
        self.set_window(self.windows[index], index)
        return True

    def drag_window(self, dx: float, dy: float, *, speed: float = 1.0) -> None:
        self.set_window(display.window_from_drag(self.window, dx, dy,
                                                 sensitivity=self.sensitivity * speed))

    def toggle_invert(self) -> None:
        self.invert = not self.invert
        self._changed()

    def _changed(self) -> None:
        for layer in (self.original, self.enhanced_layer, self.difference_layer):
            if layer is not None:
                layer.invalidate()
        self.displayChanged.emit()

    # -- enhanced layer ------------------------------------------------------------------------
    def begin_enhanced(self, region: Box, scale: int, buffer: np.ndarray | None = None) -> None:
        """Start an enhanced layer for `region`; `buffer` (zeros, output size) is where tiles
        are pasted: the worker allocates it so page faults stay off the UI thread."""
        y0, x0, y1, x1 = region
        shape = ((y1 - y0) * scale, (x1 - x0) * scale)
        values = buffer if buffer is not None and buffer.shape == shape else \
            np.zeros(shape, np.float32)
        self.enhanced = EnhancedState(values, region, scale)
        self.enhanced_layer = RasterLayer(values, self.render, scale=scale,
                                          origin=QPointF(x0, y0), complete=False)
        self.difference_layer = None
        self.enhancedChanged.emit()

    def paste_tile(self, box: Box, pixels: np.ndarray) -> Box | None:
        """A finished tile in output coordinates of the enhanced region; returns the box pasted."""
        if self.enhanced is None or self.enhanced_layer is None:
            return None
        h, w = self.enhanced.values.shape
        y0, x0, y1, x1 = (max(0, box[0]), max(0, box[1]), min(h, box[2]), min(w, box[3]))
        if y1 <= y0 or x1 <= x0:
            return None
        pixels = pixels[y0 - box[0]:y1 - box[0], x0 - box[1]:x1 - box[1]]
        self.enhanced_layer.paste((y0, x0, y1, x1), pixels)
        return (y0, x0, y1, x1)

    def finish_enhanced(self, values: np.ndarray, result: Any) -> None:
        if self.enhanced is None or self.enhanced_layer is None:
            return
        self.enhanced.values = np.asarray(values, np.float32)
        self.enhanced.complete = True
        self.enhanced.result = result
        # engine.sr's tiles are final, so the pasted picture already equals the result.
        self.enhanced_layer.set_values(self.enhanced.values, complete=True, same_pixels=True)
        self.enhancedChanged.emit()

    def drop_enhanced(self) -> None:
        """Forget an unfinished or unwanted enhancement (cancel, error, new image)."""
        self.enhanced = None
        self.enhanced_layer = None
        self.difference_layer = None
        self.enhancedChanged.emit()

    @property
    def has_enhanced(self) -> bool:
        return self.enhanced is not None and self.enhanced.complete

    def set_difference(self, difference: np.ndarray) -> None:
        assert self.enhanced is not None
        y0, x0 = self.enhanced.region[:2]
        auto = display.auto_window(difference)
        self.difference_span = max(abs(auto.lower), abs(auto.upper), 1e-6)
        self.difference_layer = RasterLayer(difference, self.render_difference,
                                            scale=self.enhanced.scale, origin=QPointF(x0, y0))
        self.enhancedChanged.emit()

    # -- facts for the overlay and tools -------------------------------------------------------
    @property
    def rows(self) -> int:
        return int(self.values.shape[0])

    @property
    def columns(self) -> int:
        return int(self.values.shape[1])

    def value_at(self, x: float, y: float, *, enhanced: bool = False) -> float | None:
        if enhanced and self.has_enhanced:
            assert self.enhanced is not None
            y0, x0 = self.enhanced.region[:2]
            s = self.enhanced.scale
            iy, ix = int((y - y0) * s), int((x - x0) * s)
            arr = self.enhanced.values
        else:
            iy, ix, arr = int(y), int(x), self.values
        if 0 <= iy < arr.shape[0] and 0 <= ix < arr.shape[1]:
            return float(arr[iy, ix])
        return None
