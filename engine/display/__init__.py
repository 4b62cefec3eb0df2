"""The grayscale display pipeline as pure numpy functions (DICOM PS3.3 C.11, PS3.4 N.2).

modality values -> VOI (window LINEAR / LINEAR_EXACT / SIGMOID, or VOI LUT) -> polarity
(MONOCHROME1 / Presentation LUT Shape, user invert) -> uint8. No Qt, no torch.
"""

from engine.display.lut import Lut, LutError, lut_from_item
from engine.display.modality import apply_modality_lut, modality_values, rescale
from engine.display.render import (
    Renderer,
    default_window,
    image_windows,
    render,
    render_image,
    shows_inverted,
    to_uint8,
    voi,
)
from engine.display.window import (
    FUNCTIONS,
    Window,
    apply_voi_lut,
    apply_window,
    auto_window,
    drag_sensitivity,
    finite_range,
    full_range_window,
    voi_lut_window,
    window_from_drag,
    window_linear,
    window_linear_exact,
    window_sigmoid,
)

VoiLut = Lut  # the name CONTRACTS.md uses for a decoded VOI LUT Sequence item

__all__ = [
    "FUNCTIONS", "Lut", "LutError", "Renderer", "VoiLut", "Window", "apply_modality_lut",
    "apply_voi_lut", "apply_window", "auto_window", "default_window", "drag_sensitivity",
    "finite_range", "full_range_window", "image_windows", "lut_from_item", "modality_values",
    "render", "render_image", "rescale", "shows_inverted", "to_uint8", "voi", "voi_lut_window",
    "window_from_drag", "window_linear", "window_linear_exact", "window_sigmoid",
]
