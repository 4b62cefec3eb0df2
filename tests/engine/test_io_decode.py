"""Every transfer syntax a chest radiograph arrives in decodes, pixel-equal to the uncompressed
original wherever a lossless pair exists (pydicom's bundled files, files transcoded here with
python-gdcm or pydicom's encoders, and the real radiographs in ../shared/data/dicom)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSNearLossless,
)

from engine.io import load
from engine.io.dicom import is_lossy

# pydicom warns about every non-conforming value it meets; the files here are meant to have them
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT.parent / "shared" / "data" / "dicom"


def bundled(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not installed")
    return Path(path)


def real(name: str) -> Path:
    path = REAL / name
    if not path.exists():
        pytest.skip(f"{path} is absent (shared data not checked out beside the repo)")
    return path


def only_image(path: Path):
    collection = load(path)
    assert not collection.problems, [p.reason for p in collection.problems]
    assert len(collection.images) == 1
    return collection.images[0]


def values(path: Path) -> np.ndarray:
    return only_image(path).modality_values()


# -- files made here from MR_small (64x64, 16-bit signed) ---------------------------------------


def _gdcm_transcode(src: Path, dst: Path, syntax: str, near: int | None = None) -> Path:
    import gdcm

    reader = gdcm.ImageReader()
    reader.SetFileName(str(src))
    assert reader.Read()
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.GetTSType(syntax)))
    if near is not None:
        codec = gdcm.JPEGLSCodec()
        codec.SetLossless(False)
        codec.SetLossyError(near)
        change.SetUserCodec(codec)
    change.SetInput(reader.GetImage())
    assert change.Change()
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(dst))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write()
    assert pydicom.dcmread(dst, stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
    return dst


def _deflated(src: Path, dst: Path) -> Path:
    ds = pydicom.dcmread(src)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(dst, enforce_file_format=True)
    return dst


def _acr_nema(src: Path, dst: Path) -> Path:
    """No preamble, no File Meta, implicit VR little endian: an ACR-NEMA style file."""
    ds = pydicom.dcmread(src)
    ds.file_meta = FileMetaDataset()
    ds.preamble = None
    ds.save_as(dst, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert dst.read_bytes()[:2] == b"\x08\x00"
    return dst


MAKERS: dict[str, Callable[[Path, Path], Path]] = {
    "deflate": _deflated,
    "acr-nema implicit, no meta": _acr_nema,
    "JPEG lossless process 14": lambda s, d: _gdcm_transcode(s, d, JPEGLossless),
    "JPEG lossless process 14 SV1": lambda s, d: _gdcm_transcode(s, d, JPEGLosslessSV1),
}
BUNDLED_PAIRS = [
    "MR_small_implicit.dcm",  # implicit VR little endian
    "MR_small_bigendian.dcm",  # explicit VR big endian
    "MR_small_expb.dcm",
    "MR_small_RLE.dcm",  # RLE lossless
    "MR_small_jp2klossless.dcm",  # JPEG 2000 lossless
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless
]


@pytest.fixture(scope="module")
def mr_small() -> tuple[Path, np.ndarray]:
    path = bundled("MR_small.dcm")
    reference = pydicom.dcmread(path).pixel_array.astype(np.float32)
    return path, reference


def test_explicit_little_endian_matches_pydicom(mr_small):
    path, reference = mr_small
    assert np.array_equal(values(path), reference)


@pytest.mark.parametrize("name", BUNDLED_PAIRS)
def test_bundled_lossless_pairs_are_pixel_equal(mr_small, name):
    _, reference = mr_small
    image = only_image(bundled(name))
    assert np.array_equal(image.modality_values(), reference)
    assert image.lossy is False


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_transcoded_lossless_pairs_are_pixel_equal(mr_small, tmp_path, kind):
    path, reference = mr_small
    made = MAKERS[kind](path, tmp_path / "made.dcm")
    assert np.array_equal(values(made), reference)


def test_jpeg_ls_near_lossless_stays_within_near(mr_small, tmp_path):
    path, reference = mr_small
    made = _gdcm_transcode(path, tmp_path / "jlsn.dcm", JPEGLSNearLossless, near=3)
    image = only_image(made)
    error = np.abs(image.modality_values() - reference)
    assert 0 < error.max() <= 3
    assert image.lossy is True


def test_jpeg_ls_near_lossless_bundled_reference_values():
    # Reference values from pydicom's pixel-data test suite (JLSN_16_16_1_0_1F, JLSN_08_01_1_0_1F).
    sixteen = values(bundled("JPEGLSNearLossless_16.dcm"))
    assert [sixteen[i, 0] for i in range(0, 45, 5)] == [
        65535, 32765, 16385, 4095, 1025, 255, 65, 15, 5]
    eight = values(bundled("JPEGLSNearLossless_08.dcm"))
    assert [eight[i, 0] for i in range(0, 45, 5)] == [255, 125, 65, 30, 15, 5, 5, 0, 0]


def test_jpeg2000_lossy_pair_is_close(mr_small, tmp_path):
    path, reference = mr_small
    ds = pydicom.dcmread(path)
    ds.compress(JPEG2000, ds.pixel_array, j2k_cr=[10])
    ds.save_as(tmp_path / "j2ki.dcm", enforce_file_format=True)
    image = only_image(tmp_path / "j2ki.dcm")
    decoded = image.modality_values()
    assert not np.array_equal(decoded, reference)
    assert np.abs(decoded - reference).mean() < 0.05 * float(np.ptp(reference))
    assert image.lossy is True


@pytest.mark.parametrize("name", ["693_J2KI.dcm", "JPEG2000.dcm"])
def test_jpeg2000_lossy_bundled_files_decode(name):
    image = only_image(bundled(name))
    decoded = image.modality_values()
    assert decoded.shape == (image.rows, image.columns)
    assert np.isfinite(decoded).all() and np.ptp(decoded) > 100
    assert image.lossy is True


@pytest.mark.parametrize("name", ["JPGExtended.dcm", "JPEG-lossy.dcm"])
def test_jpeg_extended_12_bit(name):
    # pydicom's GDCM plugin refuses 12-bit JPEG Extended; engine.io.jpeg12 decodes it with GDCM.
    # Reference values from pydicom's test suite (JPGE_16_12_1_0_1F_M2).
    image = only_image(bundled(name))
    assert image.transfer_syntax == JPEGExtended12Bit
    decoded = image.modality_values()
    assert decoded[420, 140] == 244 and decoded[230, 120] == 95
    assert image.lossy is True


def test_jpeg_lossless_sv1_colour_equals_rle_original():
    lossless = values(bundled("SC_rgb_jpeg_gdcm.dcm"))  # JPEG lossless SV1, RGB
    assert np.array_equal(lossless, values(bundled("SC_rgb_rle.dcm")))


@pytest.mark.parametrize("name", ["SC_rgb_dcmtk_+eb+cr.dcm", "SC_rgb_jpeg_dcmtk.dcm",
                                  "SC_rgb_jpeg_lossy_gdcm.dcm"])
def test_jpeg_baseline_is_close_to_the_original(name):
    image = only_image(bundled(name))
    original = values(bundled("SC_rgb_rle.dcm"))
    decoded = image.modality_values()
    assert decoded.shape == (100, 100)
    assert np.abs(decoded - original).mean() < 1.0
    assert image.lossy is True


def test_deflate_bundled_file():
    decoded = values(bundled("image_dfl.dcm"))
    assert decoded.shape == (512, 512) and decoded.max() > decoded.min()


def test_multiframe_gives_one_image_per_frame():
    images = load(bundled("SC_rgb_rle_2frame.dcm")).images
    assert [(im.frame, im.frames) for im in images] == [(0, 2), (1, 2)]
    first, second = (im.modality_values() for im in images)
    assert not np.array_equal(first, second)
    assert "frame 2/2" in images[1].label


def test_multiframe_jpeg_baseline_frame_on_demand():
    images = load(bundled("examples_ybr_color.dcm")).images
    assert len(images) == 30
    assert images[17].modality_values().shape == (240, 320)


# -- the real chest radiographs -----------------------------------------------------------------


@pytest.mark.slow
def test_real_cr_jpeg2000_lossless_equals_uncompressed():
    uncompressed = only_image(real("RG1_UNCR_CR_chest_mono1_explicit.dcm"))
    j2k = only_image(real("RG1_J2KR_CR_chest_mono1_j2k_lossless.dcm"))
    assert j2k.transfer_syntax == "1.2.840.10008.1.2.4.90"
    assert np.array_equal(j2k.modality_values(), uncompressed.modality_values())
    assert (j2k.rows, j2k.columns, j2k.bits_stored) == (1955, 1841, 15)
    assert j2k.lossy is False


@pytest.mark.slow
def test_real_dx_jpeg2000_decodes():
    image = only_image(real("966_DX_chest_mono1_inverse_j2k.dcm"))
    decoded = image.modality_values()
    assert decoded.shape == (2128, 2000)
    assert decoded.min() >= 0 and decoded.max() <= 4095
    assert (image.photometric, image.presentation_lut_shape) == ("MONOCHROME1", "INVERSE")
    assert image.pixel_spacing == (0.16, 0.16)


def test_lossy_rule_trusts_the_flag_and_the_syntax():
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.91"
    assert is_lossy(ds) is True  # JPEG 2000 (lossy allowed) without a flag
    ds.LossyImageCompression = "00"
    assert is_lossy(ds) is False
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.50"
    assert is_lossy(ds) is True  # baseline JPEG is lossy whatever the flag says
