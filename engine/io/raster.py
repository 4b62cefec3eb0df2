"""PNG, JPEG and TIFF images (8- or 16-bit, gray or colour) as Images without a dataset."""

from __future__ import annotations

import warnings

import numpy as np

from engine.io.dicom import to_gray
from engine.io.errors import ReadError, is_interrupt, short_reason
from engine.io.model import Image
from engine.io.sources import Source

RASTER_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}
_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*")


def looks_like_raster(head: bytes) -> bool:
    """Whether the first bytes of a file are a PNG, JPEG or TIFF signature."""
    return head.startswith(_MAGIC)


def is_tiff(head: bytes) -> bool:
    return head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"))


def image_from_raster(source: Source) -> Image:
    """An Image for a PNG/JPEG/TIFF file: size read now, pixels on demand (as modality values
    equal to the gray levels, MONOCHROME2, no windows: the display offers Auto and Full range)."""
    rows, columns, bits = _header(source)

    def load() -> np.ndarray:
        return read_raster(source)

    return Image(path=source.path, loader=load, source_file=source.file, rows=rows,
                 columns=columns, photometric="MONOCHROME2", bits_stored=bits, is_dicom=False,
                 lossy=source.path.suffix.lower() in (".jpg", ".jpeg"), modality="")


def read_raster(source: Source) -> np.ndarray:
    """Gray levels as float32 (rows, columns): RGB(A) -> luminance, alpha dropped."""
    try:
        with source.opened() as handle:
            head = handle.read(8)
            handle.seek(0)
            arr = _read_tiff(handle) if is_tiff(head) else _read_pillow(handle)
    except ReadError:
        raise
    except BaseException as exc:
        if is_interrupt(exc):
            raise
        raise ReadError(f"{source.name} is not a readable image ({short_reason(exc)}).") from exc
    gray = to_gray(_channels_last(arr))
    if gray.ndim != 2 or gray.size == 0:
        raise ReadError(f"{source.name} holds no 2-D image.")
    return gray.astype(np.float32)


def _header(source: Source) -> tuple[int, int, int]:
    try:
        with source.opened() as handle:
            head = handle.read(8)
            handle.seek(0)
            if is_tiff(head):
                import tifffile

                with tifffile.TiffFile(handle) as tif:
                    page = tif.pages[0]
                    rows, columns = int(page.imagelength), int(page.imagewidth)
                    bits = int(page.bitspersample)
            else:
                from PIL import Image as PILImage

                with warnings.catch_warnings(), PILImage.open(handle) as img:
                    warnings.simplefilter("ignore")
                    columns, rows = img.size
                    bits = 16 if img.mode.startswith("I") else 8
    except BaseException as exc:
        if is_interrupt(exc):
            raise
        raise ReadError(f"{source.name} is not a readable image ({short_reason(exc)}).") from exc
    if rows <= 0 or columns <= 0:
        raise ReadError(f"{source.name} has no pixels.")
    return rows, columns, bits


def _read_pillow(handle) -> np.ndarray:
    from PIL import Image as PILImage

    with PILImage.open(handle) as img:
        img.load()
        mode = img.mode
        if mode == "1":
            return np.asarray(img, dtype=np.uint8) * np.uint8(255)
        if mode in ("L", "LA", "I", "F") or mode.startswith("I;16"):
            arr = np.asarray(img)
            return arr if mode != "I" else arr.astype(np.int64)
        if mode not in ("RGB", "RGBA"):
            img = img.convert("RGBA" if "A" in mode or mode == "P" else "RGB")
        return np.asarray(img)


def _read_tiff(handle) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(handle) as tif:
        return tif.pages[0].asarray()


def _channels_last(arr: np.ndarray) -> np.ndarray:
    """TIFFs with planar configuration come as (samples, rows, columns)."""
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[2] not in (1, 2, 3, 4):
        return np.moveaxis(arr, 0, -1)
    return arr
