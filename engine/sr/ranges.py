"""What maps to [0, 1] for the network: shared by the CLI and the viewer, no torch import."""

from __future__ import annotations

from typing import Any

import numpy as np


def network_range(image: Any, values: np.ndarray | None = None) -> tuple[float, float] | None:
    """The (lo, hi) an image's values are mapped from to the network's [0, 1]; None = the
    Enhancer's default, the image's own min..max.

    8-bit files: 0..255, as the models were trained. 16-bit files and DICOM: the image's own
    min..max (their nominal range says little: 12-bit data in 16-bit PNGs would reach the network
    very dark), except that Pixel Padding values (`image.padding`, not part of the image) are left
    out, so a padding value far below the body does not squeeze the body into a sliver of the
    network's range; padding pixels are then clipped to the range's end.
    """
    if not (getattr(image, "is_dicom", False) or int(getattr(image, "bits_stored", 8) or 8) > 8):
        return 0.0, 255.0
    padding = getattr(image, "padding", None)
    if padding is None:
        return None
    from engine.display.window import finite_range, without_padding

    arr = image.modality_values() if values is None else np.asarray(values)
    lo, hi = finite_range(without_padding(arr, padding))
    return (lo, hi) if hi > lo else None
