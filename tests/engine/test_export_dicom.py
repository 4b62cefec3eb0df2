"""The derived Secondary Capture DICOM: re-read with pydicom, required tags present and right,
UIDs new, spacing scaled, windows and values kept, source bytes untouched, writes atomic."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)

import engine
from engine.io import load
from engine.io.export import ExportError, Provenance, atomic_write, write_derived_dicom

# pydicom warns about every non-conforming value it meets; the files here are meant to have them
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT.parent / "shared" / "data" / "dicom"
PROVENANCE = Provenance(model_name="Fidelity", model_sha256="0123abcd" * 8, scale=4, tile=256,
                        overlap=16, precision="bf16", device="cpu")


def make_source(path: Path, *, pixels: np.ndarray | None = None, signed: bool = False,
                photometric: str = "MONOCHROME1", **extra) -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID, ds.SOPInstanceUID = DigitalXRayImageStorageForPresentation, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Müller^Zoë", "PID-42", "19800101"
    ds.OtherPatientIDs, ds.PatientAddress, ds.AccessionNumber = "OTHER-7", "1 Road", "ACC-1"
    ds.StudyDate, ds.StudyTime, ds.Modality, ds.SeriesNumber, ds.InstanceNumber = (
        "20240102", "101010", "DX", 3, 7)
    ds.PixelSpacing, ds.ImagerPixelSpacing = [0.2, 0.16], [0.15, 0.15]
    ds.WindowCenter, ds.WindowWidth = [2048, 1000], [4096, 500]
    ds.WindowCenterWidthExplanation = ["FULL", "LUNG"]
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, 0, "US"
    ds.PresentationLUTShape = "INVERSE" if photometric == "MONOCHROME1" else "IDENTITY"
    if pixels is None:
        pixels = (np.arange(16 * 12).reshape(16, 12) * 20).astype(np.int16 if signed else np.uint16)
    ds.set_pixel_data(pixels, photometric, 12)
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def enhance(values: np.ndarray, scale: int = 4) -> np.ndarray:
    """A stand-in for the model: nearest-neighbour x4 plus a little overshoot."""
    up = np.kron(values, np.ones((scale, scale), np.float32))
    up[0, 0] = values.max() + 10_000  # SR overshoot beyond what 12 bits can hold
    return up.astype(np.float32)


@pytest.fixture
def source(tmp_path):
    path = make_source(tmp_path / "source.dcm")
    return path, load(path).images[0]


def test_round_trip_tags(source, tmp_path):
    path, image = source
    before = sha256(path)
    out = write_derived_dicom(image, enhance(image.modality_values()), tmp_path / "out.dcm",
                              PROVENANCE)
    assert sha256(path) == before  # the source is never modified
    src, ds = pydicom.dcmread(path), pydicom.dcmread(out)

    assert ds.SOPClassUID == SecondaryCaptureImageStorage == ds.file_meta.MediaStorageSOPClassUID
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.SOPInstanceUID != src.SOPInstanceUID and ds.SeriesInstanceUID != src.SeriesInstanceUID
    assert ds.StudyInstanceUID == src.StudyInstanceUID
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
    assert ds.ConversionType == "WSD"
    assert ds.SeriesDescription == "AI x4 super-resolution – not for diagnosis"
    for part in ("Fidelity", "0123abcd" * 8, "x4", "tile 256", "bf16"):
        assert part in ds.DerivationDescription
    reference = ds.SourceImageSequence[0]
    assert reference.ReferencedSOPClassUID == src.SOPClassUID
    assert reference.ReferencedSOPInstanceUID == src.SOPInstanceUID
    assert reference.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"
    assert reference.SpatialLocationsPreserved == "NO"
    assert "Region" not in ds.DerivationDescription
    equipment = ds.ContributingEquipmentSequence[-1]
    assert equipment.Manufacturer == "CXR Enhance"
    assert equipment.SoftwareVersions == engine.__version__
    assert equipment.PurposeOfReferenceCodeSequence[0].CodeValue == "109102"
    assert [float(v) for v in ds.PixelSpacing] == pytest.approx([0.05, 0.04])
    assert [float(v) for v in ds.ImagerPixelSpacing] == pytest.approx([0.0375, 0.0375])
    assert (ds.Rows, ds.Columns) == (64, 48)
    assert (ds.BitsAllocated, ds.BitsStored, ds.PixelRepresentation) == (16, 12, 0)
    # Patient / study modules copied (compared, never printed)
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "StudyDate", "StudyTime",
                    "AccessionNumber"):
        assert ds[keyword].value == src[keyword].value, keyword
    assert ds.SeriesNumber == 1003 and ds.InstanceNumber == 7


def test_a_region_says_which_source_pixels_it_covers(source, tmp_path):
    import dataclasses

    path, image = source
    values = image.modality_values()[2:10, 3:9]
    provenance = dataclasses.replace(PROVENANCE, region=(2, 3, 10, 9))
    ds = pydicom.dcmread(write_derived_dicom(image, enhance(values), tmp_path / "part.dcm", provenance))
    assert "Region of the source only: rows 2-9, columns 3-8" in ds.DerivationDescription
    assert ds.Rows == 32 and ds.Columns == 24

    class Result:  # an EnhanceResult's fields, as Provenance.from_result reads them
        model_name, model_sha256, scale, tile, overlap, precision, device = "M", "ff", 4, 64, 8, "fp32", "cpu"
        region = (2, 3, 10, 9)

    assert Provenance.from_result(Result()).region == (2, 3, 10, 9)
    Result.region = None
    assert Provenance.from_result(Result()).region is None


def test_windows_and_values_keep_their_meaning(source, tmp_path):
    _, image = source
    enhanced = enhance(image.modality_values())
    out = write_derived_dicom(image, enhanced, tmp_path / "out.dcm", PROVENANCE)
    derived = load(out).images[0]
    assert [(w.center, w.width, w.explanation) for w in derived.windows] == [
        (2048.0, 4096.0, "FULL"), (1000.0, 500.0, "LUNG")]
    expected = np.clip(np.rint(enhanced), 0, 4095)  # 12 bits stored: the overshoot is clipped
    assert np.array_equal(derived.modality_values(), expected)
    # One inversion, carried by the Photometric Interpretation alone (SC has no Presentation LUT).
    assert derived.photometric == "MONOCHROME1" and derived.presentation_lut_shape is None


def test_rescale_and_signed_values(tmp_path):
    pixels = (np.arange(-48, 48).reshape(8, 12) * 30).astype(np.int16)
    path = make_source(tmp_path / "s.dcm", pixels=pixels, signed=True, photometric="MONOCHROME2",
                       RescaleSlope=2, RescaleIntercept=-1024)
    image = load(path).images[0]
    enhanced = np.kron(image.modality_values(), np.ones((2, 2), np.float32))
    out = write_derived_dicom(image, enhanced, tmp_path / "o.dcm",
                              Provenance("M", "ff", 2, 64, 8, "fp32", "cpu"))
    ds = pydicom.dcmread(out)
    assert (ds.PixelRepresentation, float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (
        1, 2.0, -1024.0)
    assert np.array_equal(load(out).images[0].modality_values(), enhanced)
    assert ds.SeriesDescription.startswith("AI x2 ")


def test_lossy_flag_is_never_reset(tmp_path):
    path = make_source(tmp_path / "l.dcm", LossyImageCompression="01",
                       LossyImageCompressionRatio=12.5, LossyImageCompressionMethod="ISO_10918_1")
    image = load(path).images[0]
    out = write_derived_dicom(image, enhance(image.modality_values()), tmp_path / "o.dcm",
                              PROVENANCE, compression="rle")
    ds = pydicom.dcmread(out)
    assert ds.LossyImageCompression == "01"
    assert float(ds.LossyImageCompressionRatio) == 12.5
    assert ds.LossyImageCompressionMethod == "ISO_10918_1"


def test_lossless_source_stays_00(source, tmp_path):
    path = make_source(tmp_path / "z.dcm", LossyImageCompression="00")
    image = load(path).images[0]
    ds = pydicom.dcmread(write_derived_dicom(image, enhance(image.modality_values()),
                                             tmp_path / "o.dcm", PROVENANCE))
    assert ds.LossyImageCompression == "00"


@pytest.mark.parametrize("compression", ["rle", "j2k"])
def test_lossless_compression_round_trips(source, tmp_path, compression):
    _, image = source
    enhanced = enhance(image.modality_values())
    out = write_derived_dicom(image, enhanced, tmp_path / "c.dcm", PROVENANCE,
                              compression=compression)
    derived = load(out).images[0]
    assert derived.transfer_syntax != ExplicitVRLittleEndian
    assert np.array_equal(derived.modality_values(), np.clip(np.rint(enhanced), 0, 4095))


def test_anonymise_removes_identifiers(source, tmp_path):
    _, image = source
    out = write_derived_dicom(image, enhance(image.modality_values()), tmp_path / "a.dcm",
                              PROVENANCE, anonymise=True)
    ds = pydicom.dcmread(out)
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber"):
        assert ds[keyword].value in ("", None), keyword
    for keyword in ("OtherPatientIDs", "PatientAddress"):
        assert keyword not in ds
    assert ds.PatientIdentityRemoved == "YES"
    codes = [item.PurposeOfReferenceCodeSequence[0].CodeValue
             for item in ds.ContributingEquipmentSequence]
    assert "109104" in codes  # De-identifying Equipment
    raw = out.read_bytes()
    assert b"PID-42" not in raw and b"ACC-1" not in raw and b"19800101" not in raw


def test_non_ascii_names_survive_as_utf8(source, tmp_path):
    path, image = source
    out = write_derived_dicom(image, enhance(image.modality_values()), tmp_path / "u.dcm",
                              PROVENANCE)
    ds = pydicom.dcmread(out)
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert str(ds.PatientName) == str(pydicom.dcmread(path).PatientName)


def test_multiframe_source_references_its_frame(tmp_path):
    pixels = np.stack([np.full((4, 4), v, np.uint16) for v in (1, 2)])
    path = make_source(tmp_path / "mf.dcm", pixels=pixels, NumberOfFrames=2)
    second = load(path).images[1]
    ds = pydicom.dcmread(write_derived_dicom(second, enhance(second.modality_values()),
                                             tmp_path / "o.dcm", PROVENANCE))
    assert ds.SourceImageSequence[0].ReferencedFrameNumber == 2


@pytest.mark.parametrize("anonymise", [False, True])
def test_type2_attributes_are_written_empty_when_the_source_has_none(tmp_path, anonymise):
    # Real files often leave these out or empty; a Secondary Capture must still carry them (PS3.3
    # A.8.1: Patient and General Study type 2, Patient Orientation type 2C)
    path = make_source(tmp_path / "sparse.dcm", PatientName="", StudyTime="")
    ds = pydicom.dcmread(path)
    del ds.StudyDate, ds.AccessionNumber
    ds.save_as(path, enforce_file_format=True)
    image = load(path).images[0]
    out = pydicom.dcmread(write_derived_dicom(image, enhance(image.modality_values()),
                                              tmp_path / "o.dcm", PROVENANCE, anonymise=anonymise))
    for keyword in ("PatientName", "PatientSex", "StudyDate", "StudyTime", "ReferringPhysicianName",
                    "StudyID", "AccessionNumber", "PatientOrientation"):
        assert keyword in out, keyword
        assert out[keyword].value in ("", None), keyword
    assert out.PatientID == ("" if anonymise else "PID-42")


def test_per_frame_pixel_measures_are_scaled_for_the_frame_shown(tmp_path):
    pixels = np.stack([np.full((4, 4), v, np.uint16) for v in (1, 2)])
    path = make_source(tmp_path / "pf.dcm", pixels=pixels, NumberOfFrames=2)
    ds = pydicom.dcmread(path)
    del ds.PixelSpacing
    frames = []
    for spacing in ([0.2, 0.2], [0.4, 0.32]):
        measures, group = Dataset(), Dataset()
        measures.PixelSpacing = spacing
        group.PixelMeasuresSequence = [measures]
        frames.append(group)
    ds.PerFrameFunctionalGroupsSequence = frames
    ds.save_as(path, enforce_file_format=True)
    second = load(path).images[1]
    assert second.pixel_spacing == pytest.approx((0.4, 0.32))  # what the viewer measures with
    out = pydicom.dcmread(write_derived_dicom(second, enhance(second.modality_values()),
                                              tmp_path / "o.dcm", PROVENANCE))
    assert [float(v) for v in out.PixelSpacing] == pytest.approx([0.1, 0.08])


def test_monochrome2_inverse_is_written_as_monochrome1(tmp_path):
    path = make_source(tmp_path / "m2.dcm", photometric="MONOCHROME2")
    ds = pydicom.dcmread(path)
    ds.PresentationLUTShape = "INVERSE"
    ds.save_as(path, enforce_file_format=True)
    image = load(path).images[0]
    out = pydicom.dcmread(write_derived_dicom(image, enhance(image.modality_values()),
                                              tmp_path / "o.dcm", PROVENANCE))
    assert out.PhotometricInterpretation == "MONOCHROME1" and "PresentationLUTShape" not in out


class TestRefusals:
    def test_refuses_to_overwrite_the_source(self, source, tmp_path):
        path, image = source
        before = sha256(path)
        alias = tmp_path / "sub" / ".." / "source.dcm"
        (tmp_path / "sub").mkdir()
        link = tmp_path / "link.dcm"
        link.symlink_to(path)
        for target in (path, alias, link):
            with pytest.raises(ExportError, match="source"):
                write_derived_dicom(image, enhance(image.modality_values()), target, PROVENANCE)
        assert sha256(path) == before

    def test_non_dicom_source_and_bad_arrays(self, source, tmp_path):
        path, image = source
        with pytest.raises(ExportError):
            write_derived_dicom(image, np.full((4, 4), np.nan, np.float32), tmp_path / "x.dcm",
                                PROVENANCE)
        with pytest.raises(ExportError):
            write_derived_dicom(image, np.zeros((2, 2, 2), np.float32), tmp_path / "x.dcm",
                                PROVENANCE)
        with pytest.raises(ExportError):
            write_derived_dicom(image, np.zeros((4, 4), np.float32), tmp_path / "x.dcm",
                                PROVENANCE, compression="zip")
        png_like = type(image)(path=tmp_path / "a.png", loader=lambda: np.zeros((2, 2)),
                               is_dicom=False)
        with pytest.raises(ExportError, match="DICOM source"):
            write_derived_dicom(png_like, np.zeros((4, 4), np.float32), tmp_path / "x.dcm",
                                PROVENANCE)
        assert not (tmp_path / "x.dcm").exists()


class TestAtomicWrite:
    def test_failure_leaves_nothing_behind(self, tmp_path):
        target = tmp_path / "out.bin"
        target.write_bytes(b"previous")

        def broken(handle):
            handle.write(b"half")
            raise RuntimeError("disk full")

        with pytest.raises(RuntimeError):
            atomic_write(target, broken)
        assert target.read_bytes() == b"previous"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]

    def test_creates_folders_and_replaces(self, tmp_path):
        target = tmp_path / "new" / "out.bin"
        atomic_write(target, lambda h: h.write(b"one"))
        atomic_write(target, lambda h: h.write(b"two"))
        assert target.read_bytes() == b"two"
        assert [p.name for p in target.parent.iterdir()] == ["out.bin"]


@pytest.mark.slow
def test_real_dx_round_trip(tmp_path):
    path = REAL / "966_DX_chest_mono1_inverse_j2k.dcm"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    before = sha256(path)
    image = load(path).images[0]
    crop = image.modality_values()[800:864, 400:464]
    enhanced = np.kron(crop, np.ones((4, 4), np.float32))
    out = write_derived_dicom(image, enhanced, tmp_path / "dx.dcm", PROVENANCE)
    assert sha256(path) == before
    ds = pydicom.dcmread(out)
    assert [float(v) for v in ds.PixelSpacing] == pytest.approx([0.04, 0.04])
    assert [float(v) for v in ds.ImagerPixelSpacing] == pytest.approx([0.04, 0.04])
    assert ds.LossyImageCompression == "00"
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == image.sop_instance_uid
    assert np.array_equal(load(out).images[0].modality_values(), enhanced)
