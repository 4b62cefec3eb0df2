"""Keeping native decoders away from data that crashes them.

A decoder written in C or Rust can take the whole process down instead of raising: GDCM's JPEG
codec throws a C++ exception through libjpeg's C frames (std::terminate) when a header segment is
damaged, and pylibjpeg-rle panics on inconsistent RLE segments (caught: it is a BaseException).
So, per transfer syntax, a decoder that fails politely is chosen where one is installed, and
JPEG / JPEG-LS codestreams (ISO/IEC 10918-1 B.1, ISO/IEC 14495-1 C.1: the same marker syntax) are
checked in Python before GDCM sees them.
"""

from __future__ import annotations

import struct

from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

# decoders that raise on bad data, preferred over GDCM (pydicom tries GDCM first otherwise)
_POLITE_PLUGIN = {
    JPEGBaseline8Bit: "pillow",
    JPEGExtended12Bit: "pillow",  # 8-bit samples only; 12-bit goes to engine.io.jpeg12
    JPEG2000Lossless: "pylibjpeg",
    JPEG2000: "pylibjpeg",
    HTJ2KLossless: "pylibjpeg",
    HTJ2KLosslessRPCL: "pylibjpeg",
    HTJ2K: "pylibjpeg",
    RLELossless: "pylibjpeg",
}
JPEG_FAMILY = {JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1, JPEGLSLossless,
               JPEGLSNearLossless}
_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC} | {0xF7}  # frame headers, incl. JPEG-LS
_STANDALONE = set(range(0xD0, 0xD8)) | {0x01}  # RSTn, TEM: no length field


def polite_plugin(syntax: str) -> str:
    """The decoding plugin to ask pydicom for ("" = pydicom's own choice)."""
    from pydicom.pixels import get_decoder

    plugin = _POLITE_PLUGIN.get(syntax, "")
    if not plugin:
        return ""
    try:
        available = get_decoder(syntax).available_plugins
    except (NotImplementedError, ValueError):
        return ""
    return plugin if plugin in available else ""


def check_jpeg_frame(ds: Dataset, index: int | None) -> None:
    """Raise ValueError if frame `index` of a JPEG-family dataset is not a well-formed
    codestream for this image (markers, segment lengths, frame header size)."""
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    codestream = get_frame(ds.PixelData, index or 0, number_of_frames=frames)
    check_jpeg_codestream(codestream, rows=int(ds.Rows), columns=int(ds.Columns),
                          samples=int(ds.get("SamplesPerPixel", 1) or 1),
                          bits_allocated=int(ds.get("BitsAllocated", 16) or 16))


def check_jpeg_codestream(data: bytes, *, rows: int, columns: int, samples: int = 1,
                          bits_allocated: int = 16) -> None:
    """Walk the marker segments of a JPEG / JPEG-LS codestream (ISO/IEC 10918-1 B.1.1) up to
    its end; raise ValueError at the first damaged one."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("the JPEG data does not start with a start-of-image marker")
    pos, seen_frame = 2, False
    while pos < len(data):
        if data[pos] != 0xFF:
            raise ValueError(f"the JPEG data has stray bytes where a marker should be ({pos})")
        while pos < len(data) and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= len(data):
            break
        marker = data[pos]
        pos += 1
        if marker == 0xD9:  # end of image
            return
        if marker in _STANDALONE:
            continue
        if pos + 2 > len(data):
            break
        (length,) = struct.unpack(">H", data[pos:pos + 2])
        if length < 2 or pos + length > len(data):
            raise ValueError(f"a JPEG marker segment has an impossible length ({length})")
        if marker in _SOF:
            _check_frame_header(data[pos + 2:pos + length], rows, columns, samples,
                                bits_allocated)
            seen_frame = True
        pos += length
        if marker == 0xDA:  # start of scan: skip the entropy-coded data
            if not seen_frame:
                raise ValueError("the JPEG data has a scan before its frame header")
            pos = _end_of_entropy_data(data, pos)
    # running out of data (truncation) is left to the decoder, which reports it politely


def _check_frame_header(segment: bytes, rows: int, columns: int, samples: int,
                        bits_allocated: int) -> None:
    """Frame header (ISO/IEC 10918-1 B.2.2): precision, size and component count must fit the
    dataset (a wild precision made GDCM segfault)."""
    if len(segment) < 6:
        raise ValueError("the JPEG frame header is too short")
    precision = segment[0]
    height, width = struct.unpack(">HH", segment[1:5])
    components = segment[5]
    if not 2 <= precision <= min(16, max(bits_allocated, 8)):
        raise ValueError(f"the JPEG sample precision ({precision} bits) does not fit the image")
    if (height and height != rows) or width != columns:
        raise ValueError(f"the JPEG frame is {width}x{height}, the header says {columns}x{rows}")
    if components != samples or len(segment) < 6 + 3 * components:
        raise ValueError(f"the JPEG frame has {components} components, the header says {samples}")


def _end_of_entropy_data(data: bytes, pos: int) -> int:
    """Position of the next marker after entropy-coded data (0xFF not followed by a stuffed
    0x00, a restart marker or, in JPEG-LS, a bit-stuffing byte < 0x80)."""
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= len(data):
            return len(data)
        following = data[pos + 1]
        if following == 0x00 or following < 0x80 or 0xD0 <= following <= 0xD7 or following == 0xFF:
            pos += 1
            continue
        return pos
