"""Length measurements that always say which spacing they used.

A chest radiograph's Pixel Spacing may be calibrated at the patient (PixelSpacing), only at the
detector (ImagerPixelSpacing, which over-states lengths by the geometric magnification), or absent
(lengths in pixels). The label names the source so no one mistakes one for another.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PySide6.QtCore import QLineF, QPointF, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen, QTransform

from viewer.overlay import overlay_font

RULER_COLOUR = QColor(80, 220, 255)


@dataclass
class Measurement:
    start: QPointF  # original image pixels (x, y)
    end: QPointF


def ruler_label(start: QPointF, end: QPointF, spacing: tuple[float, float] | None,
                source: str) -> str:
    """'87.3 mm (PixelSpacing)', '95.1 mm at detector (ImagerPixelSpacing)', or '412 px (no
    pixel spacing)'. spacing = (row, column) in mm; source as engine.io reports it."""
    dx, dy = end.x() - start.x(), end.y() - start.y()
    if spacing is None or source in ("", "none"):
        return f"{math.hypot(dx, dy):.0f} px (no pixel spacing)"
    row_mm, col_mm = spacing
    return f"{math.hypot(dx * col_mm, dy * row_mm):.1f} {_mm_where(source)}"


def spacing_text(spacing: tuple[float, float] | None, source: str,
                 aspect: tuple[float, float] = (1.0, 1.0)) -> str:
    """The overlay's spacing line; non-square pixels (aspect = a pixel's (height, width)) are
    named, since they are drawn to their shape rather than one screen pixel per image pixel."""
    shape = "" if aspect[0] == aspect[1] else \
        f"; pixels {aspect[0]:.3g}:{aspect[1]:.3g} (h:w), drawn to shape"
    if spacing is None or source in ("", "none"):
        return "no pixel spacing: lengths in pixels" + shape
    row_mm, col_mm = spacing
    value = f"{row_mm:.3f}" if math.isclose(row_mm, col_mm) else f"{row_mm:.3f} x {col_mm:.3f}"
    return f"{value} {_mm_where(source)}{shape}"


def _mm_where(source: str) -> str:
    """'mm (PixelSpacing)', 'mm (PixelSpacing, GEOMETRY)' when the file names its calibration,
    or 'mm at detector (ImagerPixelSpacing)': detector-plane lengths over-state the patient by
    the geometric magnification, and the label must say so."""
    keyword, _, calibration = source.partition(":")
    if keyword == "ImagerPixelSpacing":
        return "mm at detector (ImagerPixelSpacing)"
    return f"mm ({keyword}, {calibration})" if calibration else f"mm ({keyword})"


def paint_measurement(painter: QPainter, to_widget: QTransform, m: Measurement, label: str) -> None:
    a, b = to_widget.map(m.start), to_widget.map(m.end)
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    painter.setPen(QPen(QColor(0, 0, 0, 180), 3))
    painter.drawLine(QLineF(a, b))
    painter.setPen(QPen(RULER_COLOUR, 1.5))
    painter.drawLine(QLineF(a, b))
    for p in (a, b):
        painter.drawEllipse(p, 3, 3)
    font = overlay_font(12)
    path = QPainterPath()
    path.addText(QPointF(b.x() + 8, b.y() - 6), font, label)
    painter.strokePath(path, QPen(QColor(0, 0, 0, 200), 3, Qt.PenStyle.SolidLine,
                                  Qt.PenCapStyle.RoundCap, Qt.PenJoinStyle.RoundJoin))
    painter.fillPath(path, RULER_COLOUR)
    painter.restore()
