"""Ways to compare original and enhanced: A/B in one canvas, split, side by side, difference.

Every mode draws through the same ViewTransform and the same document window, so switching
between them (or toggling A/B) never moves the image or changes its grey levels.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QSplitter, QVBoxLayout, QWidget

from viewer.canvas import ImageCanvas
from viewer.view import ViewTransform

MODES = ("ab", "split", "side", "diff")


class CompareView(QWidget):
    """The central image area: one canvas, or two linked canvases side by side."""

    modeChanged = Signal(str)

    def __init__(self, view: ViewTransform, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = view
        self.primary = ImageCanvas(view)
        self.secondary = ImageCanvas(view)  # the enhanced side of side-by-side
        self.secondary.hide()
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setHandleWidth(3)
        self.splitter.addWidget(self.primary)
        self.splitter.addWidget(self.secondary)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.splitter)
        self.mode = "ab"
        self.document: Any = None

    @property
    def canvases(self) -> tuple[ImageCanvas, ImageCanvas]:
        return (self.primary, self.secondary)

    def set_document(self, document: Any) -> None:
        self.document = document
        self.refresh_layers()

    def refresh_layers(self) -> None:
        """Point each canvas at the document's layers for the current mode."""
        doc = self.document
        base = doc.original if doc is not None else None
        enhanced = doc.enhanced_layer if doc is not None else None
        difference = doc.difference_layer if doc is not None else None
        p, s = self.primary, self.secondary
        p.base = s.base = base
        p.split = None
        s.show_top = True
        s.top = enhanced
        if self.mode == "diff":
            p.top = difference
            p.show_top = difference is not None
        elif self.mode == "split":
            p.top = enhanced
            p.split = self._split_fraction if enhanced is not None else None
        else:
            p.top = enhanced
            if self.mode == "side":
                p.show_top = False
        s.setVisible(self.mode == "side")
        if self.mode == "side":
            self.splitter.setSizes([1, 1])
        for c in self.canvases:
            c.update()

    _split_fraction = 0.5

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"Compare mode must be one of {MODES}.")
        if self.mode == "split" and self.primary.split is not None:
            self._split_fraction = self.primary.split
        self.mode = mode
        if mode == "ab":
            self.primary.show_top = self.primary.show_top and self.primary.top is not None
        self.refresh_layers()
        self.modeChanged.emit(mode)

    def toggle_ab(self) -> bool:
        """Swap original and enhanced in the one canvas; returns True when enhanced is shown."""
        if self.mode != "ab":
            self.set_mode("ab")
        self.primary.show_top = not self.primary.show_top and self.primary.top is not None
        self.primary.update()
        return self.primary.show_top

    def showing(self, canvas: ImageCanvas) -> str:
        """What a canvas shows, for its overlay: original, enhanced, split, side or diff.

        Only a layer actually drawn counts: the secondary canvas keeps showing in side-by-side
        after its enhanced layer is dropped (a cancelled or failed Enhance), and then it shows
        the original, which must not carry the AI badge."""
        if canvas is self.secondary:
            return "side" if canvas.top is not None else "original"
        if self.mode == "diff" and canvas.top is not None:
            return "diff"
        if self.mode == "split" and canvas.split is not None:
            return "split"
        return "enhanced" if canvas.show_top and canvas.top is not None else "original"
