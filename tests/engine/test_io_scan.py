"""Opening files, folders, ZIPs and DICOMDIRs as Study > Series > Image, lazily and without ever
stopping on a bad file; PNG/JPEG/TIFF in 8 and 16 bits."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, generate_uid

from engine.io import ReadError, load, read_source, scan
from engine.io.sources import Source

# pydicom warns about every non-conforming value it meets; the files here are meant to have them
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"


def bundled(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not installed")
    return Path(path)


def make_dx(path: Path, *, study_uid: str, series_uid: str, study_date: str = "",
            series_number: int | None = None, instance: int | None = None,
            pixels: np.ndarray | None = None, frames: int = 1, **extra) -> Path:
    """A small DX For Presentation image (explicit VR little endian) with chosen identifiers."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.StudyDate, ds.Modality = study_date, "DX"
    ds.PatientName, ds.PatientID = "Test^Synthetic", "SYN-1"
    if series_number is not None:
        ds.SeriesNumber = series_number
    if instance is not None:
        ds.InstanceNumber = instance
    if pixels is None:
        pixels = np.arange(frames * 12 * 10, dtype=np.uint16).reshape(frames, 12, 10) % 4096
        pixels = pixels[0] if frames == 1 else pixels
    ds.set_pixel_data(pixels, "MONOCHROME2", 12)
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    """A tree with images, non-images, broken files and junk, as a real export folder has."""
    root = tmp_path / "export"
    (root / "a" / "b").mkdir(parents=True)
    shutil.copy(bundled("MR_small.dcm"), root / "a" / "IM1")
    shutil.copy(bundled("CT_small.dcm"), root / "a" / "b" / "IM2.dcm")
    shutil.copy(bundled("test-SR.dcm"), root / "a" / "report.dcm")
    (root / "notes.txt").write_text("not an image")
    (root / "empty.dcm").write_bytes(b"")
    (root / "truncated.dcm").write_bytes(bundled("CT_small.dcm").read_bytes()[:1000])
    (root / ".DS_Store").write_bytes(b"junk")
    PILImage.fromarray(np.full((8, 9), 77, np.uint8)).save(root / "a" / "photo.png")
    return root


class TestFolder:
    def test_finds_images_and_reports_every_other_file(self, mixed_folder):
        collection = load(mixed_folder)
        names = sorted(image.path.name for image in collection.images)
        assert names == ["IM1", "IM2.dcm", "photo.png"]
        problems = {p.path.name: p for p in collection.problems}
        assert set(problems) == {"report.dcm", "notes.txt", "empty.dcm", "truncated.dcm"}
        assert problems["report.dcm"].skipped and "structured report" in problems["report.dcm"].reason
        assert problems["notes.txt"].skipped
        assert not problems["empty.dcm"].skipped and not problems["truncated.dcm"].skipped
        for problem in collection.problems:  # one sentence each
            assert problem.reason.endswith(".") and "\n" not in problem.reason

    def test_is_a_generator_with_progress(self, mixed_folder):
        events = scan(mixed_folder)
        assert not isinstance(events, list)
        events = list(events)
        progress = [e for e in events if e.kind == "progress"]
        assert [e.done for e in progress] == list(range(1, 8))
        assert all(e.total == 7 for e in events)

    def test_headers_only_until_pixels_are_asked_for(self, mixed_folder):
        image = next(e.image for e in scan(mixed_folder) if e.kind == "image")
        assert image._cache is None and "PixelData" not in image.dataset
        assert image.modality_values().shape == (image.rows, image.columns)
        image.release()
        assert image._cache is None

    def test_missing_path_raises_at_once(self, tmp_path):
        with pytest.raises(ReadError, match="does not exist"):
            scan(tmp_path / "nope")

    def test_folder_of_non_dicom_files(self, tmp_path):
        for i in range(3):
            (tmp_path / f"f{i}.bin").write_bytes(bytes(range(i * 7, i * 7 + 200)))
        collection = load(tmp_path)
        assert collection.images == [] and len(collection.problems) == 3
        assert all(p.skipped for p in collection.problems)

    def test_duplicates_are_reported_once(self, tmp_path):
        shutil.copy(bundled("MR_small.dcm"), tmp_path / "one.dcm")
        shutil.copy(bundled("MR_small_RLE.dcm"), tmp_path / "two.dcm")  # same SOP Instance UID
        collection = load(tmp_path)
        assert len(collection.images) == 1
        assert collection.problems[0].skipped and "already found" in collection.problems[0].reason


class TestModel:
    def test_sorted_as_a_reader_expects(self, tmp_path):
        old, new = generate_uid(), generate_uid()
        s1, s2, s3 = generate_uid(), generate_uid(), generate_uid()
        make_dx(tmp_path / "z", study_uid=old, series_uid=s1, study_date="20190101",
                series_number=1, instance=1)
        make_dx(tmp_path / "y", study_uid=new, series_uid=s3, study_date="20240301",
                series_number=10, instance=2)
        make_dx(tmp_path / "x", study_uid=new, series_uid=s3, study_date="20240301",
                series_number=10, instance=1)
        make_dx(tmp_path / "w", study_uid=new, series_uid=s2, study_date="20240301",
                series_number=2, instance=5)
        make_dx(tmp_path / "v", study_uid=generate_uid(), series_uid=generate_uid())  # undated
        studies = load(tmp_path).studies
        assert [s.study_date for s in studies] == ["20240301", "20190101", ""]  # newest first
        assert [series.number for series in studies[0].series] == [2, 10]
        assert [im.instance_number for im in studies[0].series[1].images] == [1, 2]
        assert [im.path.name for im in studies[0].series[1].images] == ["x", "y"]

    def test_descriptors_without_leaking_identifiers(self, tmp_path):
        make_dx(tmp_path / "a", study_uid=generate_uid(), series_uid=generate_uid(),
                study_date="20200202", series_number=3, instance=1, StudyDescription="CHEST PA",
                SeriesDescription="PA", AccessionNumber="ACC9", PatientBirthDate="19700101",
                PatientSex="F")
        study = load(tmp_path).studies[0]
        assert (study.patient_name, study.patient_id, study.sex) == ("Test^Synthetic", "SYN-1", "F")
        assert (study.study_description, study.accession, study.birth_date) == (
            "CHEST PA", "ACC9", "19700101")
        series = study.series[0]
        assert (series.number, series.description, series.modality) == (3, "PA", "DX")
        for text in (repr(study), repr(series), repr(series.images[0])):
            assert "Synthetic" not in text and "SYN-1" not in text and "19700101" not in text

    def test_multiframe_frames_and_functional_group_windows(self, tmp_path):
        pixels = np.stack([np.full((6, 5), v, np.uint16) for v in (10, 20, 30)])
        path = make_dx(tmp_path / "mf", study_uid=generate_uid(), series_uid=generate_uid(),
                       pixels=pixels, NumberOfFrames=3)
        ds = pydicom.dcmread(path)
        shared, voi = Dataset(), Dataset()
        voi.WindowCenter, voi.WindowWidth = 25, 30
        shared.FrameVOILUTSequence = [voi]
        ds.SharedFunctionalGroupsSequence = [shared]
        ds.save_as(path, enforce_file_format=True)
        images = load(path).images
        assert [im.frame for im in images] == [0, 1, 2]
        assert [float(im.modality_values()[0, 0]) for im in images] == [10.0, 20.0, 30.0]
        assert images[2].windows[0].center == 25.0

    def test_windows_with_explanations_and_spacing(self, tmp_path):
        path = make_dx(tmp_path / "w", study_uid=generate_uid(), series_uid=generate_uid(),
                       WindowCenter=[2000, 1500], WindowWidth=[4000, 800],
                       WindowCenterWidthExplanation=["NORMAL", "LUNG"],
                       VOILUTFunction="SIGMOID", ImagerPixelSpacing=[0.15, 0.14],
                       RescaleSlope=2, RescaleIntercept=-10)
        image = load(path).images[0]
        assert [(w.center, w.width, w.explanation, w.function) for w in image.windows] == [
            (2000.0, 4000.0, "NORMAL", "SIGMOID"), (1500.0, 800.0, "LUNG", "SIGMOID")]
        assert (image.pixel_spacing, image.spacing_source) == ((0.15, 0.14), "ImagerPixelSpacing")
        assert float(image.modality_values()[0, 1]) == 1 * 2 - 10


class TestContainers:
    def test_zip(self, mixed_folder, tmp_path):
        archive = tmp_path / "study.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(mixed_folder.rglob("*")):
                if path.is_file():
                    zf.write(path, path.relative_to(mixed_folder).as_posix())
        collection = load(archive)
        assert sorted(im.path.name for im in collection.images) == ["IM1", "IM2.dcm", "photo.png"]
        mr = next(im for im in collection.images if im.path.name == "IM1")
        assert mr.source_file == archive and str(mr.path).startswith(str(archive))
        reference = pydicom.dcmread(bundled("MR_small.dcm")).pixel_array
        assert np.array_equal(mr.modality_values(), reference)
        assert len(collection.problems) == 4

    def test_broken_zip_is_a_problem(self, tmp_path):
        archive = tmp_path / "bad.zip"
        archive.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
        collection = load(archive)
        assert collection.images == [] and collection.problems

    def test_dicomdir(self):
        collection = load(bundled("dicomdirtests/DICOMDIR"))
        assert len(collection.images) == 31 and not collection.problems
        assert len(collection.studies) == 6
        assert collection.images[0].modality_values().ndim == 2

    def test_dicomdir_under_another_name_is_still_a_dicomdir(self):
        assert len(load(bundled("dicomdirtests/DICOMDIR-implicit")).images) == 31

    def test_non_image_dicom_objects_are_skipped_with_a_reason(self):
        for name, words in [("rtplan.dcm", "radiotherapy"), ("waveform_ecg.dcm", "waveform"),
                            ("test-SR.dcm", "structured report"),
                            ("ExplVR_LitEndNoMeta.dcm", "radiotherapy")]:
            problem = load(bundled(name)).problems[0]
            assert problem.skipped and words in problem.reason


class TestRaster:
    def _read(self, path: Path):
        image = read_source(Source(path, path))[0]
        assert not image.is_dicom and image.dataset is None and image.windows == []
        return image

    def test_png_8_bit_and_rgba(self, tmp_path):
        gray = np.arange(60, dtype=np.uint8).reshape(6, 10)
        PILImage.fromarray(gray).save(tmp_path / "g.png")
        rgba = np.dstack([gray, gray, gray, np.full_like(gray, 255)])
        PILImage.fromarray(rgba, "RGBA").save(tmp_path / "c.png")
        for name in ("g.png", "c.png"):
            image = self._read(tmp_path / name)
            assert (image.rows, image.columns, image.bits_stored) == (6, 10, 8)
            assert np.array_equal(image.modality_values(), gray.astype(np.float32))

    def test_colour_becomes_luminance(self, tmp_path):
        rgb = np.zeros((2, 2, 3), np.uint8)
        rgb[..., 1] = 200
        PILImage.fromarray(rgb).save(tmp_path / "rgb.png")
        assert np.allclose(self._read(tmp_path / "rgb.png").modality_values(), 0.587 * 200)

    def test_png_and_tiff_16_bit(self, tmp_path):
        import tifffile

        values = (np.arange(48, dtype=np.uint16).reshape(6, 8) * 1000)
        PILImage.fromarray(values).save(tmp_path / "v.png")
        tifffile.imwrite(tmp_path / "v.tif", values)
        tifffile.imwrite(tmp_path / "rgb.tiff", np.dstack([values] * 3), photometric="rgb")
        for name in ("v.png", "v.tif", "rgb.tiff"):
            image = self._read(tmp_path / name)
            assert image.bits_stored == 16, name
            assert np.array_equal(image.modality_values(), values.astype(np.float32)), name

    def test_jpeg(self, tmp_path):
        PILImage.fromarray(np.full((16, 16), 100, np.uint8)).save(tmp_path / "x.jpg")
        image = self._read(tmp_path / "x.jpg")
        assert image.lossy and abs(float(image.modality_values().mean()) - 100) < 2

    def test_nih_png_if_present(self):
        path = SHARED / "cxr14" / "train" / "00000773_001.png"
        if not path.exists():
            pytest.skip(f"{path} is absent")
        image = self._read(path)
        assert (image.rows, image.columns) == (1024, 1024)
        assert image.modality_values().ndim == 2
