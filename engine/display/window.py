"""VOI transforms: windows (LINEAR, LINEAR_EXACT, SIGMOID) and the VOI LUT, DICOM PS3.3 C.11.2.

Every function takes modality values (any float range) and returns float32 in [0, 1], where 0 is
the darkest and 1 the brightest P-value *before* any MONOCHROME1 / Presentation LUT inversion.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from engine.display.lut import Lut

FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
LUT_FUNCTION = "LUT"  # a Window that stands for a VOI LUT Sequence item (see Window.lut)


@dataclass(frozen=True)
class Window:
    """A window in modality-value units (after the Modality LUT).

    `function` is the VOI LUT Function (0028,1056): LINEAR, LINEAR_EXACT or SIGMOID, or "LUT"
    when the window stands for a VOI LUT Sequence item held in `lut` (its center/width then span
    the table's input range, so a drag can start from there).
    """

    center: float
    width: float
    explanation: str = ""
    function: str = "LINEAR"
    lut: Lut | None = None

    @property
    def lower(self) -> float:
        """Lowest value shown above black (the low break point of the function)."""
        if self.function == "LINEAR":
            return self.center - 0.5 - (self.width - 1.0) / 2.0
        return self.center - self.width / 2.0

    @property
    def upper(self) -> float:
        """Highest value shown below white (the high break point of the function)."""
        if self.function == "LINEAR":
            return self.center - 0.5 + (self.width - 1.0) / 2.0
        return self.center + self.width / 2.0


def window_linear(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """LINEAR window, PS3.3 C.11.2.1.2.1, with ymin = 0 and ymax = 1.

    y = 0 if x <= c - 0.5 - (w-1)/2; y = 1 if x > c - 0.5 + (w-1)/2; else
    y = ((x - (c - 0.5)) / (w-1) + 0.5). The middle formula reaches exactly 0 and 1 at the break
    points, so clipping it is the whole function. Width below 1 is invalid; it is taken as 1
    (a step at c - 0.5).
    """
    x = _as_float32(values)
    if width <= 1.0:
        return (x > center - 0.5).astype(np.float32)
    scale = 1.0 / (width - 1.0)
    offset = 0.5 - (center - 0.5) * scale
    return _affine_clip01(x, scale, offset)


def window_linear_exact(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """LINEAR_EXACT window, PS3.3 C.11.2.1.3.2, with ymin = 0 and ymax = 1.

    y = 0 if x <= c - w/2; y = 1 if x > c + w/2; else y = (x - c) / w + 0.5. Width must be > 0.
    """
    x = _as_float32(values)
    width = max(float(width), np.finfo(np.float32).tiny)
    scale = 1.0 / width
    offset = 0.5 - center * scale
    return _affine_clip01(x, scale, offset)


def window_sigmoid(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """SIGMOID window, PS3.3 C.11.2.1.3.1, with ymin = 0 and ymax = 1.

    y = 1 / (1 + exp(-4 (x - c) / w)). Width must be > 0.
    """
    x = _as_float32(values)
    width = max(float(width), np.finfo(np.float32).tiny)
    # -4 (x - c) / w without float32 cancellation: x - c32 is exact near the centre (where the
    # curve is steep), and the part of c that float32 cannot hold is added back as a constant.
    # (x * k + c * k lost up to 2.5e-4 of output for narrow windows around values of ~2000.)
    c32 = np.float32(center)
    k = -4.0 / width
    t = np.subtract(x, c32, dtype=np.float32)
    t *= np.float32(k)
    t += np.float32(-k * (float(center) - float(c32)))
    with np.errstate(over="ignore", under="ignore"):  # overflow -> inf -> y = 0: right
        np.exp(t, out=t)
    t += np.float32(1.0)
    return np.reciprocal(t, out=t)


_WINDOW_FUNCTIONS = {
    "LINEAR": window_linear,
    "LINEAR_EXACT": window_linear_exact,
    "SIGMOID": window_sigmoid,
}


def apply_window(values: np.ndarray, window: Window) -> np.ndarray:
    """VOI of a Window Center/Width pair per its VOI LUT Function, PS3.3 C.11.2.1.2 -> [0, 1].

    A Window whose function is "LUT" applies its VOI LUT (PS3.3 C.11.2.1.1) instead.
    """
    if window.lut is not None:
        return apply_voi_lut(values, window.lut)
    function = _WINDOW_FUNCTIONS.get(window.function, window_linear)
    return function(values, float(window.center), float(window.width))


def apply_voi_lut(values: np.ndarray, voi_lut: Lut) -> np.ndarray:
    """VOI LUT Sequence item, PS3.3 C.11.2.1.1, scaled to [0, 1] by the table's output depth.

    Accepts a decoded `Lut` or a raw pydicom item (LUT Descriptor + LUT Data).
    """
    if not isinstance(voi_lut, Lut):
        from engine.display.lut import lut_from_item

        voi_lut = lut_from_item(voi_lut)
    table = voi_lut.data * np.float32(1.0 / voi_lut.output_max)
    return voi_lut_with_table(values, voi_lut, table)


def voi_lut_with_table(values: np.ndarray, voi_lut: Lut, table: np.ndarray) -> np.ndarray:
    """Look `values` up in `table` (already in [0, 1]) using `voi_lut`'s input mapping."""
    scaled = Lut(voi_lut.first_mapped, table, voi_lut.bits)
    return np.clip(scaled.lookup(np.asarray(values)), 0.0, 1.0).astype(np.float32, copy=False)


def voi_lut_window(voi_lut: Lut) -> Window:
    """A Window that stands for a VOI LUT item: center/width span the table's input range."""
    explanation = voi_lut.explanation or "VOI LUT"
    center = voi_lut.first_mapped + voi_lut.entries / 2.0
    return Window(center, float(voi_lut.entries), explanation, LUT_FUNCTION, voi_lut)


def full_range_window(values: np.ndarray, padding: tuple[float, float] | None = None) -> Window:
    """A LINEAR_EXACT window from the smallest to the largest finite value; `padding` (low, high)
    values (Pixel Padding Value) are not part of the image and do not count."""
    low, high = finite_range(without_padding(values, padding))
    return _span_window(low, high, "Full range")


def without_padding(values: np.ndarray, padding: tuple[float, float] | None) -> np.ndarray:
    """The values outside the inclusive `padding` range (a 1-D array), or `values` themselves
    when there is no padding or nothing else is left."""
    arr = np.asarray(values)
    if padding is None:
        return arr
    low, high = padding
    kept = arr[(arr < low) | (arr > high) | ~np.isfinite(arr)]
    return kept if kept.size else arr


def auto_window(values: np.ndarray, padding: tuple[float, float] | None = None) -> Window:
    """A window fitted to the body, ignoring collimation borders and burned-in labels.

    Looks only at the central 70% of rows and columns (shutters and labels sit at the edges),
    drops values equal to the image's extremes (saturation, padding, white text), then spans the
    0.5th..99.5th percentiles of what is left, widened by 5% each side so the densest and the
    most lucent body parts keep some detail. Sub-samples to ~250k pixels so it stays fast.
    `padding` (low, high) values (Pixel Padding Value) are left out first.
    """
    arr = np.asarray(values)
    if arr.ndim != 2 or arr.size == 0:
        return full_range_window(arr, padding)
    rows, cols = arr.shape
    r0, r1 = int(rows * 0.15), max(int(rows * 0.85), int(rows * 0.15) + 1)
    c0, c1 = int(cols * 0.15), max(int(cols * 0.85), int(cols * 0.15) + 1)
    centre = arr[r0:r1, c0:c1]
    step = max(1, int(np.sqrt(centre.size / 250_000)))
    sample = without_padding(centre[::step, ::step].ravel(), padding)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return full_range_window(arr, padding)
    low_all, high_all = finite_range(without_padding(arr, padding))
    body = sample[(sample > low_all) & (sample < high_all)]
    if body.size < max(16, sample.size // 100):
        body = sample
    low, high = (float(v) for v in np.percentile(body, [0.5, 99.5]))
    margin = 0.05 * (high - low)
    return _span_window(low - margin, high + margin, "Auto")


def finite_range(values: np.ndarray) -> tuple[float, float]:
    """(min, max) of the finite values; (0, 1) when there are none."""
    arr = np.asarray(values)
    if arr.size == 0:
        return 0.0, 1.0
    low, high = float(np.min(arr)), float(np.max(arr))
    if np.isfinite(low) and np.isfinite(high):
        return low, high
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return 0.0, 1.0
    return float(finite.min()), float(finite.max())


def drag_sensitivity(values_or_range: np.ndarray | tuple[float, float]) -> float:
    """Value units per screen pixel of drag: the image's value range / 1024 (as Cornerstone).

    So a drag across a typical viewport sweeps the whole range whatever the bit depth.
    """
    if isinstance(values_or_range, tuple):
        low, high = values_or_range
    else:
        low, high = finite_range(values_or_range)
    span = float(high) - float(low)
    return span / 1024.0 if span > 0 else 1.0 / 1024.0


def window_from_drag(window: Window, dx: float, dy: float, *, sensitivity: float = 1.0) -> Window:
    """The window after a mouse drag of (dx, dy) screen pixels (OHIF / Cornerstone convention).

    Horizontal drag changes the width (right = wider = less contrast); vertical drag changes the
    level (down = higher center = darker image). `sensitivity` is value units per pixel, see
    `drag_sensitivity`. A window standing for a VOI LUT becomes a LINEAR window on the same span.
    """
    function = "LINEAR" if window.lut is not None else window.function
    min_width = 1.0 if function == "LINEAR" else max(abs(sensitivity) * 1e-3, 1e-6)
    width = max(min_width, window.width + dx * sensitivity)
    center = window.center + dy * sensitivity
    return replace(window, center=center, width=width, explanation="Manual", function=function,
                   lut=None)


def _span_window(low: float, high: float, explanation: str) -> Window:
    if not high > low:
        high = low + 1.0
    return Window((low + high) / 2.0, high - low, explanation, "LINEAR_EXACT")


def _as_float32(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def _affine_clip01(x: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """clip(x * scale + offset, 0, 1) in float32 with a single new array."""
    y = x * np.float32(scale)
    y += np.float32(offset)
    return np.clip(y, np.float32(0.0), np.float32(1.0), out=y)
