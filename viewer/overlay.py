"""The four-corner text overlay of a radiology viewer, and the AI-enhanced mark.

`corner_lines` is plain Python (tested without painting); `paint_overlay` draws it with a dark
outline so it stays readable on bright bone and dark lung alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QImage, QPainter, QPainterPath, QPen

from viewer.context import ImageContext

AI_MARK = "AI-ENHANCED x{scale} \N{EN DASH} not for diagnosis"


@dataclass
class OverlayInfo:
    context: ImageContext = field(default_factory=ImageContext)  # patient, study, series
    image_label: str = ""
    columns: int = 0
    rows: int = 0
    spacing: str = ""  # e.g. "0.160 mm (PixelSpacing)" or "no pixel spacing"
    lossy: bool = False
    window_center: float | None = None
    window_width: float | None = None
    window_name: str = ""
    invert: bool = False
    zoom: float = 1.0  # device pixels per original pixel (1:1 = 100%, HiDPI too)
    rotation: int = 0
    flip_h: bool = False
    flip_v: bool = False
    showing: str = "original"  # original | enhanced | split | side | diff
    scale: int = 4
    enhanced_size: tuple[int, int] | None = None  # (columns, rows) of the enhanced layer
    cursor_value: str = ""
    difference_span: float | None = None  # +- modality units from black to white (diff view)

    @property
    def ai_enhanced(self) -> bool:
        return self.showing in ("enhanced", "split", "side", "diff")


def format_person_name(name: str) -> str:
    """DICOM PN 'Family^Given^Middle' as 'Family, Given Middle'."""
    parts = [p for p in str(name).split("^") if p]
    if len(parts) <= 1:
        return parts[0] if parts else ""
    return f"{parts[0]}, {' '.join(parts[1:])}"


def format_da(value: str) -> str:
    value = str(value or "")
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}" if len(value) == 8 and value.isdigit() else value


def corner_lines(info: OverlayInfo) -> dict[str, list[str]]:
    """Text for each corner: 'tl', 'tr', 'bl', 'br'. Empty lines are dropped."""
    ctx = info.context
    sex_dob = " ".join(x for x in (ctx.sex, format_da(ctx.birth_date)) if x)
    tl = [format_person_name(ctx.patient_name), ctx.patient_id and f"ID {ctx.patient_id}", sex_dob]
    tr = [ctx.study_description, format_da(ctx.study_date),
          " ".join(x for x in (ctx.modality, ctx.series_description) if x), info.image_label]
    size = f"{info.columns} x {info.rows}"
    if info.enhanced_size and info.showing != "original":
        size += f" \N{RIGHTWARDS ARROW} {info.enhanced_size[0]} x {info.enhanced_size[1]} (x{info.scale})"
    view = f"Zoom {info.zoom * 100:.0f}%"
    if info.rotation:
        view += f"  Rot {info.rotation}\N{DEGREE SIGN}"
    if info.flip_h or info.flip_v:
        view += "  Flip " + "".join(x for x, on in (("H", info.flip_h), ("V", info.flip_v)) if on)
    bl = [info.cursor_value, view, size, info.spacing, "LOSSY COMPRESSED" if info.lossy else ""]
    br = []
    if info.window_center is not None and info.window_width is not None:
        br.append(f"WC {_num(info.window_center)}  WW {_num(info.window_width)}")
    br += [info.window_name, "INVERTED" if info.invert else "", _showing(info)]
    if info.showing == "diff" and info.difference_span:
        br.append(f"black..white = \N{MINUS SIGN}{_num(info.difference_span)}..+"
                  f"{_num(info.difference_span)}")
    return {k: [line for line in v if line] for k, v in
            {"tl": tl, "tr": tr, "bl": bl, "br": br}.items()}


def _showing(info: OverlayInfo) -> str:
    return {"original": "", "enhanced": "Enhanced (B)", "split": "Split: original | enhanced",
            "side": "", "diff": "Difference: enhanced \N{MINUS SIGN} bicubic"}.get(info.showing, "")


def _num(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 100 or float(x).is_integer() else f"{x:.4g}"


# -- painting ----------------------------------------------------------------------------------
TEXT = QColor(230, 230, 210)
MARK = QColor(255, 176, 0)


def overlay_font(pixel_size: int = 13) -> QFont:
    font = QFont("DejaVu Sans")
    font.setStyleHint(QFont.StyleHint.SansSerif)
    font.setPixelSize(pixel_size)
    return font


def paint_overlay(painter: QPainter, rect: QRectF, lines: dict[str, list[str]],
                  *, mark: str | None = None, mark_rect: QRectF | None = None) -> None:
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    font = overlay_font()
    metrics = QFontMetricsF(font)
    step = metrics.lineSpacing()
    pad = 8.0
    drawn: list[QRectF] = []
    for corner, texts in lines.items():
        right = corner.endswith("r")
        bottom = corner.startswith("b")
        for i, text in enumerate(texts):
            row = (len(texts) - 1 - i) if bottom else i
            y = (rect.bottom() - pad - row * step - metrics.descent()) if bottom else \
                (rect.top() + pad + row * step + metrics.ascent())
            width = metrics.horizontalAdvance(text)
            x = rect.right() - pad - width if right else rect.left() + pad
            _outlined_text(painter, QPointF(x, y), text, font, TEXT)
            drawn.append(QRectF(x, y - metrics.ascent(), width, step))
    if mark:
        _paint_mark(painter, mark_rect or rect, mark, avoid=drawn)
    painter.restore()


def _outlined_text(painter: QPainter, at: QPointF, text: str, font: QFont, colour: QColor) -> None:
    """Text with a dark outline. Stroking glyph outlines is slow (~2 ms a line), so each line is
    drawn once into a cached image; a repaint then costs a blit."""
    dpr = painter.device().devicePixelRatioF() if painter.device() is not None else 1.0
    image = _text_image(text, font.toString(), colour.rgba(), round(dpr * 100))
    ascent = QFontMetricsF(font).ascent()
    painter.drawImage(QPointF(at.x() - _OUTLINE, at.y() - ascent - _OUTLINE), image)


_OUTLINE = 2.0


@lru_cache(maxsize=256)
def _text_image(text: str, font_key: str, rgba: int, dpr_percent: int) -> QImage:
    font = QFont()
    font.fromString(font_key)
    metrics = QFontMetricsF(font)
    dpr = dpr_percent / 100
    w = metrics.horizontalAdvance(text) + 2 * _OUTLINE + 2
    h = metrics.height() + 2 * _OUTLINE
    image = QImage(max(1, int(w * dpr)), max(1, int(h * dpr)),
                   QImage.Format.Format_ARGB32_Premultiplied)
    image.setDevicePixelRatio(dpr)
    image.fill(Qt.GlobalColor.transparent)
    path = QPainterPath()
    path.addText(QPointF(_OUTLINE, _OUTLINE + metrics.ascent()), font, text)
    p = QPainter(image)
    p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    p.strokePath(path, QPen(QColor(0, 0, 0, 200), 3.0, Qt.PenStyle.SolidLine,
                            Qt.PenCapStyle.RoundCap, Qt.PenJoinStyle.RoundJoin))
    p.fillPath(path, QColor.fromRgba(rgba))
    p.end()
    return image


def _paint_mark(painter: QPainter, rect: QRectF, text: str, *, avoid: list[QRectF]) -> None:
    """A solid amber badge, top centre: impossible to mistake the enhanced image for the original.
    Moved down below any corner text it would cover."""
    font = overlay_font(15)
    font.setBold(True)
    metrics = QFontMetricsF(font)
    w, h = metrics.horizontalAdvance(text) + 20, metrics.height() + 8
    box = QRectF(rect.center().x() - w / 2, rect.top() + 6, w, h)
    for _ in range(len(avoid)):
        hits = [r for r in avoid if r.intersects(box)]
        if not hits:
            break
        box.moveTop(max(r.bottom() for r in hits) + 4)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor(MARK.red(), MARK.green(), MARK.blue(), 235))
    painter.drawRoundedRect(box, 4, 4)
    painter.setPen(QColor(20, 20, 20))
    painter.setFont(font)
    painter.drawText(box, Qt.AlignmentFlag.AlignCenter, text)
