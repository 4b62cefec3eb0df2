"""Save or copy the enhanced image. The writing itself is engine.io.export; this picks the call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage

from viewer.raster import frame_to_qimage, qimage_to_frame

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

    Every format says what the image is: the DICOM by its Image Type, Derivation Description and
    series description, PNG and TIFF by their text (the model, its weights' hash and the AI
    warning), and the 8-bit "as shown" PNG also by the viewer's mark burned into its corner, since
    such a file is the one that ends up in slides and mails where metadata are lost. The 16-bit
    PNG and the TIFF keep the source's polarity (MONOCHROME1 opens as it displays). The source
    file is protected: engine.io.export refuses to overwrite it.
    """
    from engine.io import export

    state = document.enhanced
    if state is None or not state.complete:
        raise ValueError("There is no enhanced image to export yet; press Enhance first.")
    values = state.values
    value_range = getattr(state.result, "value_range", None)
    provenance = export.Provenance.from_result(state.result)
    path = with_suffix(path, kind)
    source = [getattr(document.image, "source_file", None) or document.image.path]
    if kind == "dicom":
        return export.write_derived_dicom(document.image, values, path, provenance)
    inverted = bool(document.shows_inverted)
    if kind == "png16":
        return export.write_png(values, path, bits=16, value_range=value_range, inverted=inverted,
                                provenance=provenance, protect=source)
    if kind == "png8":  # as shown, with the AI mark
        return export.write_png(shown_frame(document), path, bits=8, provenance=provenance,
                                protect=source)
    if kind == "tiff":
        return export.write_tiff16(values, path, value_range=value_range, inverted=inverted,
                                   provenance=provenance, protect=source)
    raise ValueError(f"Unknown export kind {kind!r}.")


def burn_mark(frame: np.ndarray, scale: int) -> np.ndarray:
    """The frame with the viewer's AI mark in its top-right corner, black on white in a black
    frame, sized to the image (about 2.5 % of its shorter side): an 8-bit copy of an enhanced
    image that is pasted or mailed keeps saying what it is."""
    from PySide6.QtCore import QRect
    from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter

    from viewer.overlay import AI_MARK

    frame = np.ascontiguousarray(frame, dtype=np.uint8)
    h, w = frame.shape
    text = AI_MARK.format(scale=scale)
    font = QFont()
    font.setBold(True)
    font.setPixelSize(max(8, round(min(h, w) * 0.025)))
    metrics = QFontMetrics(font)
    pad = max(2, font.pixelSize() // 3)
    box_w = min(w, metrics.horizontalAdvance(text) + 2 * pad)
    box_h = min(h, metrics.height() + 2 * pad)
    box = QRect(max(0, w - box_w - pad), min(pad, h - box_h), box_w, box_h)
    qimage = frame_to_qimage(frame)
    painter = QPainter(qimage)
    try:
        painter.fillRect(box, QColor(0, 0, 0))  # a black frame keeps it apart from bright bone
        painter.fillRect(box.adjusted(1, 1, -1, -1), QColor(255, 255, 255))
        painter.setPen(QColor(0, 0, 0))
        painter.setFont(font)
        painter.drawText(box, int(Qt.AlignmentFlag.AlignCenter), text)
    finally:
        painter.end()
    return qimage_to_frame(qimage)


def to_pixel_shape(frame: np.ndarray, document: Any) -> np.ndarray:
    """An 8-bit frame of an image with non-square pixels, resampled (bicubic, the axis of the
    longer pixel side stretched) to square pixels, so that the copy looks as it does on screen
    in programs that ignore pixel shape; square pixels are returned as they are."""
    row, column = getattr(document.image, "pixel_aspect", (1.0, 1.0))
    if row == column:
        return frame
    from PIL import Image as PILImage

    h, w = frame.shape
    size = (max(1, round(w * column)), max(1, round(h * row)))
    resized = PILImage.fromarray(np.ascontiguousarray(frame, dtype=np.uint8)).resize(
        size, PILImage.Resampling.BICUBIC)
    return np.asarray(resized, dtype=np.uint8)


def shown_frame(document: Any, enhanced: bool = True) -> np.ndarray:
    """The image as displayed now (window, polarity, invert, pixel shape) as an 8-bit frame; an
    enhanced one carries the AI mark burned in (see `burn_mark`)."""
    state = document.enhanced
    if enhanced and state is not None and state.complete:
        return burn_mark(to_pixel_shape(document.render(state.values), document),
                         int(getattr(state.result, "scale", 4)))
    return np.ascontiguousarray(to_pixel_shape(document.render(document.values), document))


def copy_to_clipboard(document: Any, enhanced: bool = True) -> QImage:
    qimage = frame_to_qimage(shown_frame(document, enhanced))
    QGuiApplication.clipboard().setImage(qimage)
    return qimage
