"""Open a path (file, folder, DICOMDIR, ZIP) as a stream of Images and Problems, then group them
into Study > Series > Image (PS3.3 C.7 Patient / Study / Series / Image modules)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from os import PathLike
from pathlib import Path

from pydicom.dataset import Dataset

from engine.io.dicom import images_from_header, read_header, skip_reason
from engine.io.errors import ReadError, is_interrupt, short_reason
from engine.io.model import Collection, Image, Problem, ScanEvent, Series, Study
from engine.io.raster import RASTER_SUFFIXES, looks_like_raster, raster_images
from engine.io.sources import Source, folder_sources, is_zip, not_regular, zip_sources

_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
_FIRST_OFFSET = "OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity"
_NEXT_OFFSET = "OffsetOfTheNextDirectoryRecord"
_LOWER_OFFSET = "OffsetOfReferencedLowerLevelDirectoryEntity"
_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")


def scan(path: str | PathLike[str]) -> Iterator[ScanEvent]:
    """Stream what `path` holds: one "image" event per frame, a "problem" event per file not
    opened, and a "progress" event after each file (done, total). Headers only: pixels are
    decoded when an Image's `modality_values()` is called. Raises ReadError at once if `path`
    does not exist; after that nothing raises, whatever the files contain."""
    root = Path(path)
    if not root.exists():
        raise ReadError(f"{root} does not exist.")
    return _events(root)


def load(path: str | PathLike[str],
         progress: Callable[[int, int | None], None] | None = None) -> Collection:
    """Everything `scan(path)` finds, grouped and sorted: studies newest first (undated last),
    series by Series Number, images by Instance Number then frame."""
    images: list[Image] = []
    problems: list[Problem] = []
    for event in scan(path):
        if event.image is not None:
            images.append(event.image)
        elif event.problem is not None:
            problems.append(event.problem)
        elif progress is not None:
            progress(event.done, event.total)
    return Collection(group(images), problems)


def _events(root: Path) -> Iterator[ScanEvent]:
    try:
        sources, problems = _sources(root)
    except ReadError as exc:
        yield ScanEvent("problem", problem=Problem(root, str(exc)), done=1, total=1)
        return
    total = len(sources)
    for problem in problems:  # folders not listed, links not followed, files a DICOMDIR lacks
        yield ScanEvent("problem", problem=problem, done=0, total=total)
    seen: set[tuple[str, int]] = set()
    for done, source in enumerate(sources, start=1):
        for image, problem in _read_expanding(source, seen):
            if image is not None:
                yield ScanEvent("image", image=image, done=done, total=total)
            else:
                yield ScanEvent("problem", problem=problem, done=done, total=total)
        yield ScanEvent("progress", done=done, total=total)


def _sources(root: Path) -> tuple[list[Source], list[Problem]]:
    if root.is_dir():
        return folder_sources(root)
    if not root.is_file():  # a pipe or a device: read_source says so, without opening it
        return [Source(root, root)], []
    if is_zip(root):
        return zip_sources(root)
    if root.name.upper() == "DICOMDIR" or _is_dicomdir(root):
        return dicomdir_sources(root)
    return [Source(root, root)], []


def _is_dicomdir(path: Path) -> bool:
    try:
        ds = read_header(Source(path, path))
    except ReadError:
        return False
    return _get(ds, "SOPClassUID") == _DICOMDIR_CLASS or (
        _get(ds.file_meta, "MediaStorageSOPClassUID") == _DICOMDIR_CLASS)


def dicomdir_sources(path: Path) -> tuple[list[Source], list[Problem]]:
    """The files a DICOMDIR (PS3.10 Media Storage Directory) references, via pydicom's FileSet,
    and a Problem for each referenced file that is missing. A DICOMDIR whose record offsets
    loop or point nowhere (pydicom would recurse forever) is replaced by a scan of its folder."""
    from pydicom import dcmread
    from pydicom.fileset import FileSet

    try:
        with warnings.catch_warnings():  # pydicom warns with full paths; Problems say it instead
            warnings.simplefilter("ignore")
            ds = dcmread(path)
            damage = _record_damage(ds)
            if damage is not None:
                sources, problems = folder_sources(path.parent)
                notice = Problem(path, f"{path.name} is damaged ({damage}); the folder was "
                                       "scanned instead.")
                return sources, [notice, *problems]
            fileset = FileSet(ds)
            sources = [Source(Path(instance.path), Path(instance.path)) for instance in fileset]
            problems = [Problem(path.parent / name, f"{name} is listed in {path.name} but "
                                                    "missing; skipped.")
                        for name in _missing_references(ds, path.parent)]
        if not sources and not problems:
            problems = [Problem(path, f"{path.name} lists no files; open its folder instead.")]
        return sources, problems
    except BaseException as exc:
        if is_interrupt(exc):
            raise
        raise ReadError(f"{path.name} is not a readable DICOMDIR ({short_reason(exc)}); open its "
                        "folder instead.") from exc


def _record_damage(ds: Dataset) -> str | None:
    """What is wrong with the chain of directory records (PS3.3 F.3.2.1), or None.

    Follows every Next and Lower-Level offset from the root's first record: a record reached
    twice means the offsets loop, an offset that is no record's start means they point nowhere.
    """
    records = ds.get("DirectoryRecordSequence")
    if not records:
        return None
    starts = {record.seq_item_tell: record for record in records}
    visited: set[int] = set()
    pending = [ds.get(_FIRST_OFFSET)]
    while pending:
        offset = pending.pop()
        if not offset:
            continue
        if offset in visited:
            return "its records loop"
        record = starts.get(offset)
        if record is None:
            return "a record points to nothing"
        visited.add(offset)
        pending += [record.get(_NEXT_OFFSET), record.get(_LOWER_OFFSET)]
    return None


def _missing_references(ds: Dataset, root: Path) -> list[str]:
    """Referenced File IDs (PS3.10 8.3) of the DICOMDIR that are not on disk, as "A/B/IM1"."""
    missing: list[str] = []
    for record in ds.get("DirectoryRecordSequence") or []:
        file_id = record.get("ReferencedFileID")
        if not file_id:
            continue
        parts = [file_id] if isinstance(file_id, str) else [str(part) for part in file_id]
        name = "/".join(parts)
        if name not in missing and not os.path.exists(root.joinpath(*parts)):
            missing.append(name)
    return missing


def _read_expanding(source: Source, seen: set[tuple[str, int]]
                    ) -> Iterator[tuple[Image | None, Problem | None]]:
    """Images or a Problem for one source; a ZIP inside a folder is opened and read too."""
    if source.member is None and is_zip(source.file):
        try:
            members, problems = zip_sources(source.file)
        except ReadError as exc:
            yield None, Problem(source.path, str(exc))
            return
        for problem in problems:
            yield None, problem
        for member in members:
            yield from _read_one(member, seen)
        return
    yield from _read_one(source, seen)


def _read_one(source: Source, seen: set[tuple[str, int]]
              ) -> Iterator[tuple[Image | None, Problem | None]]:
    try:
        images, notes = read_source_noting(source)
    except NotAnImage as exc:
        yield None, Problem(source.path, str(exc), skipped=True)
        return
    except ReadError as exc:
        yield None, Problem(source.path, str(exc))
        return
    except BaseException as exc:  # last line of defence: one bad file never stops a folder
        if is_interrupt(exc):
            raise
        yield None, Problem(source.path, f"{source.name} could not be read ({short_reason(exc)}).")
        return
    for note in notes:  # the file opened, without part of it: said, and skipped
        yield None, Problem(source.path, note, skipped=True)
    for image in images:
        key = (image.sop_instance_uid, image.frame)
        if image.sop_instance_uid and key in seen:
            yield None, Problem(image.path, f"{source.name} repeats an image already found "
                                            "(same SOP Instance UID).", skipped=True)
            continue
        seen.add(key)
        yield image, None


class NotAnImage(ReadError):
    """A readable file that holds nothing to show (not DICOM, or a DICOM non-image object)."""


def read_source(source: Source) -> list[Image]:
    """Images of one file (one per frame); NotAnImage or ReadError otherwise."""
    return read_source_noting(source)[0]


def read_source_noting(source: Source) -> tuple[list[Image], list[str]]:
    """`read_source`, and sentences for what the file held that was left out (the unreadable
    pages after the first of a TIFF), each worth a Problem for the file."""
    if source.member is None:
        refusal = not_regular(source.file)
        if refusal:
            raise NotAnImage(refusal)
    head = _head(source)
    if len(head) == 0:
        raise ReadError(f"{source.name} is empty.")
    is_dicom_file = head[128:132] == b"DICM"
    if (source.member is not None and not is_dicom_file and head[:4] in _ZIP_SIGNATURES
            and source.path.suffix.lower() == ".zip"):
        # Said as a way on, but skipped like any non-image: .docx, .xlsx and .jar are ZIPs too,
        # and go the ordinary way (not an image), as the same files do in a folder
        raise NotAnImage(f"{source.name} is a ZIP inside a ZIP; unpack it first.")
    if not is_dicom_file and (source.path.suffix.lower() in RASTER_SUFFIXES
                              or looks_like_raster(head)):
        return raster_images(source)  # every readable page of a multi-page TIFF
    try:
        ds = read_header(source)
    except ReadError as exc:
        if is_dicom_file:
            raise
        raise NotAnImage(f"{source.name} is not a DICOM or image file.") from exc
    try:
        reason = skip_reason(ds)
    except ReadError as exc:
        raise ReadError(f"{source.name}: {str(exc)[0].lower()}{str(exc)[1:]}") from exc
    if reason is not None:
        raise NotAnImage(f"{source.name} {reason}.")
    return images_from_header(source, ds), []


def _head(source: Source) -> bytes:
    try:
        with source.streamed() as handle:
            return handle.read(132)
    except ReadError:
        raise
    except BaseException as exc:
        if is_interrupt(exc):
            raise
        raise ReadError(f"{source.name} cannot be opened ({short_reason(exc)}).") from exc


# -- grouping ---------------------------------------------------------------------------------


def group(images: list[Image]) -> list[Study]:
    """Study > Series > Image from a flat list, sorted as a reader expects (see `load`)."""
    studies: dict[str, Study] = {}
    series_of: dict[tuple[str, str], Series] = {}
    for image in images:
        study_key, series_key = _keys(image)
        study = studies.get(study_key)
        if study is None:
            study = studies[study_key] = _study(image)
        series = series_of.get((study_key, series_key))
        if series is None:
            series = series_of[(study_key, series_key)] = _series(image, series_key)
            study.series.append(series)
        series.images.append(image)
    for study in studies.values():
        for series in study.series:
            series.images.sort(key=_image_order)
        study.series.sort(key=_series_order)
    return _sort_studies(list(studies.values()))


def _keys(image: Image) -> tuple[str, str]:
    ds = image.dataset
    if ds is None:
        folder = str(image.path.parent)
        return f"folder:{folder}", f"folder:{folder}"
    study = _get(ds, "StudyInstanceUID") or f"no-study:{image.path.parent}"
    series = _get(ds, "SeriesInstanceUID") or (
        f"no-series:{_get(ds, 'Modality')}:{_get(ds, 'SeriesNumber')}")
    return study, series


def _study(image: Image) -> Study:
    ds = image.dataset
    if ds is None:
        return Study(study_description=image.path.parent.name)
    return Study(
        patient_name=_get(ds, "PatientName"), patient_id=_get(ds, "PatientID"),
        birth_date=_get(ds, "PatientBirthDate"), sex=_get(ds, "PatientSex"),
        study_uid=_get(ds, "StudyInstanceUID"), study_date=_get(ds, "StudyDate"),
        study_time=_get(ds, "StudyTime"), study_description=_get(ds, "StudyDescription"),
        accession=_get(ds, "AccessionNumber"),
    )


def _series(image: Image, key: str) -> Series:
    ds = image.dataset
    if ds is None:
        return Series(series_uid="", description=image.path.parent.name, modality="OT")
    number = _get(ds, "SeriesNumber")
    try:
        parsed = int(float(number)) if number else None
    except ValueError:
        parsed = None
    return Series(series_uid=_get(ds, "SeriesInstanceUID"), number=parsed,
                  description=_get(ds, "SeriesDescription"), modality=_get(ds, "Modality"))


def _get(ds: Dataset, keyword: str) -> str:
    try:
        value = ds.get(keyword)
    except Exception:
        return ""
    return "" if value is None else str(value).strip()


def _image_order(image: Image) -> tuple:
    number = image.instance_number
    return (number is None, number if number is not None else 0, str(image.path), image.frame)


def _series_order(series: Series) -> tuple:
    return (series.number is None, series.number or 0, series.description, series.series_uid)


def _sort_studies(studies: list[Study]) -> list[Study]:
    dated = sorted((s for s in studies if s.study_date),
                   key=lambda s: (s.study_date, s.study_time), reverse=True)
    undated = sorted((s for s in studies if not s.study_date), key=lambda s: s.study_description)
    return dated + undated
