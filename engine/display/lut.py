"""Lookup tables stored in a dataset: the LUT Descriptor / LUT Data pair.

The same encoding serves the Modality LUT Sequence (DICOM PS3.3 C.11.1) and the VOI LUT
Sequence (PS3.3 C.11.2): a descriptor `[entries, first mapped value, bits per entry]`, where 0
entries means 65536, and the table itself as US values or OW bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset


class LutError(ValueError):
    """A LUT in the file cannot be used (one sentence)."""


@dataclass(eq=False)
class Lut:
    """A decoded LUT: input `first_mapped + i` maps to `data[i]`; `bits` per output entry."""

    first_mapped: int
    data: np.ndarray = field(repr=False)
    bits: int
    explanation: str = ""

    @property
    def entries(self) -> int:
        return int(self.data.size)

    @property
    def output_max(self) -> int:
        """Largest output the table can hold: 2**bits - 1, widened when the data exceed it."""
        declared = (1 << self.bits) - 1
        actual = int(self.data.max()) if self.data.size else 0
        if actual > declared:  # descriptor understates the depth (seen in the wild)
            return (1 << actual.bit_length()) - 1
        return declared

    def lookup(self, values: np.ndarray) -> np.ndarray:
        """Map `values` through the table; inputs below/above the table take its first/last entry."""
        index = np.rint(values - self.first_mapped) if values.dtype.kind == "f" else (
            values.astype(np.int64) - self.first_mapped
        )
        index = np.clip(index, 0, self.entries - 1).astype(np.intp)
        return np.take(self.data, index)


def lut_from_item(item: Dataset, *, little_endian: bool = True, signed: bool = False) -> Lut:
    """Decode one LUT item (LUT Descriptor, LUT Data, LUT Explanation), PS3.3 C.11.1.1.1.

    `signed`: the image's Pixel Representation is 1, so a first mapped value stored as US
    above 32767 is a negative number (the descriptor's VR is "US or SS").
    """
    try:
        entries, first, bits = (int(v) for v in item.LUTDescriptor)
    except (AttributeError, TypeError, ValueError) as exc:
        raise LutError("The LUT Descriptor is missing or does not hold three numbers.") from exc
    entries = entries or 65536
    if signed and first > 32767:
        first -= 65536
    data = _lut_data(item, entries, little_endian)
    if data.size < entries:
        raise LutError(f"The LUT holds {data.size} entries but its descriptor says {entries}.")
    if not 1 <= bits <= 16:
        bits = max(1, int(data.max()).bit_length()) if data.size else 16
    explanation = str(item.get("LUTExplanation", "") or "")
    return Lut(first, data[:entries].astype(np.float32), bits, explanation)


def _lut_data(item: Dataset, entries: int, little_endian: bool) -> np.ndarray:
    if "LUTData" not in item or item.LUTData is None:
        raise LutError("The LUT has no LUT Data.")
    raw = item.LUTData
    if isinstance(raw, bytes | bytearray):
        dtype = "<u2" if little_endian else ">u2"
        usable = len(raw) // 2 * 2
        return np.frombuffer(raw[:usable], dtype=dtype).astype(np.int64)
    if isinstance(raw, int):
        raw = [raw]
    return np.asarray(list(raw), dtype=np.int64)
