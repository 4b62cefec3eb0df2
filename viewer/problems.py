"""Files that could not be opened, listed quietly in a dock instead of a storm of dialogs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDockWidget, QHeaderView, QTableWidget, QTableWidgetItem, QWidget


class ProblemsDock(QDockWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Problems", parent)
        self.setObjectName("problemsDock")
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["File", "Why it was not opened"])
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.setWidget(self.table)
        self.count = 0

    def clear(self) -> None:
        self.table.setRowCount(0)
        self.count = 0
        self._retitle()

    def add(self, problems: list[Any]) -> None:
        for problem in problems:
            row = self.table.rowCount()
            self.table.insertRow(row)
            path = Path(problem.path)
            name = QTableWidgetItem(path.name)
            name.setToolTip(str(path))
            reason = QTableWidgetItem(str(problem.reason))
            reason.setToolTip(str(problem.reason))
            if getattr(problem, "skipped", False):  # readable, just not an image: grey it out
                for item in (name, reason):
                    item.setForeground(Qt.GlobalColor.gray)
            self.table.setItem(row, 0, name)
            self.table.setItem(row, 1, reason)
            self.count += 1
        self._retitle()

    def _retitle(self) -> None:
        self.setWindowTitle(f"Problems ({self.count})" if self.count else "Problems")
