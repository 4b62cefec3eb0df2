"""Rebuild the small derived sample of the bundled study (see README.md in this folder).

    python resources/samples/make_samples.py [--data ../shared/data]

Writes `cxr14_00002577_000_lowres_256.dcm`: NIH ChestX-ray14 image 00002577_000.png (PA, "No
Finding") averaged down 4x to 256x256 and stored as a 12-bit MONOCHROME2 DX image, so Enhance
(4x) brings it back to the published 1024x1024 size. The real radiograph in this folder is a copy
of a public pydicom test file and is not made here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, generate_uid

SOURCE = "cxr14/val/00002577_000.png"
OUT_NAME = "cxr14_00002577_000_lowres_256.dcm"
FACTOR = 4
# NIH's PNGs carry no spacing; 1024 px over a nominal 41 cm field gives about 0.4 mm per pixel.
NOMINAL_SPACING_MM_1024 = 0.4


def _uid(what: str) -> str:
    """New UIDs, but the same on every rebuild so the file does not change without reason."""
    return generate_uid(entropy_srcs=["cxr-enhance sample", OUT_NAME, what])


def downsample(gray: np.ndarray, factor: int) -> np.ndarray:
    """Block mean: the simplest degradation, and the one the x4 models are trained against."""
    h, w = (s // factor * factor for s in gray.shape)
    blocks = gray[:h, :w].reshape(h // factor, factor, w // factor, factor)
    return blocks.mean(axis=(1, 3))


def to_stored_12bit(values_8bit: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values_8bit * (4095.0 / 255.0)), 0, 4095).astype(np.uint16)


def build_dataset(pixels: np.ndarray, spacing_mm: float) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = _uid("sop")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = _uid("study")
    ds.SeriesInstanceUID = _uid("series")
    ds.FrameOfReferenceUID = _uid("frame-of-reference")
    ds.PatientName = "Anonymous"
    ds.PatientID = "ANON-0001"
    ds.PatientBirthDate = ""
    ds.PatientSex = "F"
    ds.PatientAge = "035Y"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240101"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.StudyDescription = "Chest PA (low-resolution sample)"
    ds.SeriesDescription = "NIH CXR14 00002577_000, 4x block-mean downsample"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Modality = "DX"
    ds.Manufacturer = "CXR Enhance sample generator"
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.DerivationDescription = (
        "NIH ChestX-ray14 00002577_000.png averaged 4x4 to 256x256; rescaled 8 to 12 bit"
    )
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.PatientOrientation = ["L", "F"]
    ds.BurnedInAnnotation = "YES"  # the NIH images carry a small side marker
    ds.LossyImageCompression = "00"

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelSpacing = [f"{spacing_mm:.3f}", f"{spacing_mm:.3f}"]
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.PresentationLUTShape = "IDENTITY"
    # Two windows with explanations (a soft "lung" and a wide "bone" look).
    ds.WindowCenter = ["2000", "2300"]
    ds.WindowWidth = ["3600", "2400"]
    ds.WindowCenterWidthExplanation = ["STANDARD", "CONTRAST"]
    ds.PixelData = pixels.astype("<u2").tobytes()
    return ds


def main() -> None:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=here.parents[2] / "shared" / "data")
    parser.add_argument("--out", type=Path, default=here)
    args = parser.parse_args()

    # A few NIH PNGs are RGBA: convert to one gray channel first.
    gray = np.asarray(Image.open(args.data / SOURCE).convert("L"), dtype=np.float32)
    small = downsample(gray, FACTOR)
    spacing = NOMINAL_SPACING_MM_1024 * 1024 / small.shape[0]
    ds = build_dataset(to_stored_12bit(small), spacing)
    out = args.out / OUT_NAME
    ds.save_as(out, enforce_file_format=True)
    print(f"wrote {out} ({out.stat().st_size} bytes, {small.shape[1]}x{small.shape[0]})")


if __name__ == "__main__":
    main()
