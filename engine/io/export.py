"""Writing results: a derived Secondary Capture DICOM of an enhanced image, PNG and 16-bit TIFF.

Every write is atomic (temporary file in the target folder, fsync, os.replace) and refuses to
replace the source it was made from: a source file is never modified.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from copy import deepcopy
from dataclasses import dataclass
from datetime import datetime
from os import PathLike
from pathlib import Path
from typing import BinaryIO

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)
from pydicom.valuerep import DS

import engine
from engine.display.render import shows_inverted
from engine.fileio import atomic_write as _atomic_write
from engine.io.dicom import frame_attr
from engine.io.model import Image

MANUFACTURER = "CXR Enhance"
SERIES_DESCRIPTION = "AI x{scale} super-resolution – not for diagnosis"
COMPRESSIONS = {"none": ExplicitVRLittleEndian, "rle": RLELossless, "j2k": JPEG2000Lossless}

# Patient (PS3.3 C.7.1.1), General Study (C.7.2.1) and Patient Study (C.7.2.2) attributes copied.
_PATIENT_STUDY = (
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientBirthTime",
    "PatientSex", "OtherPatientIDsSequence", "OtherPatientNames", "PatientAddress",
    "PatientComments", "PatientIdentityRemoved", "DeidentificationMethod",
    "DeidentificationMethodCodeSequence", "PatientAge", "PatientSize", "PatientWeight",
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
    "AccessionNumber", "IssuerOfAccessionNumberSequence", "StudyDescription",
)
# Series / image attributes that still describe the derived image.
_IMAGE_CONTEXT = ("BodyPartExamined", "Laterality", "ImageLaterality", "PatientOrientation",
                  "ViewPosition", "BurnedInAnnotation", "PixelSpacingCalibrationType",
                  "PixelSpacingCalibrationDescription")
# Removed or blanked by anonymise (PS3.15 E.1.1 identifiers of the patient and the request).
# Type 2 attributes of the Secondary Capture IOD (PS3.3 A.8.1): present even when empty. Patient
# (C.7.1.1), General Study (C.7.2.1), and General Image's Patient Orientation (type 2C, required
# because SC has no Image Plane module).
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "ReferringPhysicianName", "StudyID", "AccessionNumber", "PatientOrientation")
_BLANKED = ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber",
            "ReferringPhysicianName", "StudyID")
_REMOVED = ("IssuerOfPatientID", "PatientBirthTime", "OtherPatientIDs", "OtherPatientIDsSequence",
            "OtherPatientNames", "PatientAddress", "PatientComments", "PatientTelephoneNumbers",
            "PatientMotherBirthName", "MedicalRecordLocator", "IssuerOfAccessionNumberSequence",
            "MilitaryRank", "BranchOfService", "CountryOfResidence", "RegionOfResidence",
            "EthnicGroup", "PatientReligiousPreference")


class ExportError(Exception):
    """An export that cannot be done; the message is one sentence with what to do next."""


@dataclass(frozen=True)
class Provenance:
    """How an enhanced image was made: recorded in Derivation Description and the equipment."""

    model_name: str
    model_sha256: str
    scale: int
    tile: int
    overlap: int
    precision: str
    device: str
    software_version: str = engine.__version__
    region: tuple[int, int, int, int] | None = None  # (y0, x0, y1, x1) of the source; None = whole

    @classmethod
    def from_result(cls, result: object) -> Provenance:
        """From an engine.sr EnhanceResult (read by attribute name; no torch import here)."""
        region = getattr(result, "region", None)
        return cls(model_name=str(result.model_name), model_sha256=str(result.model_sha256),
                   scale=int(result.scale), tile=int(result.tile), overlap=int(result.overlap),
                   precision=str(result.precision), device=str(result.device),
                   region=None if region is None else tuple(int(v) for v in region))  # type: ignore[arg-type]

    def description(self) -> str:
        """Derivation Description (0008,2111) text: model, weights hash, scale, tile, precision,
        and for a part of the image the source rows and columns it covers."""
        part = ""
        if self.region is not None:
            y0, x0, y1, x1 = self.region
            part = (f"Region of the source only: rows {y0}-{y1 - 1}, columns {x0}-{x1 - 1} "
                    f"(0-based, source pixels). ")
        text = (f"AI super-resolution x{self.scale} by {MANUFACTURER} {self.software_version}: "
                f"model {self.model_name}, weights sha256 {self.model_sha256}, "
                f"tile {self.tile} overlap {self.overlap}, precision {self.precision}, "
                f"device {self.device}. {part}Not for diagnosis.")
        return text[:1024]  # ST holds at most 1024 characters


# -- derived DICOM ----------------------------------------------------------------------------


def write_derived_dicom(source: Image, enhanced: np.ndarray, out_path: str | PathLike[str],
                        provenance: Provenance, *, anonymise: bool = False,
                        compression: str = "none") -> Path:
    """Write `enhanced` (modality values, same range as the source) as a derived Secondary
    Capture (PS3.3 A.8.1) in the source's study: new Series and SOP Instance UIDs, Image Type
    DERIVED\\SECONDARY, Derivation Description, Source Image Sequence, Contributing Equipment,
    spacing divided by the scale, windows and Lossy Image Compression carried over.

    `compression`: "none" (Explicit VR Little Endian), "rle" (RLE Lossless) or "j2k" (JPEG 2000
    Lossless). `anonymise` removes patient identifiers (names, IDs, birth date, addresses,
    accession). Raises ExportError.
    """
    if not source.is_dicom or source.dataset is None:
        raise ExportError("A derived DICOM needs a DICOM source; export PNG or TIFF instead.")
    if compression not in COMPRESSIONS:
        raise ExportError(f"Unknown compression {compression!r}; use one of {sorted(COMPRESSIONS)}.")
    values = _checked_values(enhanced)
    out = _checked_target(out_path, [source.source_file])
    ds = derived_dataset(source, values, provenance, anonymise=anonymise)
    stored = _stored_array(ds)
    _encode_pixels(ds, stored, COMPRESSIONS[compression])
    return atomic_write(out, lambda handle: ds.save_as(handle, enforce_file_format=True),
                        protect=[source.source_file])


def derived_dataset(source: Image, values: np.ndarray, provenance: Provenance, *,
                    anonymise: bool = False) -> Dataset:
    """The derived Secondary Capture dataset (pixel data as native 16-bit, not yet encoded)."""
    src = source.dataset
    assert src is not None
    now = datetime.now()
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: holds any copied name and the en dash
    _copy(src, ds, _PATIENT_STUDY + _IMAGE_CONTEXT)
    for keyword in _TYPE2:  # what the source left out or empty is written empty, not dropped
        if keyword not in ds:
            setattr(ds, keyword, "")
    _sop_common(ds, now)
    _series(ds, source, provenance, now)
    _general_image(ds, source, provenance, now)
    _equipment(ds, src, provenance, now, anonymise)
    _pixel_module(ds, source, values)
    _voi(ds, source)
    _spacing(ds, src, provenance.scale, source.frame)
    _lossy(ds, source)
    if anonymise:
        anonymise_dataset(ds)
    ds.file_meta = _file_meta(ds)
    return ds


def anonymise_dataset(ds: Dataset) -> None:
    """Remove patient identifiers (PS3.15 E.1.1 basic profile, patient and request parts):
    names, IDs, birth date, other IDs, addresses, accession; type 2 ones are left empty."""
    for keyword in _REMOVED:
        if keyword in ds:
            delattr(ds, keyword)
    for keyword in _BLANKED:
        setattr(ds, keyword, "")
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = f"{MANUFACTURER} {engine.__version__}: identifiers removed"


def _checked_values(enhanced: np.ndarray) -> np.ndarray:
    values = np.asarray(enhanced)
    if values.ndim != 2 or values.size == 0:
        raise ExportError("The enhanced image must be a non-empty 2-D array.")
    if not np.all(np.isfinite(values)):
        raise ExportError("The enhanced image holds NaN or infinite values; enhance it again.")
    if max(values.shape) > 65535:
        raise ExportError("The enhanced image is larger than DICOM's 65535 rows or columns.")
    return values


def _copy(src: Dataset, dst: Dataset, keywords: Iterable[str]) -> None:
    for keyword in keywords:
        try:
            if keyword in src and src[keyword].value not in (None, ""):
                dst[keyword] = deepcopy(src[keyword])
        except Exception:  # an unreadable optional value is left out, not fatal
            continue


def _sop_common(ds: Dataset, now: datetime) -> None:
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")


def _series(ds: Dataset, source: Image, provenance: Provenance, now: datetime) -> None:
    """General Series (PS3.3 C.7.3.1): new series in the same study."""
    ds.Modality = source.modality or "OT"
    ds.SeriesInstanceUID = generate_uid()
    number = _int(source.dataset.get("SeriesNumber")) if source.dataset is not None else None
    ds.SeriesNumber = (number or 0) + 1000 if (number or 0) < 2**31 - 1001 else ""
    ds.SeriesDescription = SERIES_DESCRIPTION.format(scale=provenance.scale)
    ds.SeriesDate = now.strftime("%Y%m%d")
    ds.SeriesTime = now.strftime("%H%M%S")


def _general_image(ds: Dataset, source: Image, provenance: Provenance, now: datetime) -> None:
    """General Image (PS3.3 C.7.6.1) + SC Image (C.8.6.2): derivation and its source."""
    ds.InstanceNumber = source.instance_number if source.instance_number is not None else 1
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.DerivationDescription = provenance.description()
    ds.ImageComments = SERIES_DESCRIPTION.format(scale=provenance.scale)
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.DateOfSecondaryCapture = ds.ContentDate
    ds.TimeOfSecondaryCapture = ds.ContentTime
    reference = Dataset()
    reference.ReferencedSOPClassUID = source.sop_class_uid or source.dataset.get("SOPClassUID", "")
    reference.ReferencedSOPInstanceUID = source.sop_instance_uid
    if source.frames > 1:
        reference.ReferencedFrameNumber = source.frame + 1
    reference.PurposeOfReferenceCodeSequence = Sequence(
        [_code("121322", "DCM", "Source image for image processing operation")])
    # PS3.3 C.7.6.1.1.3: enlarged (and perhaps cropped) pixels do not sit where the source's did
    reference.SpatialLocationsPreserved = "NO"
    ds.SourceImageSequence = Sequence([reference])


def _equipment(ds: Dataset, src: Dataset, provenance: Provenance, now: datetime,
               anonymise: bool) -> None:
    """General / SC Equipment (PS3.3 C.7.5.1, C.8.6.1) and Contributing Equipment Sequence."""
    ds.Manufacturer = MANUFACTURER
    ds.SoftwareVersions = provenance.software_version
    ds.ConversionType = "WSD"  # workstation
    ds.SecondaryCaptureDeviceManufacturer = MANUFACTURER
    ds.SecondaryCaptureDeviceManufacturerModelName = provenance.model_name[:64]
    ds.SecondaryCaptureDeviceSoftwareVersions = provenance.software_version
    history = [] if anonymise else [deepcopy(item) for item in
                                    (src.get("ContributingEquipmentSequence") or [])]
    item = Dataset()
    item.Manufacturer = MANUFACTURER
    item.ManufacturerModelName = provenance.model_name[:64]
    item.SoftwareVersions = provenance.software_version
    item.ContributionDateTime = now.strftime("%Y%m%d%H%M%S")
    item.ContributionDescription = provenance.description()
    item.PurposeOfReferenceCodeSequence = Sequence(
        [_code("109102", "DCM", "Processing Equipment")])
    history.append(item)
    if anonymise:
        deid = deepcopy(item)
        deid.ContributionDescription = "Patient identifiers removed on export"
        deid.PurposeOfReferenceCodeSequence = Sequence(
            [_code("109104", "DCM", "De-identifying Equipment")])
        history.append(deid)
    ds.ContributingEquipmentSequence = Sequence(history)


def _pixel_module(ds: Dataset, source: Image, values: np.ndarray) -> None:
    """Image Pixel (PS3.3 C.7.6.3) + Modality LUT (C.11.1): 16-bit stored values whose rescale
    gives back the enhanced modality values, so the file's windows keep their meaning."""
    stored, slope, intercept, bits, signed = stored_values(source, values)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = (
        "MONOCHROME1" if shows_inverted(source.photometric, source.presentation_lut_shape)
        else "MONOCHROME2")  # SC has no Presentation LUT Shape: polarity lives here alone
    ds.Rows, ds.Columns = values.shape
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if signed else 0
    if (slope, intercept) != (1.0, 0.0) or "RescaleSlope" in source.dataset:
        ds.RescaleSlope = DS(slope, auto_format=True)
        ds.RescaleIntercept = DS(intercept, auto_format=True)
        ds.RescaleType = str(source.dataset.get("RescaleType", "") or "US")
    ds.PixelData = stored.astype("<i2" if signed else "<u2").tobytes()
    ds["PixelData"].VR = "OW"


def stored_values(source: Image, values: np.ndarray
                  ) -> tuple[np.ndarray, float, float, int, bool]:
    """(stored, slope, intercept, bits stored, signed) for `values` in modality units.

    With a linear Modality LUT and <= 16 bits stored the source's rescale and bit depth are
    kept, and values beyond what those bits can hold (super-resolution overshoot) are clipped.
    Otherwise (Modality LUT Sequence, colour or > 16-bit sources) a rescale is chosen that holds
    the values' range in 16 bits.
    """
    bits = int(source.bits_stored or 16)
    linear = source.modality_lut is None and source.photometric.startswith("MONOCHROME")
    if linear and 1 <= bits <= 16 and source.rescale_slope != 0:
        slope, intercept = float(source.rescale_slope), float(source.rescale_intercept)
        signed = source.pixel_representation == 1
        low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        stored = np.rint((values.astype(np.float64) - intercept) / slope)
        return np.clip(stored, low, high).astype(np.int32), slope, intercept, bits, signed
    low, high = float(values.min()), float(values.max())
    rounded = np.rint(values.astype(np.float64))
    if low >= 0 and high <= 65535:
        return rounded.astype(np.int32), 1.0, 0.0, 16, False
    if low >= -32768 and high <= 32767:
        return rounded.astype(np.int32), 1.0, 0.0, 16, True
    slope = (high - low) / 65535.0 if high > low else 1.0
    stored = np.clip(np.rint((values.astype(np.float64) - low) / slope), 0, 65535)
    return stored.astype(np.int32), slope, low, 16, False


def _voi(ds: Dataset, source: Image) -> None:
    """VOI LUT module (PS3.3 C.11.2): the file's windows and VOI LUTs, same value range.

    Copied verbatim when the source holds them at the top level; windows found in functional
    groups (enhanced multi-frame) are written from the Image."""
    src = source.dataset
    if src.get("WindowCenter") is not None and src.get("WindowWidth") is not None:
        _copy(src, ds, ("WindowCenter", "WindowWidth", "WindowCenterWidthExplanation",
                        "VOILUTFunction"))
    elif source.windows:
        ds.WindowCenter = [DS(w.center, auto_format=True) for w in source.windows]
        ds.WindowWidth = [DS(w.width, auto_format=True) for w in source.windows]
        if source.voi_function != "LINEAR":
            ds.VOILUTFunction = source.voi_function
    if src.get("VOILUTSequence"):
        ds.VOILUTSequence = deepcopy(src.VOILUTSequence)


def _spacing(ds: Dataset, src: Dataset, scale: int, frame: int = 0) -> None:
    """Pixel Spacing, Imager Pixel Spacing, Nominal Scanned Pixel Spacing divided by the scale
    (PS3.3 10.7.1.3): each enhanced pixel covers 1/scale of a source pixel per axis. An enhanced
    multi-frame source's Pixel Measures are read for the frame shown, per frame then shared, as
    the viewer reads them."""
    spacings = {"PixelSpacing": None, "ImagerPixelSpacing": None,
                "NominalScannedPixelSpacing": None}
    for keyword in spacings:
        spacings[keyword] = _positive_pair(src.get(keyword))
    if spacings["PixelSpacing"] is None:  # enhanced multi-frame: Pixel Measures macro
        spacings["PixelSpacing"] = _positive_pair(
            frame_attr(src, frame, "PixelMeasuresSequence", "PixelSpacing"))
    for keyword, pair in spacings.items():
        if pair is not None:
            setattr(ds, keyword, [DS(v / scale, auto_format=True) for v in pair])
    if "PixelSpacing" not in ds and "PixelSpacingCalibrationType" in ds:
        del ds.PixelSpacingCalibrationType


def _lossy(ds: Dataset, source: Image) -> None:
    """Lossy Image Compression (PS3.3 C.7.6.1.1.5): once "01", always "01"; ratio and method
    copied (or the method named after the transfer syntax that made it lossy)."""
    src = source.dataset
    flag = str(src.get("LossyImageCompression", "") or "")
    if source.lossy:
        ds.LossyImageCompression = "01"
        for keyword in ("LossyImageCompressionRatio", "LossyImageCompressionMethod"):
            if src.get(keyword):
                ds[keyword] = deepcopy(src[keyword])
        if "LossyImageCompressionMethod" not in ds and _lossy_method(source.transfer_syntax):
            ds.LossyImageCompressionMethod = _lossy_method(source.transfer_syntax)
    elif flag == "00":
        ds.LossyImageCompression = "00"


def _lossy_method(syntax: str) -> str:
    if syntax.startswith("1.2.840.10008.1.2.4.5"):
        return "ISO_10918_1"
    if syntax.startswith("1.2.840.10008.1.2.4.8"):
        return "ISO_14495_1"
    if syntax.startswith(("1.2.840.10008.1.2.4.9", "1.2.840.10008.1.2.4.20")):
        return "ISO_15444_1"
    return ""


def _file_meta(ds: Dataset) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationVersionName = f"CXRENH_{engine.__version__}"[:16]
    return meta


def _stored_array(ds: Dataset) -> np.ndarray:
    dtype = "<i2" if ds.PixelRepresentation else "<u2"
    return np.frombuffer(ds.PixelData, dtype=dtype).reshape(ds.Rows, ds.Columns)


def _encode_pixels(ds: Dataset, stored: np.ndarray, syntax: str) -> None:
    if syntax == ExplicitVRLittleEndian:
        return
    try:
        ds.compress(syntax, stored)
    except Exception as exc:
        raise ExportError(f"Could not compress the image ({exc}); export without compression."
                          ) from exc


def _positive_pair(value: object) -> tuple[float, float] | None:
    try:
        pair = (float(value[0]), float(value[1]))  # type: ignore[index]
    except (TypeError, ValueError, IndexError, KeyError):
        return None
    return pair if all(np.isfinite(v) and v > 0 for v in pair) else None


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _int(value: object) -> int | None:
    try:
        return int(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


# -- PNG and TIFF ---------------------------------------------------------------------------


AI_WARNING = ("AI-ENHANCED x{scale} - not for diagnosis: made by a neural network from the source "
              "image, not an acquisition; it can smooth away or invent detail.")


def write_png(frame_or_values: np.ndarray, out_path: str | PathLike[str], *, bits: int = 8,
              value_range: tuple[float, float] | None = None, inverted: bool = False,
              provenance: Provenance | None = None,
              protect: Iterable[str | PathLike[str]] = ()) -> Path:
    """Write a grayscale PNG.

    bits=8: a uint8 frame (as displayed, e.g. from `engine.display.render`) is written as is;
    other arrays are mapped linearly from `value_range` (default min..max) to 0..255.
    bits=16: values mapped linearly from `value_range` (default min..max) to 0..65535 (full
    range). Either mapping is recorded in a "value_range" text chunk "V0,V1": a pixel p stands
    for V0 + p / top * (V1 - V0). `inverted` (a MONOCHROME1 or INVERSE source, whose high values
    display dark) maps the range the other way round, V0 > V1, so that the PNG, which has no
    polarity flag, opens with the polarity the source displays with. `provenance` (an enhanced
    image: always, from this project's callers) writes the "Description", "Source" and
    "Warning" text chunks that say so. `protect`: paths (sources) that must not be overwritten.
    """
    from PIL import Image as PILImage
    from PIL.PngImagePlugin import PngInfo

    if bits not in (8, 16):
        raise ExportError("PNG export supports 8 or 16 bits.")
    arr = np.asarray(frame_or_values)
    if bits == 8 and arr.dtype == np.uint8:
        pixels, low, high = arr, 0.0, 255.0
    else:
        pixels, low, high = _to_unsigned(arr, bits, value_range, inverted=inverted)
    _check_image(pixels)
    info = PngInfo()
    info.add_text("value_range", f"{low!r},{high!r}")
    info.add_text("Software", f"{MANUFACTURER} {engine.__version__}")
    if provenance is not None:
        info.add_text("Description", provenance.description())
        info.add_text("Source", f"{MANUFACTURER} {provenance.software_version}, model "
                                f"{provenance.model_name}")
        info.add_text("Warning", AI_WARNING.format(scale=provenance.scale))
    image = PILImage.fromarray(pixels)

    def save(handle: BinaryIO) -> None:
        image.save(handle, format="PNG", pnginfo=info)

    return atomic_write(_checked_target(out_path, protect), save, protect=protect)


def write_tiff16(values: np.ndarray, out_path: str | PathLike[str],
                 value_range: tuple[float, float] | None = None, *, inverted: bool = False,
                 provenance: Provenance | None = None,
                 protect: Iterable[str | PathLike[str]] = ()) -> Path:
    """Write a 16-bit grayscale TIFF: values mapped linearly from `value_range` (default
    min..max) to 0..65535; the mapping is recorded in the image description. `inverted` (a
    MONOCHROME1 or INVERSE source) is written as Photometric "min-is-white", TIFF's own word for
    it; `provenance` adds the Derivation Description and the AI warning to the description."""
    import tifffile

    pixels, low, high = _to_unsigned(np.asarray(values), 16, value_range)
    _check_image(pixels)
    description = f"value_range={low!r},{high!r}; {MANUFACTURER} {engine.__version__}"
    if provenance is not None:
        description += (f"; {AI_WARNING.format(scale=provenance.scale)} "
                        f"{provenance.description()}")

    def save(handle: BinaryIO) -> None:
        tifffile.imwrite(handle, pixels, photometric="miniswhite" if inverted else "minisblack",
                         description=description, software=f"{MANUFACTURER} {engine.__version__}")

    return atomic_write(_checked_target(out_path, protect), save, protect=protect)


def _to_unsigned(values: np.ndarray, bits: int, value_range: tuple[float, float] | None, *,
                 inverted: bool = False) -> tuple[np.ndarray, float, float]:
    """Map to 0..top; returns the pixels and (V0, V1), the values that 0 and top stand for."""
    if values.ndim != 2 or values.size == 0:
        raise ExportError("The image to export must be a non-empty 2-D array.")
    if value_range is None:
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            raise ExportError("The image holds no finite values.")
        value_range = (float(finite.min()), float(finite.max()))
    low, high = float(value_range[0]), float(value_range[1])
    top = (1 << bits) - 1
    scale = top / (high - low) if high > low else 0.0
    mapped = (np.nan_to_num(values.astype(np.float64), nan=low) - low) * scale
    pixels = np.clip(np.rint(mapped), 0, top).astype(np.uint8 if bits == 8 else np.uint16)
    if inverted:
        return top - pixels, high, low
    return pixels, low, high


def _check_image(pixels: np.ndarray) -> None:
    if pixels.ndim != 2 or pixels.size == 0:
        raise ExportError("The image to export must be a non-empty 2-D array.")


# -- atomic writes ------------------------------------------------------------------------------


def atomic_write(out_path: str | PathLike[str], write: Callable[[BinaryIO], None], *,
                 protect: Iterable[str | PathLike[str] | None] = ()) -> Path:
    """Write through a temporary file in the target folder, fsync it, then os.replace it into
    place, so a reader never sees half a file and a failure leaves nothing behind. Refuses a
    target that is (or links to) one of the `protect` paths."""
    return _atomic_write(_checked_target(out_path, protect), write)


def _checked_target(out_path: str | PathLike[str], protect: Iterable[object]) -> Path:
    out = Path(out_path).expanduser()
    if isinstance(protect, str | PathLike):
        protect = [protect]  # one path given on its own
    if out.is_dir():
        raise ExportError(f"{out} is a folder; give a file name to write.")
    resolved = out.resolve()
    for source in protect:
        if source is None:
            continue
        source_path = Path(source).resolve()
        same = resolved == source_path or (
            out.exists() and source_path.exists() and os.path.samefile(out, source_path))
        if same:
            raise ExportError(f"{out.name} is the source image; choose another file name.")
    return out

