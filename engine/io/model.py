"""The Study > Series > Image model (DICOM PS3.3 C.7: Patient, General Study, General Series,
General Image modules), plus the scan events and problems a reader reports.

Reprs never show patient identifiers: they end up in logs and test failure output.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydicom.dataset import Dataset

from engine.display.lut import Lut
from engine.display.window import Window
from engine.io.errors import ReadError

__all__ = ["Collection", "Image", "Problem", "ReadError", "ScanEvent", "Series", "Study"]


@dataclass(frozen=True)
class Problem:
    """A file that was not opened as an image: `reason` is one sentence.

    `skipped` is True for readable files that are not images to show (a structured report, a
    presentation state, an RT plan, a text file), False for files that are broken or unreadable.
    """

    path: Path
    reason: str
    skipped: bool = False


@dataclass(eq=False)
class Image:
    """One frame to show: where it comes from, the tags that drive display, and its pixels.

    Pixels are decoded on first call to `modality_values()` and cached (thread-safe);
    `release()` drops the cache. `dataset` is the header (read without pixel data) for DICOM,
    None for PNG/JPEG/TIFF. `path` is the file (for a ZIP member: "archive.zip/member/name");
    `source_file` is the file on disk that holds it (the ZIP itself for a member).
    """

    path: Path
    loader: Callable[[], np.ndarray] = field(repr=False)  # -> modality values, float32 2-D
    source_file: Path | None = None
    frame: int = 0
    frames: int = 1
    rows: int = 0
    columns: int = 0
    photometric: str = "MONOCHROME2"
    windows: list[Window] = field(default_factory=list)
    voi_luts: list[Lut] = field(default_factory=list, repr=False)
    voi_function: str = "LINEAR"
    presentation_lut_shape: str | None = None
    pixel_spacing: tuple[float, float] | None = None
    spacing_source: str = "none"
    # Height : width of one pixel, (row, column) as PS3.3 orders Pixel Spacing and Pixel Aspect
    # Ratio; (1.0, 1.0) for square pixels. The viewer draws the image to this shape.
    pixel_aspect: tuple[float, float] = (1.0, 1.0)
    dataset: Dataset | None = field(default=None, repr=False)
    sop_instance_uid: str = ""
    sop_class_uid: str = ""
    instance_number: int | None = None
    modality: str = ""
    lossy: bool = False
    bits_stored: int = 8
    is_dicom: bool = True
    transfer_syntax: str = ""
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    modality_lut: Lut | None = field(default=None, repr=False)
    pixel_representation: int = 0
    # Pixel Padding Value / Range Limit (PS3.3 C.7.5.1.1.2) as modality values (low, high),
    # inclusive: pixels in it are not part of the image (windows and Enhance's range skip them)
    padding: tuple[float, float] | None = None
    _cache: np.ndarray | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.source_file is None:
            self.source_file = self.path

    @property
    def voi_lut(self) -> Lut | None:
        """The first VOI LUT Sequence item (decoded), or None."""
        return self.voi_luts[0] if self.voi_luts else None

    @property
    def label(self) -> str:
        """Short text for a browser row, e.g. "CR #2  1841x1955" or "DX #1 frame 3/10"."""
        parts = [self.modality or ("DICOM" if self.is_dicom else self.path.suffix[1:].upper())]
        if self.instance_number is not None:
            parts.append(f"#{self.instance_number}")
        elif not self.is_dicom:
            parts.append(self.path.name)
        if self.frames > 1:
            parts.append(f"frame {self.frame + 1}/{self.frames}")
        text = " ".join(parts) + f"  {self.columns}x{self.rows}"
        return text + ("  lossy" if self.lossy else "")

    def modality_values(self) -> np.ndarray:
        """The frame after the Modality LUT (PS3.3 C.11.1), float32 (rows, columns); cached.

        Raises ReadError when the pixel data cannot be decoded. Treat the array as read-only.
        """
        cached = self._cache
        if cached is not None:
            return cached
        with self._lock:
            if self._cache is None:
                values = self.loader()
                values.flags.writeable = False
                self._cache = values
            return self._cache

    def release(self) -> None:
        """Forget the decoded pixels (they are decoded again on the next request)."""
        with self._lock:
            self._cache = None


@dataclass(eq=False)
class Series:
    """General Series (PS3.3 C.7.3.1): images sorted by Instance Number, then frame."""

    series_uid: str
    number: int | None = None
    description: str = ""
    modality: str = ""
    images: list[Image] = field(default_factory=list)


@dataclass(eq=False)
class Study:
    """Patient (PS3.3 C.7.1.1) and General Study (C.7.2.1) descriptors with their series."""

    patient_name: str = field(default="", repr=False)
    patient_id: str = field(default="", repr=False)
    birth_date: str = field(default="", repr=False)
    sex: str = ""
    study_uid: str = ""
    study_date: str = ""
    study_time: str = ""
    study_description: str = ""
    accession: str = field(default="", repr=False)
    series: list[Series] = field(default_factory=list)

    @property
    def images(self) -> list[Image]:
        return [image for series in self.series for image in series.images]


@dataclass(eq=False)
class Collection:
    """What `engine.io.load` found: studies (newest first) and the files it did not open."""

    studies: list[Study] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def images(self) -> list[Image]:
        return [image for study in self.studies for image in study.images]


@dataclass(frozen=True)
class ScanEvent:
    """One step of `engine.io.scan`: an image found, a problem, or progress (files done/total)."""

    kind: Literal["image", "problem", "progress"]
    image: Image | None = None
    problem: Problem | None = None
    done: int = 0
    total: int | None = None
