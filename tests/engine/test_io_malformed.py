"""Malformed input never crashes or hangs the reader: truncated files, random bytes, wrong element
lengths, flipped bytes, empty files, folders and ZIPs of junk. Scanning reports a Problem (one
sentence) and decoding raises ReadError (one sentence); nothing else may come out.
"""

from __future__ import annotations

import struct
import tempfile
import zipfile
from datetime import timedelta
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file

from engine.io import ReadError, load
from engine.io.safety import check_jpeg_codestream

# pydicom warns about every non-conforming value it meets; the files here are meant to have them
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SEEDS = ["MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm",
         "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm", "image_dfl.dcm",
         "SC_rgb_jpeg_gdcm.dcm", "SC_rgb_jpeg_dcmtk.dcm", "JPGExtended.dcm",
         "JPEGLSNearLossless_16.dcm"]
FUZZ = settings(max_examples=40, deadline=timedelta(seconds=10), derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])

# (group, element, VR) of elements whose length field gets rewritten (explicit VR little endian)
LENGTH_TARGETS = [(0x0028, 0x0010, b"US"), (0x0028, 0x0011, b"US"), (0x0028, 0x0100, b"US"),
                  (0x0028, 0x0101, b"US"), (0x0028, 0x1050, b"DS"), (0x0008, 0x0016, b"UI"),
                  (0x0010, 0x0010, b"PN"), (0x7FE0, 0x0010, b"OW")]


@cache
def seed_bytes(name: str) -> bytes:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not installed")
    return Path(path).read_bytes()


def exercise(path: Path) -> None:
    """Load and decode everything; only the documented outcomes are allowed."""
    collection = load(path)  # must not raise for anything that exists
    for problem in collection.problems:
        assert problem.reason and "\n" not in problem.reason
    for image in collection.images:
        try:
            values = image.modality_values()
        except ReadError as exc:
            assert str(exc) and "\n" not in str(exc)
            continue
        assert values.ndim == 2 and values.dtype == np.float32
        assert values.shape == (image.rows, image.columns)


def exercise_bytes(data: bytes, name: str = "file.dcm") -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        exercise(path)


@FUZZ
@given(data=st.binary(max_size=2048), dicm=st.booleans())
def test_random_bytes(data, dicm):
    exercise_bytes((b"\x00" * 128 + b"DICM" if dicm else b"") + data)


@FUZZ
@given(seed=st.sampled_from(SEEDS), fraction=st.floats(0.0, 1.0))
def test_truncated_files(seed, fraction):
    data = seed_bytes(seed)
    exercise_bytes(data[: int(len(data) * fraction)])


@FUZZ
@given(seed=st.sampled_from(SEEDS),
       edits=st.lists(st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(0, 255)),
                      min_size=1, max_size=8))
def test_flipped_bytes(seed, edits):
    data = bytearray(seed_bytes(seed))
    for where, value in edits:
        data[int(where * len(data))] = value
    exercise_bytes(bytes(data))


@FUZZ
@given(target=st.sampled_from(LENGTH_TARGETS), length=st.integers(0, 2**32 - 1))
def test_wrong_element_lengths(target, length):
    data = bytearray(seed_bytes("MR_small.dcm"))
    group, element, vr = target
    at = data.find(struct.pack("<HH", group, element) + vr)
    assert at > 0
    if vr in (b"OW", b"OB"):  # 2 reserved bytes, then a 32-bit length
        data[at + 8: at + 12] = struct.pack("<I", length)
    else:
        data[at + 6: at + 8] = struct.pack("<H", length & 0xFFFF)
    exercise_bytes(bytes(data))


@FUZZ
@given(files=st.lists(st.binary(max_size=300), max_size=5))
def test_folder_and_zip_of_junk(files):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for i, data in enumerate(files):
            (root / f"junk{i}").write_bytes(data)
        (root / "empty").write_bytes(b"")
        collection = load(root)
        assert collection.images == [] and len(collection.problems) == len(files) + 1
        archive = root.parent / f"{root.name}.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            for i, data in enumerate(files):
                zf.writestr(f"dir/junk{i}", data)
        try:
            exercise(archive)
        finally:
            archive.unlink()


def test_empty_file_is_a_problem_not_a_crash(tmp_path):
    (tmp_path / "empty.dcm").write_bytes(b"")
    problem = load(tmp_path / "empty.dcm").problems[0]
    assert problem.reason == "empty.dcm is empty." and not problem.skipped


def test_huge_claimed_size_is_refused_before_decoding(tmp_path):
    data = bytearray(seed_bytes("MR_small.dcm"))
    for element in (0x0010, 0x0011):  # Rows, Columns -> 65535 x 65535
        at = data.find(struct.pack("<HH", 0x0028, element) + b"US")
        data[at + 8: at + 10] = struct.pack("<H", 65535)
    (tmp_path / "big.dcm").write_bytes(bytes(data))
    problem = load(tmp_path / "big.dcm").problems[0]
    assert "larger than supported" in problem.reason


def test_absurd_frame_count_is_refused(tmp_path):
    import pydicom

    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm", download=False))
    ds.NumberOfFrames = 999_999_999
    ds.save_as(tmp_path / "frames.dcm", enforce_file_format=True)
    problem = load(tmp_path / "frames.dcm").problems[0]
    assert "frames" in problem.reason and not problem.skipped


# -- regressions found by fuzzing: native decoders that took the process down ----------------


def test_damaged_jpeg_header_is_refused_before_gdcm(tmp_path):
    """A marker prefix overwritten in a header segment made GDCM throw a C++ exception through
    libjpeg (std::terminate: the whole viewer gone). The codestream is now checked first."""
    data = bytearray(seed_bytes("SC_rgb_jpeg_gdcm.dcm"))  # JPEG lossless SV1: GDCM only
    huffman_table = data.find(b"\xff\xc4", data.find(b"\xff\xd8\xff"))
    data[huffman_table] = 0x65
    (tmp_path / "bad.dcm").write_bytes(bytes(data))
    with pytest.raises(ReadError, match="stray bytes"):
        load(tmp_path / "bad.dcm").images[0].modality_values()


def test_rle_decoder_panic_becomes_a_read_error(tmp_path):
    """pylibjpeg-rle panics (a BaseException, not an Exception) on these two bytes."""
    data = bytearray(seed_bytes("MR_small_RLE.dcm"))
    data[5850], data[4979] = 248, 155
    (tmp_path / "bad.dcm").write_bytes(bytes(data))
    with pytest.raises(ReadError):
        load(tmp_path / "bad.dcm").images[0].modality_values()


def test_wild_jpeg_precision_is_refused_before_gdcm(tmp_path):
    """A frame header claiming 107-bit samples made GDCM segfault."""
    data = bytearray(seed_bytes("SC_rgb_jpeg_gdcm.dcm"))
    frame_header = data.find(b"\xff\xc3", data.find(b"\xff\xd8\xff"))  # lossless SOF3
    data[frame_header + 4] = 107  # precision byte: marker (2), length (2), then P
    (tmp_path / "bad.dcm").write_bytes(bytes(data))
    with pytest.raises(ReadError, match="precision"):
        load(tmp_path / "bad.dcm").images[0].modality_values()


def test_jpeg_codestream_check():
    import pydicom
    from pydicom.encaps import get_frame

    ds = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm", download=False))
    good = get_frame(ds.PixelData, 0)
    shape = {"rows": 100, "columns": 100, "samples": 3, "bits_allocated": 8}
    check_jpeg_codestream(good, **shape)
    with pytest.raises(ValueError, match="header says"):
        check_jpeg_codestream(good, **{**shape, "columns": 99})
    with pytest.raises(ValueError, match="components"):
        check_jpeg_codestream(good, **{**shape, "samples": 1})
    with pytest.raises(ValueError, match="start-of-image"):
        check_jpeg_codestream(good[2:], **shape)
