"""DICOM files -> Images: headers read lazily, pixels decoded on demand by pydicom's plugins.

Decoding goes through `pydicom.pixels.pixel_array` and so through the installed decoders:
python-gdcm (JPEG baseline/extended/lossless, JPEG-LS), pylibjpeg-openjpeg (JPEG 2000),
pylibjpeg-rle (RLE), Pillow (JPEG baseline), and pydicom itself (native, deflate, big endian).
Files without File Meta (ACR-NEMA style, PS3.10 7.1 absent) are read with force=True and given
the transfer syntax pydicom detected while reading them.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_partial
from pydicom.pixels import pixel_array
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSNearLossless,
)
from pydicom.valuerep import VR

from engine.display.lut import Lut, LutError, lut_from_item
from engine.display.modality import modality_values
from engine.display.window import FUNCTIONS, Window
from engine.io import isolation
from engine.io.errors import ReadError, is_interrupt, short_reason
from engine.io.jpeg12 import decode_jpeg12, needs_gdcm_jpeg12
from engine.io.model import Image
from engine.io.safety import JPEG_FAMILY, check_jpeg_frame, polite_plugin
from engine.io.sources import Source

MAX_FRAME_PIXELS = 20_000 * 20_000  # refuse absurd headers before allocating
MAX_FRAMES = 10_000  # a damaged Number of Frames must not make a billion Images
ALWAYS_LOSSY = {JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLSNearLossless,
                "1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.101", "1.2.840.10008.1.2.4.102",
                "1.2.840.10008.1.2.4.103", "1.2.840.10008.1.2.4.104", "1.2.840.10008.1.2.4.105",
                "1.2.840.10008.1.2.4.106"}
LOSSY_UNLESS_SAID = {"1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.93",  # JPEG 2000 (may be)
                     "1.2.840.10008.1.2.4.203"}  # HTJ2K (may be)

_NOT_IMAGES = (  # SOP Class UID prefix -> why it is skipped
    ("1.2.840.10008.1.3.10", "is a DICOMDIR index"),
    ("1.2.840.10008.5.1.4.1.1.88.", "is a structured report or key object selection"),
    ("1.2.840.10008.5.1.4.1.1.11.", "is a presentation state"),
    ("1.2.840.10008.5.1.4.1.1.9.", "is a waveform"),
    ("1.2.840.10008.5.1.4.1.1.104.", "is an encapsulated document"),
    ("1.2.840.10008.5.1.4.1.1.66", "is raw data, a registration or a segmentation"),
    ("1.2.840.10008.5.1.4.1.1.30", "is a parametric map"),
    ("1.2.840.10008.5.1.4.1.1.481.", "is a radiotherapy object"),
)
_RT_IMAGE = "1.2.840.10008.5.1.4.1.1.481.1"


def read_header(source: Source) -> Dataset:
    """The dataset up to (not including) the pixel data; ReadError if it is not DICOM.

    Tries the DICOM File Format first (PS3.10: preamble, "DICM", File Meta), then a bare dataset
    (ACR-NEMA style) accepted only if it starts like one (group 0008, or a group length). The
    first element is checked before the forced parse: pydicom reads a file of zeros as one empty
    element per 8 bytes, minutes for a large file.
    """
    zeros: list[bool] = []
    stop_when = _header_end(zeros)
    try:
        with source.streamed() as handle:
            if _zeros_after_meta(handle):
                raise ReadError(_zeros_sentence(source.name))
            handle.seek(0)
            try:
                ds = read_partial(handle, stop_when=stop_when)
            except InvalidDicomError:
                handle.seek(0)
                start = handle.read(132)
                if start[128:132] != b"DICM" and not _starts_like_dataset(start):
                    raise ReadError(f"{source.name} is not a DICOM file.") from None
                handle.seek(0)
                ds = read_partial(handle, stop_when=stop_when, force=True)
                _check_bare_dataset(ds, source)
            _touch(ds)
    except ReadError:
        raise
    except BaseException as exc:  # pydicom raises many types on broken input
        if is_interrupt(exc):
            raise
        raise ReadError(f"{source.name} is not a readable DICOM file ({short_reason(exc)}).") from exc
    if zeros and not _padded_non_image(ds):
        raise ReadError(_zeros_sentence(source.name))
    ensure_transfer_syntax(ds)
    return ds


_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00009, 0x7FE00008})  # pixel data: the header ends


def _header_end(zeros: list[bool]) -> Callable[[Any, Any, int], bool]:
    """pydicom's stop_when for read_header: stop before the pixel data (stop_before_pixels), and
    at an element (0000,0000) of length 0, which a stored dataset never holds but a run of zero
    bytes reads as, 8 bytes at a time (a file zero-filled after its header, from a failed copy
    or a transfer cut short, took 13 s per 20 MB to parse to its end). That stop is noted in
    `zeros`: read_header refuses the file unless it is a non-image object merely padded."""
    def stop(tag: Any, _vr: Any, length: int) -> bool:
        if tag == 0 and not length:
            zeros.append(True)
            return True
        return int(tag) in _PIXEL_TAGS
    return stop


def _padded_non_image(ds: Dataset) -> bool:
    """A non-image object (a report, a DICOMDIR...) with zero padding at its end: it is read
    as before and skipped for what it is. An image header cut off by zeros is damage."""
    return _non_image_reason(ds) is not None


def _zeros_sentence(name: str) -> str:
    return (f"{name} holds zero bytes where its DICOM data should be; the file is probably "
            "damaged (zero-filled or cut short).")


_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT",
             b"UV"}  # explicit VR with a 2-byte reserved field and a 4-byte length


def _zeros_after_meta(handle: Any) -> bool:
    """Whether the dataset after "DICM" and the File Meta group starts with 8 zero bytes.
    pydicom reads what follows the meta as command elements (group 0000) before stop_when is
    consulted, so a zero-filled body is caught here, before parsing. The meta's end is found by
    walking its elements (group 0002), as pydicom does, not by trusting its group length."""
    handle.seek(128)
    if handle.read(4) != b"DICM":
        return False
    at = 132
    for _ in range(256):  # a File Meta group has a dozen elements
        head = handle.read(12)
        if len(head) < 8 or struct.unpack("<H", head[:2])[0] != 0x0002:
            break
        vr = head[4:6]
        if vr in _LONG_VRS and len(head) == 12:
            at += 12 + struct.unpack("<I", head[8:12])[0]
        elif vr in _VRS:
            at += 8 + struct.unpack("<H", head[6:8])[0]
        else:  # implicit VR (not conformant for a File Meta, but met)
            at += 8 + struct.unpack("<I", head[4:8])[0]
        handle.seek(at)
    handle.seek(at)
    return handle.read(8) == bytes(8)


_DATASET_GROUPS = (0x0000, 0x0002, 0x0008)  # what _check_bare_dataset accepts first
_VRS = {vr.value.encode("ascii") for vr in VR if len(vr.value) == 2}


def _starts_like_dataset(head: bytes) -> bool:
    """Whether the first element of a file without preamble could begin a dataset that
    `_check_bare_dataset` accepts: group 0000, 0002 or 0008 (little endian, or big endian with
    explicit VR, as pydicom guesses), and a group length (element 0000) of UL, 4 bytes long."""
    if len(head) < 8:
        return False
    vr = head[4:6]
    explicit = vr in _VRS
    for order in ("<", ">") if explicit else ("<",):
        group, element = struct.unpack(f"{order}HH", head[:4])
        if group not in _DATASET_GROUPS:
            continue
        if element != 0:
            return True
        if explicit:
            return vr == b"UL" and struct.unpack(f"{order}H", head[6:8])[0] == 4
        return struct.unpack("<I", head[4:8])[0] == 4
    return False


def _check_bare_dataset(ds: Dataset, source: Source) -> None:
    tags = [int(tag) for tag in ds.keys()]
    if len(tags) < 2 or (tags[0] >> 16) not in (0x0000, 0x0002, 0x0008):
        raise ReadError(f"{source.name} is not a DICOM file.")


def _touch(ds: Dataset) -> None:
    """Convert the raw elements we use now, so broken values fail here, not later."""
    for keyword in ("SOPClassUID", "Rows", "Columns", "NumberOfFrames", "SamplesPerPixel",
                    "PhotometricInterpretation", "BitsStored", "PixelRepresentation"):
        ds.get(keyword)


def ensure_transfer_syntax(ds: Dataset) -> None:
    """Give a dataset without File Meta the transfer syntax it was read with (PS3.5 A.1/A.2)."""
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        meta = ds.file_meta = FileMetaDataset()
    if meta.get("TransferSyntaxUID"):
        return
    implicit, little = ds.original_encoding
    if implicit or implicit is None:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def skip_reason(ds: Dataset) -> str | None:
    """Why a readable DICOM object is not an image to show, or None if it is one.

    Raises ReadError for an image object that lost its Image Pixel module (a truncated file)."""
    reason = _non_image_reason(ds)
    if reason is not None:
        return reason
    sop_class = _sop_class(ds)
    if not ds.get("Rows") or not ds.get("Columns"):
        if "Image Storage" in UID(sop_class).name:
            raise ReadError("The file is an image object without Rows/Columns; it is incomplete "
                            "or damaged.")
        return "has no image (no Rows/Columns)"
    return None


def _sop_class(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    return str(ds.get("SOPClassUID", "") or "") or (
        str(meta.get("MediaStorageSOPClassUID", "") or "") if meta is not None else "")


def _non_image_reason(ds: Dataset) -> str | None:
    """Why the object's SOP Class is not an image (a report, a DICOMDIR...), or None."""
    sop_class = _sop_class(ds)
    if sop_class and sop_class != _RT_IMAGE:
        for prefix, reason in _NOT_IMAGES:
            if sop_class.startswith(prefix):
                return f"{reason} ({UID(sop_class).name}), not an image"
    return None


def frame_count(ds: Dataset) -> int:
    """Number of Frames (0028,0008), 1 when absent or broken."""
    try:
        count = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return 1
    return max(1, count)


def images_from_header(source: Source, ds: Dataset) -> list[Image]:
    """One Image per frame of the object whose header is `ds` (PS3.3 C.7.6.6 Multi-frame)."""
    rows, columns = int(ds.Rows), int(ds.Columns)
    if rows * columns > MAX_FRAME_PIXELS:
        raise ReadError(f"{source.name} claims a {columns}x{rows} image, larger than supported.")
    frames = frame_count(ds)
    if frames > MAX_FRAMES:
        raise ReadError(f"{source.name} claims {frames} frames, more than supported.")
    pixels = _PixelSource(source, frames)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    little = ds.file_meta.TransferSyntaxUID != ExplicitVRBigEndian
    return [_image(source, ds, frame, frames, rows, columns, pixels, signed, little)
            for frame in range(frames)]


def _image(source: Source, ds: Dataset, frame: int, frames: int, rows: int, columns: int,
           pixels: _PixelSource, signed: bool, little: bool) -> Image:
    transfer_syntax = str(ds.file_meta.TransferSyntaxUID)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2")
    function = str(frame_attr(ds, frame, "FrameVOILUTSequence", "VOILUTFunction") or "LINEAR")
    function = function.strip().upper() if function.strip().upper() in FUNCTIONS else "LINEAR"
    spacing, spacing_source = _pixel_spacing(ds, frame)
    aspect = pixel_aspect(ds, spacing)
    modality_lut = _modality_lut(ds, signed, little)
    slope = _number(frame_attr(ds, frame, "PixelValueTransformationSequence", "RescaleSlope"), 1.0)
    intercept = _number(
        frame_attr(ds, frame, "PixelValueTransformationSequence", "RescaleIntercept"), 0.0)

    def load() -> np.ndarray:
        return pixels.modality_values(frame, lut=modality_lut, slope=slope, intercept=intercept)

    padding = None
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        padding = pixel_padding(ds, signed, modality_lut, slope, intercept)

    shape = _text(ds, "PresentationLUTShape").upper() or None
    return Image(
        path=source.path, loader=load, source_file=source.file, frame=frame, frames=frames,
        rows=rows, columns=columns, photometric=photometric,
        windows=file_windows(ds, frame, function),
        voi_luts=_voi_luts(ds, signed, little), voi_function=function,
        presentation_lut_shape=shape if shape in ("IDENTITY", "INVERSE") else None,
        pixel_spacing=spacing, spacing_source=spacing_source, pixel_aspect=aspect, dataset=ds,
        sop_instance_uid=_text(ds, "SOPInstanceUID"), sop_class_uid=_text(ds, "SOPClassUID"),
        instance_number=_integer(ds.get("InstanceNumber")), modality=_text(ds, "Modality"),
        lossy=is_lossy(ds), bits_stored=_integer(ds.get("BitsStored")) or 8, is_dicom=True,
        transfer_syntax=transfer_syntax, rescale_slope=slope, rescale_intercept=intercept,
        modality_lut=modality_lut, pixel_representation=1 if signed else 0, padding=padding,
    )


def pixel_padding(ds: Dataset, signed: bool, lut: Lut | None = None, slope: float = 1.0,
                  intercept: float = 0.0) -> tuple[float, float] | None:
    """Pixel Padding Value (0028,0120), with Pixel Padding Range Limit (0028,0121) when present,
    PS3.3 C.7.5.1.1.2: stored values that are not part of the image (the area outside a
    collimated or circular field, say), as the modality values (low, high) they map to. None
    when the file has no (readable) padding value."""
    stored = [_stored_number(ds, keyword, signed)
              for keyword in ("PixelPaddingValue", "PixelPaddingRangeLimit")]
    if stored[0] is None:
        return None
    ends = np.array([stored[0], stored[0] if stored[1] is None else stored[1]], np.float64)
    mapped = modality_values(ends, lut=lut, slope=slope, intercept=intercept)
    return float(mapped.min()), float(mapped.max())


def _stored_number(ds: Dataset, keyword: str, signed: bool) -> int | None:
    """A US-or-SS value: pydicom reads it as a number, or as raw bytes when the VR stayed
    ambiguous; a multi-valued or unreadable one counts as absent."""
    try:
        value = ds.get(keyword)
    except Exception:  # noqa: BLE001 - an unreadable optional value
        return None
    if isinstance(value, bytes | bytearray):
        if len(value) != 2:
            return None
        return int.from_bytes(value, "little", signed=signed)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def file_windows(ds: Dataset, frame: int = 0, function: str = "LINEAR") -> list[Window]:
    """Every Window Center/Width pair with its explanation, PS3.3 C.11.2 (VOI LUT Module).

    Pairs with a width the function cannot use (LINEAR needs >= 1, others > 0) are dropped.
    """
    centers = _numbers(frame_attr(ds, frame, "FrameVOILUTSequence", "WindowCenter"))
    widths = _numbers(frame_attr(ds, frame, "FrameVOILUTSequence", "WindowWidth"))
    raw_explanations = frame_attr(ds, frame, "FrameVOILUTSequence",
                                   "WindowCenterWidthExplanation")
    explanations = [str(e) for e in _as_list(raw_explanations)]
    windows = []
    for i, (center, width) in enumerate(zip(centers, widths, strict=False)):
        minimum = 1.0 if function == "LINEAR" else 0.0
        if not (np.isfinite(center) and np.isfinite(width)) or width < minimum or (
                function != "LINEAR" and width <= 0):
            continue
        text = explanations[i].strip() if i < len(explanations) and explanations[i] else ""
        windows.append(Window(center, width, text or f"File window {i + 1}", function))
    return windows


def is_lossy(ds: Dataset) -> bool:
    """Lossy Image Compression (0028,2110) "01", or a transfer syntax that implies it."""
    flag = _text(ds, "LossyImageCompression")
    syntax = str(ds.file_meta.get("TransferSyntaxUID", ""))
    if flag == "01" or syntax in ALWAYS_LOSSY:
        return True
    return syntax in LOSSY_UNLESS_SAID and flag != "00"


class _PixelSource:
    """Decodes frames of one file; keeps the parsed file for multi-frame objects only."""

    def __init__(self, source: Source, frames: int) -> None:
        self.source = source
        self.frames = frames
        self._dataset: Dataset | None = None
        self._lock = threading.Lock()

    def modality_values(self, frame: int, *, lut: Lut | None, slope: float,
                        intercept: float) -> np.ndarray:
        stored = self.frame(frame)
        return modality_values(stored, lut=lut, slope=slope, intercept=intercept)

    def frame(self, frame: int) -> np.ndarray:
        """Stored values of one frame as a 2-D array (colour converted to luminance)."""
        with self._lock:
            ds = self._dataset or self._read()
            if self.frames > 1:
                self._dataset = ds
        index = frame if self.frames > 1 else None
        try:
            return to_gray(_apply_palette(_decode(ds, index), ds))
        except BaseException as exc:  # decoders raise many types on broken data
            if is_interrupt(exc):
                raise
            syntax = UID(str(ds.file_meta.get("TransferSyntaxUID", ""))).name
            raise ReadError(f"Could not decode the pixels of {self.source.name} ({syntax}): "
                            f"{short_reason(exc)}.") from exc

    def _read(self) -> Dataset:
        try:
            with self.source.opened() as handle:
                ds = dcmread(handle, force=True)
        except ReadError:
            raise
        except BaseException as exc:
            if is_interrupt(exc):
                raise
            raise ReadError(f"{self.source.name} could not be read again ({short_reason(exc)}).") from exc
        ensure_transfer_syntax(ds)
        if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
            raise ReadError(f"{self.source.name} has no pixel data.")
        return ds


def _decode(ds: Dataset, index: int | None) -> np.ndarray:
    """Stored values of one frame (all frames when index is None), by a decoder that raises on
    bad data rather than crashing the process (see engine.io.safety); what only GDCM decodes runs
    in a helper process (engine.io.isolation)."""
    syntax = ds.file_meta.TransferSyntaxUID
    if syntax in JPEG_FAMILY:
        check_jpeg_frame(ds, index)  # GDCM must never see a damaged JPEG header
    if needs_gdcm_jpeg12(ds):
        return isolation.run(decode_jpeg12, _pixel_part(ds), index)
    plugin = polite_plugin(syntax)
    if plugin:
        try:
            return pixel_array(ds, index=index, decoding_plugin=plugin)
        except Exception:
            if syntax not in JPEG_FAMILY:
                raise
    if syntax in JPEG_FAMILY:  # JPEG Lossless, JPEG-LS, or a checked JPEG Pillow refuses: GDCM
        return isolation.run(_decode_by_pydicom, _pixel_part(ds), index)
    return pixel_array(ds, index=index)


def _decode_by_pydicom(ds: Dataset, index: int | None) -> np.ndarray:
    """pydicom's own choice of decoder (module level: runs in a helper process)."""
    return pixel_array(ds, index=index)


_PIXEL_KEYWORDS = ("SamplesPerPixel", "PhotometricInterpretation", "PlanarConfiguration",
                   "NumberOfFrames", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit",
                   "PixelRepresentation", "ExtendedOffsetTable", "ExtendedOffsetTableLengths",
                   "PixelData")


def _pixel_part(ds: Dataset) -> Dataset:
    """Only what decoding needs: no patient data crosses to the helper, and less to copy."""
    part = Dataset()
    part.file_meta = FileMetaDataset()
    part.file_meta.TransferSyntaxUID = ds.file_meta.TransferSyntaxUID
    for keyword in _PIXEL_KEYWORDS:
        element = ds.data_element(keyword) if keyword in ds else None
        if element is not None:
            part[element.tag] = element
    return part


def _apply_palette(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    if str(ds.get("PhotometricInterpretation", "")) != "PALETTE COLOR":
        return arr
    from pydicom.pixels import apply_color_lut

    return apply_color_lut(arr, ds)


def to_gray(arr: np.ndarray) -> np.ndarray:
    """Luminance of RGB(A) (ITU-R BT.601 weights, as Pillow's "L"); grayscale passes through.

    When the three channels are equal (gray stored as RGB), the first channel is returned exactly.
    """
    arr = np.asarray(arr)
    if arr.ndim == 2:
        return arr
    if arr.ndim != 3:
        raise ReadError(f"Unexpected pixel array shape {arr.shape}.")
    channels = arr.shape[2]
    if channels in (1, 2):  # gray or gray + alpha
        return arr[..., 0]
    rgb = arr[..., :3]
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return rgb[..., 0]
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return rgb.astype(np.float32) @ weights


def frame_attr(ds: Dataset, frame: int, sequence: str, keyword: str) -> object:
    """An attribute from the Per-frame, then Shared Functional Groups (PS3.3 C.7.6.16), else
    from the top level of the dataset."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame),
                          ("SharedFunctionalGroupsSequence", 0)):
        try:
            item = ds[groups].value[index]
            macro = item[sequence].value[0]
            if keyword in macro:
                return macro[keyword].value
        except (KeyError, IndexError, TypeError, AttributeError):
            continue
    try:
        return ds.get(keyword)
    except Exception:
        return None


def _pixel_spacing(ds: Dataset, frame: int) -> tuple[tuple[float, float] | None, str]:
    """(row, column) spacing in mm and where it is valid; zero or negative values are ignored.

    The source is "PixelSpacing" (calibrated to the patient), "PixelSpacing:<TYPE>" when Pixel
    Spacing Calibration Type says how (GEOMETRY, FIDUCIAL), "ImagerPixelSpacing" (at the
    detector: lengths include the geometric magnification, ~10-15% on a chest radiograph), or
    "none". Per PS3.3 10.7.1.1, a Pixel Spacing equal to Imager Pixel Spacing with no calibration
    type is the detector spacing copied, not calibrated: that is reported as ImagerPixelSpacing.
    """
    def positive_pair(value: object) -> tuple[float, float] | None:
        numbers = _numbers(value)
        if len(numbers) >= 2 and all(np.isfinite(n) and n > 0 for n in numbers[:2]):
            return numbers[0], numbers[1]
        return None

    pixel = positive_pair(frame_attr(ds, frame, "PixelMeasuresSequence", "PixelSpacing"))
    imager = positive_pair(_safe_get(ds, "ImagerPixelSpacing"))
    calibration = _text(ds, "PixelSpacingCalibrationType").upper()
    if pixel is not None:
        if calibration:
            return pixel, f"PixelSpacing:{calibration}"
        if imager is not None and np.allclose(pixel, imager, rtol=1e-6, atol=1e-9):
            return imager, "ImagerPixelSpacing"
        return pixel, "PixelSpacing"
    if imager is not None:
        return imager, "ImagerPixelSpacing"
    return None, "none"


MAX_PIXEL_ASPECT = 3.0  # beyond this a pixel shape is taken for a damaged tag, not a detector


def pixel_aspect(ds: Dataset, spacing: tuple[float, float] | None) -> tuple[float, float]:
    """Height : width of a pixel as (row, column), scaled so the smaller is 1: from the pixel
    spacing when there is one (its ratio holds whether calibrated or at the detector), else
    Pixel Aspect Ratio (0028,0034), else square. A ratio within 0.1 % of square, or beyond
    MAX_PIXEL_ASPECT (not a real detector), counts as square."""
    pair: tuple[float, float] | None = spacing
    if pair is None:
        numbers = _numbers(_safe_get(ds, "PixelAspectRatio"))
        if len(numbers) >= 2 and all(np.isfinite(n) and n > 0 for n in numbers[:2]):
            pair = (numbers[0], numbers[1])
    if pair is None:
        return (1.0, 1.0)
    row, column = float(pair[0]), float(pair[1])
    ratio = max(row, column) / min(row, column)
    if ratio < 1.001 or ratio > MAX_PIXEL_ASPECT:
        return (1.0, 1.0)
    small = min(row, column)
    return (row / small, column / small)


def _modality_lut(ds: Dataset, signed: bool, little: bool) -> Lut | None:
    items = _safe_get(ds, "ModalityLUTSequence")
    if not items:
        return None
    try:
        return lut_from_item(items[0], little_endian=little, signed=signed)
    except LutError:
        return None  # fall back to rescale, as most viewers do


def _voi_luts(ds: Dataset, signed: bool, little: bool) -> list[Lut]:
    luts = []
    for item in _safe_get(ds, "VOILUTSequence") or []:
        try:
            luts.append(lut_from_item(item, little_endian=little, signed=signed))
        except LutError:
            continue
    return luts


def _safe_get(ds: Dataset, keyword: str) -> object:
    try:
        return ds.get(keyword)
    except Exception:
        return None


def _text(ds: Dataset, keyword: str) -> str:
    value = _safe_get(ds, keyword)
    if value is None:
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value).strip()
    return str(value).strip()


def _as_list(value: object) -> list:
    if value is None or value == "":
        return []
    if isinstance(value, str | bytes):
        return [value]
    try:
        return list(value)  # type: ignore[call-overload]
    except TypeError:
        return [value]


def _numbers(value: object) -> list[float]:
    numbers = []
    for item in _as_list(value):
        try:
            numbers.append(float(item))
        except (TypeError, ValueError):
            continue
    return numbers


def _number(value: object, default: float) -> float:
    numbers = _numbers(value)
    return numbers[0] if numbers and np.isfinite(numbers[0]) else default


def _integer(value: object) -> int | None:
    numbers = _numbers(value)
    return int(numbers[0]) if numbers and np.isfinite(numbers[0]) else None
