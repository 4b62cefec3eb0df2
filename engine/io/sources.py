"""Where files come from: a single file, a folder tree, a ZIP archive or a DICOMDIR.

A `Source` names one file to read, on disk or inside a ZIP, and opens it on demand, so headers
can be scanned quickly and pixels decoded later without keeping files open.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from engine.io.errors import ReadError, short_reason

MAX_MEMBER_BYTES = 2 << 30  # a ZIP member larger than 2 GiB is refused (zip bombs)


@dataclass(frozen=True)
class Source:
    """One file to read: `path` is what a user sees ("a.zip/IMG1" for a ZIP member), `file` the
    file on disk, `member` the name inside the ZIP or None."""

    path: Path
    file: Path
    member: str | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @contextmanager
    def opened(self) -> Iterator[BinaryIO]:
        """A seekable binary stream of the file (a ZIP member is read into memory)."""
        if self.member is None:
            with open(self.file, "rb") as handle:
                yield handle
            return
        with zipfile.ZipFile(self.file) as archive:
            info = archive.getinfo(self.member)
            if info.file_size > MAX_MEMBER_BYTES:
                raise ReadError(f"{self.name} is larger than 2 GiB inside the ZIP; unpack it first.")
            with archive.open(info) as member:
                yield io.BytesIO(member.read())

    @contextmanager
    def streamed(self) -> Iterator[BinaryIO]:
        """Like `opened`, but a ZIP member is streamed rather than read whole (for headers)."""
        if self.member is None:
            with self.opened() as handle:
                yield handle
            return
        with zipfile.ZipFile(self.file) as archive, archive.open(self.member) as member:
            yield member  # type: ignore[misc]  # ZipExtFile is a seekable binary stream


def is_hidden(name: str) -> bool:
    """Dot files and macOS resource forks are not studies."""
    return name.startswith(".") or name == "__MACOSX"


def folder_sources(folder: Path) -> list[Source]:
    """Every non-hidden file under `folder` (recursive, sorted, not following links), except
    DICOMDIR files: their images are found by the walk itself."""
    found: list[Source] = []
    for root, dirs, files in os.walk(folder, onerror=None):
        dirs[:] = sorted(d for d in dirs if not is_hidden(d))
        for name in sorted(files):
            if is_hidden(name) or name.upper() == "DICOMDIR":
                continue
            path = Path(root) / name
            found.append(Source(path, path))
    return found


def zip_sources(archive_path: Path) -> list[Source]:
    """Every file in a ZIP (directories and hidden entries left out)."""
    try:
        with zipfile.ZipFile(archive_path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ReadError(f"{archive_path.name} is not a readable ZIP archive ({short_reason(exc)}).") from exc
    sources = []
    for info in infos:
        parts = info.filename.replace("\\", "/").split("/")
        if info.is_dir() or any(is_hidden(p) for p in parts if p) or not parts[-1]:
            continue
        sources.append(Source(archive_path / info.filename, archive_path, info.filename))
    return sources


def is_zip(path: Path) -> bool:
    return path.suffix.lower() == ".zip" and zipfile.is_zipfile(path)

