"""Modality LUT: stored values -> modality values (DICOM PS3.3 C.11.1)."""

from __future__ import annotations

import numpy as np

from engine.display.lut import Lut


def rescale(stored: np.ndarray, slope: float = 1.0, intercept: float = 0.0) -> np.ndarray:
    """Rescale Slope/Intercept, PS3.3 C.11.1.1.2: modality value = stored * slope + intercept.

    Always returns a new float32 array (float32 holds every 16-bit stored value exactly).
    """
    values = np.asarray(stored).astype(np.float32)
    if slope != 1.0:
        values *= np.float32(slope)
    if intercept != 0.0:
        values += np.float32(intercept)
    return values


def apply_modality_lut(stored: np.ndarray, lut: Lut) -> np.ndarray:
    """Modality LUT Sequence, PS3.3 C.11.1.1.1: stored values below/above the table clamp to its
    first/last entry. Returns float32."""
    return lut.lookup(np.asarray(stored)).astype(np.float32, copy=False)


def modality_values(stored: np.ndarray, *, lut: Lut | None = None, slope: float = 1.0,
                    intercept: float = 0.0) -> np.ndarray:
    """The Modality LUT stage, PS3.3 C.11.1: the LUT Sequence when present, else the rescale."""
    if lut is not None:
        return apply_modality_lut(stored, lut)
    return rescale(stored, slope, intercept)
