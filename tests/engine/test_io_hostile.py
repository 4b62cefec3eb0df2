"""Hostile or odd things in what a user opens: pipes and devices, files of zeros, DICOMDIRs whose
records loop or name missing files, unreadable folders, links to folders, ZIP members named with
".." or an absolute path, a ZIP inside a ZIP. Each costs one Problem (one sentence, no patient
data) and the rest is read; nothing waits forever. Every scan runs in a thread joined with a
timeout, so a returning bug fails the test instead of hanging the suite."""

from __future__ import annotations

import io
import os
import struct
import threading
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.fileset import FileSet
from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, generate_uid

from engine.io import Collection, dicom, load
from engine.io.dicom import read_header
from engine.io.sources import Source

LIMIT_S = 20.0  # generous on a loaded machine; the fixed code takes milliseconds
PATIENT = ("Hostile^Synthetic", "HOSTILE-1")


def load_within(path: Path, limit: float = LIMIT_S) -> Collection:
    """`load(path)` in a daemon thread: fails (never hangs) if it does not finish in time."""
    result: dict[str, object] = {}

    def work() -> None:
        try:
            result["value"] = load(path)
        except BaseException as exc:  # reported below, in the test's own thread
            result["error"] = exc

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        pytest.fail(f"loading {path.name} did not finish in {limit:.0f} s")
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result["value"]  # type: ignore[return-value]


def reasons(collection: Collection) -> list[str]:
    for problem in collection.problems:
        assert problem.reason and "\n" not in problem.reason
        assert not any(part in problem.reason for part in PATIENT)
    return [problem.reason for problem in collection.problems]


def make_dx(path: Path, instance: int = 1) -> Path:
    """A 4x3 DX image with the attributes pydicom's FileSet needs for its records."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.3680043.9.7", "1.2.826.0.1.3680043.9.7.1"
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.Modality = "20240101", "120000", "1", "DX"
    ds.SeriesNumber, ds.InstanceNumber = 1, instance
    ds.PatientName, ds.PatientID = PATIENT
    ds.set_pixel_data(np.arange(12, dtype=np.uint16).reshape(3, 4), "MONOCHROME2", 12)
    ds.save_as(path, enforce_file_format=True)
    return path


def bundled(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not installed")
    return Path(path)


needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")


# -- 1. pipes and devices ---------------------------------------------------------------------


@needs_fifo
def test_pipe_in_a_folder_is_skipped_not_waited_on(tmp_path):
    make_dx(tmp_path / "good.dcm")
    os.mkfifo(tmp_path / "a.dcm")
    try:
        collection = load_within(tmp_path)
    finally:
        _release_pipe(tmp_path / "a.dcm")
    assert [image.path.name for image in collection.images] == ["good.dcm"]
    assert reasons(collection) == ["a.dcm is not a regular file (a pipe or device); skipped."]
    assert collection.problems[0].skipped


@needs_fifo
@pytest.mark.parametrize("name", ["a.dcm", "b.zip", "DICOMDIR"])
def test_pipe_opened_directly_is_refused(tmp_path, name):
    os.mkfifo(tmp_path / name)
    try:
        collection = load_within(tmp_path / name)
    finally:
        _release_pipe(tmp_path / name)
    assert reasons(collection) == [f"{name} is not a regular file (a pipe or device); skipped."]


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero here")
def test_link_to_a_device_is_skipped(tmp_path):
    make_dx(tmp_path / "good.dcm")
    (tmp_path / "z.dcm").symlink_to("/dev/zero")
    collection = load_within(tmp_path)
    assert [image.path.name for image in collection.images] == ["good.dcm"]
    assert reasons(collection) == ["z.dcm is not a regular file (a pipe or device); skipped."]


def _release_pipe(path: Path) -> None:
    """Let a reader stuck in open() go (only if the bug is back): open the write end, close it."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass  # nobody is waiting on it


# -- 2. files of zeros --------------------------------------------------------------------------


@pytest.fixture
def forced_reads(monkeypatch) -> list[str]:
    """Names of the files pydicom is asked to parse with force=True."""
    calls: list[str] = []
    real = dicom.read_partial

    def spy(handle, *args, **kwargs):
        if kwargs.get("force"):
            calls.append(str(getattr(handle, "name", "?")))
        return real(handle, *args, **kwargs)

    monkeypatch.setattr(dicom, "read_partial", spy)
    return calls


def test_zeros_are_refused_before_a_forced_parse(tmp_path, forced_reads):
    (tmp_path / "zeros.bin").write_bytes(bytes(64 << 10))
    with zipfile.ZipFile(tmp_path / "z.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("member", bytes(64 << 10))
    for path, name in [(tmp_path / "zeros.bin", "zeros.bin"), (tmp_path / "z.zip", "member")]:
        collection = load_within(path)
        assert reasons(collection) == [f"{name} is not a DICOM or image file."]
    assert forced_reads == []


@pytest.mark.parametrize("where", ["after DICM", "after the meta", "inside the dataset"])
def test_a_dicom_file_zero_filled_after_its_header_is_refused_at_once(tmp_path, where):
    """DICM, then megabytes of zeros (a copy that failed, a transfer cut short): one sentence,
    without parsing the zeros (pydicom read them as one empty element per 8 bytes, 13 s per
    20 MB, and the file then had "no image")."""
    good = make_dx(tmp_path / "good.dcm").read_bytes()
    meta_end = 132 + 12 + struct.unpack("<I", good[140:144])[0]
    keep = {"after DICM": 132, "after the meta": meta_end, "inside the dataset": meta_end + 60}
    path = tmp_path / "zeroed.dcm"
    path.write_bytes(good[:keep[where]] + bytes(16 << 20))
    collection = load_within(path)
    assert reasons(collection) == ["zeroed.dcm holds zero bytes where its DICOM data should be; "
                                   "the file is probably damaged (zero-filled or cut short)."]


def test_zeros_after_a_meta_without_group_length_are_caught_too(tmp_path):
    """The meta's end is found by walking its elements, not from (0002,0000), which may be
    missing (or wrong)."""
    good = make_dx(tmp_path / "good.dcm").read_bytes()
    length = struct.unpack("<I", good[140:144])[0]
    assert good[132:136] == b"\x02\x00\x00\x00"  # (0002,0000) first: drop it
    path = tmp_path / "zeroed.dcm"
    path.write_bytes(good[:132] + good[144:144 + length] + bytes(4 << 20))
    assert reasons(load_within(path)) == [
        "zeroed.dcm holds zero bytes where its DICOM data should be; the file is probably "
        "damaged (zero-filled or cut short)."]


def test_a_report_padded_with_zeros_is_still_skipped_as_a_report(tmp_path):
    from pydicom.uid import BasicTextSRStorage

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = BasicTextSRStorage, generate_uid()
    ds.Modality = "SR"
    ds.save_as(tmp_path / "sr.dcm", enforce_file_format=True)
    path = tmp_path / "sr.dcm"
    path.write_bytes(path.read_bytes() + bytes(16))
    collection = load_within(tmp_path)
    assert len(collection.problems) == 1 and collection.problems[0].skipped
    assert "structured report" in collection.problems[0].reason


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", ["ExplVR_LitEndNoMeta.dcm", "ExplVR_BigEndNoMeta.dcm",
                                  "rtstruct.dcm"])
def test_bare_datasets_are_still_read(name, forced_reads):
    path = bundled(name)
    assert path.read_bytes()[128:132] != b"DICM"
    assert "SOPClassUID" in read_header(Source(path, path))
    assert forced_reads  # read the old way, by a forced parse


def test_bare_dataset_start_is_checked():
    starts = dicom._starts_like_dataset
    assert not starts(bytes(8)) and not starts(b"\x08\x00")
    assert starts(b"\x08\x00\x00\x00\x04\x00\x00\x00")  # implicit VR group length
    assert not starts(b"\x08\x00\x00\x00\x00\x00\x00\x00")  # group length of 0 bytes
    assert starts(b"\x08\x00\x05\x00CS\x0a\x00") and starts(b"\x00\x08\x00\x05CS\x00\x0a")
    assert not starts(b"\x10\x00\x10\x00PN\x04\x00")  # group 0010 first: never accepted


# -- 3, 4, 6. DICOMDIRs -------------------------------------------------------------------------


@pytest.fixture
def dicomdir(tmp_path) -> Path:
    """A two-image File-set written by pydicom: PATIENT > STUDY > SERIES > IMAGE, IMAGE."""
    originals = tmp_path / "originals"
    originals.mkdir()
    fileset = FileSet()
    for instance in (1, 2):
        fileset.add(make_dx(originals / f"{instance}.dcm", instance))
    fileset.write(tmp_path / "disc")
    return tmp_path / "disc" / "DICOMDIR"


def _set_offset(path: Path, record_type: str, keyword: str, value: int | str,
                nth: int = 0) -> None:
    """Rewrite one UL offset of the nth record of a type, in place (explicit VR little endian);
    `value` is an offset or the record type whose start it should point to."""
    records = [r for r in pydicom.dcmread(path).DirectoryRecordSequence]
    record = [r for r in records if r.DirectoryRecordType == record_type][nth]
    if isinstance(value, str):
        value = next(r for r in records if r.DirectoryRecordType == value).seq_item_tell
    tag = {"next": b"\x04\x00\x00\x14", "lower": b"\x04\x00\x20\x14"}[keyword]
    data = bytearray(path.read_bytes())
    at = data.find(tag + b"UL\x04\x00", record.seq_item_tell)
    assert at > 0
    data[at + 8: at + 12] = struct.pack("<I", value)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["self", "ancestor"])
def test_dicomdir_records_that_loop_fall_back_to_the_folder(dicomdir, damage):
    if damage == "self":  # the last image's Next points to itself
        records = pydicom.dcmread(dicomdir).DirectoryRecordSequence
        _set_offset(dicomdir, "IMAGE", "next", records[-1].seq_item_tell, nth=1)
    else:  # a series' Lower Level points back up to the patient
        _set_offset(dicomdir, "SERIES", "lower", "PATIENT")
    before = dicomdir.read_bytes()
    collection = load_within(dicomdir)
    assert len(collection.images) == 2
    assert reasons(collection) == [
        "DICOMDIR is damaged (its records loop); the folder was scanned instead."]
    assert dicomdir.read_bytes() == before


def test_dicomdir_record_pointing_nowhere_falls_back_to_the_folder(dicomdir):
    _set_offset(dicomdir, "STUDY", "lower", 0x7FFF0000)
    collection = load_within(dicomdir)
    assert len(collection.images) == 2
    assert reasons(collection) == [
        "DICOMDIR is damaged (a record points to nothing); the folder was scanned instead."]


def test_dicomdir_missing_file_is_one_problem_without_a_raw_warning(dicomdir, capfd):
    referenced = sorted(p for p in dicomdir.parent.rglob("*") if p.is_file() and p != dicomdir)
    referenced[0].unlink()
    name = referenced[0].relative_to(dicomdir.parent).as_posix()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        collection = load_within(dicomdir)
    assert len(collection.images) == 1
    assert reasons(collection) == [f"{name} is listed in DICOMDIR but missing; skipped."]
    assert not collection.problems[0].skipped  # a lost image counts as a failure
    assert not [w for w in caught if "does not exist" in str(w.message)]
    assert str(dicomdir.parent) not in capfd.readouterr().err


def test_unreadable_or_empty_dicomdir_says_what_to_do(tmp_path):
    make_dx(tmp_path / "DICOMDIR")  # an image, not a Media Storage Directory
    (reason,) = reasons(load_within(tmp_path / "DICOMDIR"))
    assert reason.startswith("DICOMDIR is not a readable DICOMDIR (")
    assert reason.endswith("; open its folder instead.")
    (tmp_path / "DICOMDIR").write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00")
    assert reasons(load_within(tmp_path / "DICOMDIR")) == [
        "DICOMDIR lists no files; open its folder instead."]


# -- 5. folders that cannot be listed, links to folders -----------------------------------------


def test_unreadable_folder_is_a_problem(tmp_path, monkeypatch):
    (tmp_path / "locked").mkdir()
    make_dx(tmp_path / "locked" / "hidden.dcm")
    make_dx(tmp_path / "good.dcm")
    real = os.scandir

    def scandir(path):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    collection = load_within(tmp_path)
    assert [image.path.name for image in collection.images] == ["good.dcm"]
    assert reasons(collection) == [
        "The folder locked cannot be read (Permission denied); the files in it were skipped."]
    assert collection.problems[0].path == tmp_path / "locked"
    assert not collection.problems[0].skipped


def test_link_to_a_folder_is_reported_not_followed(tmp_path):
    (tmp_path / "real").mkdir()
    make_dx(tmp_path / "real" / "one.dcm")
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "shortcut").symlink_to(tmp_path / "real", target_is_directory=True)
    collection = load_within(tmp_path / "study")
    assert collection.images == []
    assert reasons(collection) == [
        "shortcut is a link to a folder, which is not followed; open that folder itself."]


# -- 5, 6. ZIP member names, a ZIP inside a ZIP -------------------------------------------------


def test_zip_member_names_with_dots_absolute_or_nested_zip(tmp_path):
    image, other = (make_dx(tmp_path / f"{n}.dcm", n).read_bytes() for n in (1, 2))
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr("x.dcm", image)
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as archive:
        archive.writestr("/etc/abs.dcm", image)
        archive.writestr("./here.dcm", other)  # "." is not a hidden folder
        archive.writestr("../up.dcm", image)
        archive.writestr("inner.zip", inner.getvalue())
        archive.writestr("report.docx", inner.getvalue())  # Office files are ZIPs too
    collection = load_within(tmp_path / "a.zip")
    shown = sorted(str(image.path.relative_to(tmp_path)) for image in collection.images)
    assert shown == [os.path.join("a.zip", "etc", "abs.dcm"), os.path.join("a.zip", "here.dcm")]
    by_reason = {problem.reason: problem.skipped for problem in collection.problems}
    assert by_reason['up.dcm has ".." in its path inside a.zip, which could point outside the '
                     'archive; skipped.'] is False
    assert by_reason["inner.zip is a ZIP inside a ZIP; unpack it first."] is True  # a way on
    docx = [reason for reason in by_reason if reason.startswith("report.docx")]
    assert len(docx) == 1 and "ZIP" not in docx[0] and by_reason[docx[0]] is True  # not an image
