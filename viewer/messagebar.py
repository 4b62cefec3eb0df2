"""A slim bar above the image for one-sentence messages with one next step (no modal dialogs)."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget


class MessageBar(QFrame):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("messageBar")
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.action = QPushButton()
        self.close_button = QPushButton("Dismiss")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 4, 6, 4)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.action)
        layout.addWidget(self.close_button)
        self.close_button.clicked.connect(self.hide)
        self.action.clicked.connect(self._run_action)
        self._callback: Callable[[], None] | None = None
        self.level = "info"
        self.hide()

    def show_message(self, text: str, *, level: str = "error", action: str = "",
                     callback: Callable[[], None] | None = None) -> None:
        self.level = level
        self.setProperty("level", level)
        self.style().unpolish(self)
        self.style().polish(self)
        self.label.setText(text)
        self._callback = callback
        self.action.setText(action)
        self.action.setVisible(bool(action and callback))
        self.show()

    def text(self) -> str:
        return self.label.text() if self.isVisible() else ""

    def _run_action(self) -> None:
        self.hide()
        if self._callback is not None:
            self._callback()
