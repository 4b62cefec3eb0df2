"""Where files come from: a single file, a folder tree, a ZIP archive or a DICOMDIR.

A `Source` names one file to read, on disk or inside a ZIP, and opens it on demand, so headers
can be scanned quickly and pixels decoded later without keeping files open.
"""

from __future__ import annotations

import io
import os
import stat
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from engine.io.errors import ReadError, short_reason
from engine.io.model import Problem

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
            refusal = not_regular(self.file)
            if refusal:  # open() on a pipe waits forever, and a device never ends
                raise ReadError(refusal)
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


def not_regular(path: Path) -> str | None:
    """Why `path` (links followed) is not a regular file to read, as one sentence, or None.

    A pipe blocks `open()` until something writes to it, and a device such as /dev/zero never
    ends, so neither may reach a reader."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ReadError(f"{path.name} cannot be opened ({exc.strerror or short_reason(exc)}).") from exc
    if stat.S_ISREG(mode):
        return None
    kind = "a folder" if stat.S_ISDIR(mode) else "a pipe or device"
    return f"{path.name} is not a regular file ({kind}); skipped."


def folder_sources(folder: Path) -> tuple[list[Source], list[Problem]]:
    """Every non-hidden file under `folder` (recursive, sorted, not following links to folders),
    except DICOMDIR files: their images are found by the walk itself. Also a Problem for each
    folder that cannot be listed and each link to a folder, so that no file is lost silently."""
    found: list[Source] = []
    problems: list[Problem] = []
    pending = [folder]
    while pending:  # depth first, files of a folder before its subfolders, as os.walk
        directory = pending.pop()
        try:
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as exc:
            reason = exc.strerror or short_reason(exc)
            problems.append(Problem(directory, f"The folder {directory.name or directory} cannot be "
                                               f"read ({reason}); the files in it were skipped."))
            continue
        subfolders = []
        for entry in entries:
            if is_hidden(entry.name):
                continue
            path = directory / entry.name
            try:
                is_folder = entry.is_dir()  # follows links
                is_link = entry.is_symlink()
            except OSError:  # a link loop, say: reading it says what is wrong
                is_folder = is_link = False
            if is_folder and is_link:
                problems.append(Problem(path, f"{entry.name} is a link to a folder, which is not "
                                              "followed; open that folder itself.", skipped=True))
            elif is_folder:
                subfolders.append(path)
            elif entry.name.upper() != "DICOMDIR":
                found.append(Source(path, path))
        pending.extend(reversed(subfolders))
    return found, problems


def zip_sources(archive_path: Path) -> tuple[list[Source], list[Problem]]:
    """Every file in a ZIP (directories and hidden entries left out), shown relative to the
    archive even when stored with an absolute name; a member whose name climbs out with ".."
    is refused with a Problem."""
    try:
        with zipfile.ZipFile(archive_path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ReadError(f"{archive_path.name} is not a readable ZIP archive ({short_reason(exc)}).") from exc
    sources = []
    problems = []
    for info in infos:
        parts = [p for p in info.filename.replace("\\", "/").split("/") if p not in ("", ".")]
        if info.is_dir() or not parts or info.filename.endswith(("/", "\\")):
            continue
        shown = archive_path.joinpath(*parts)
        if ".." in parts:
            problems.append(Problem(shown, f"{parts[-1]} has \"..\" in its path inside "
                                           f"{archive_path.name}, which could point outside the "
                                           "archive; skipped."))
            continue
        if any(is_hidden(p) for p in parts):
            continue
        sources.append(Source(shown, archive_path, info.filename))
    return sources, problems


def is_zip(path: Path) -> bool:
    return path.suffix.lower() == ".zip" and path.is_file() and zipfile.is_zipfile(path)
