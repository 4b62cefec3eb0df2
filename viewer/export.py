"""Save or copy the enhanced image. The writing itself is engine.io.export; this picks the call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtGui import QGuiApplication, QImage

from viewer.raster import frame_to_qimage

# (label for the file dialog, kind, suffix)
FORMATS = (
    ("Derived DICOM, full bit depth (*.dcm)", "dicom", ".dcm"),
    ("PNG 16-bit, full bit depth (*.png)", "png16", ".png"),
    ("PNG 8-bit, as shown (*.png)", "png8", ".png"),
    ("TIFF 16-bit, full bit depth (*.tif *.tiff)", "tiff", ".tif"),
)


def kind_for(filter_label: str, path: str | Path) -> str:
    for label, kind, _suffix in FORMATS:
        if label == filter_label:
            return kind
    suffix = Path(path).suffix.lower()
    return {".dcm": "dicom", ".png": "png16", ".tif": "tiff", ".tiff": "tiff"}.get(suffix, "dicom")


def with_suffix(path: str | Path, kind: str) -> Path:
    path = Path(path)
    wanted = {k: s for _l, k, s in FORMATS}[kind]
    ok = {".tif", ".tiff"} if kind == "tiff" else {wanted}
    return path if path.suffix.lower() in ok else path.with_name(path.name + wanted)


def export_enhanced(document: Any, path: str | Path, kind: str) -> Path:
    """Write the document's enhanced image; returns the path written (engine errors propagate).

    The source file is protected: engine.io.export refuses to overwrite it.
    """
    from engine.io import export

    state = document.enhanced
    if state is None or not state.complete:
        raise ValueError("There is no enhanced image to export yet; press Enhance first.")
    values = state.values
    value_range = getattr(state.result, "value_range", None)
    path = with_suffix(path, kind)
    source = [getattr(document.image, "source_file", None) or document.image.path]
    if kind == "dicom":
        return export.write_derived_dicom(document.image, values, path,
                                          export.Provenance.from_result(state.result))
    if kind == "png16":
        return export.write_png(values, path, bits=16, value_range=value_range, protect=source)
    if kind == "png8":
        return export.write_png(document.render(values), path, bits=8, protect=source)
    if kind == "tiff":
        return export.write_tiff16(values, path, value_range=value_range, protect=source)
    raise ValueError(f"Unknown export kind {kind!r}.")


def shown_frame(document: Any, enhanced: bool = True) -> np.ndarray:
    """The image as displayed now (window, polarity, invert) as an 8-bit frame."""
    state = document.enhanced
    values = state.values if enhanced and state is not None and state.complete else document.values
    return np.ascontiguousarray(document.render(values))


def copy_to_clipboard(document: Any, enhanced: bool = True) -> QImage:
    qimage = frame_to_qimage(shown_frame(document, enhanced))
    QGuiApplication.clipboard().setImage(qimage)
    return qimage
