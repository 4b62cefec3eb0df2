"""PNG, JPEG and TIFF images (gray or colour, 1 to 16 bits) as Images without a dataset.

TIFF (TIFF 6.0 Part 1 and 2) is read by tifffile page by page, honouring what the page says its
samples mean: min-is-white gray becomes MONOCHROME1 (values kept, the display inverts once), a
palette is looked up, CMYK is converted to gray as Pillow does, bilevel and other sub-8-bit gray
is scaled to 0..255 as Pillow scales PNG, planar samples are moved last by the page's axes,
YCbCr goes to Pillow, and any other colour space is refused with a sentence. A multi-page TIFF
is one Image per full-resolution page (`frame`, `frames`); reduced-resolution pages (thumbnails,
pyramid levels) and transparency masks are not pages to show. The first page decides whether the
file opens; a later page that cannot be read is left out with a sentence (raster_images).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from engine.io.dicom import MAX_FRAME_PIXELS, MAX_FRAMES, to_gray
from engine.io.errors import ReadError, is_interrupt, short_reason
from engine.io.model import Image
from engine.io.sources import Source

RASTER_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}
_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*")
_MEGAPIXELS = MAX_FRAME_PIXELS // 1_000_000


def looks_like_raster(head: bytes) -> bool:
    """Whether the first bytes of a file are a PNG, JPEG or TIFF signature."""
    return head.startswith(_MAGIC)


def is_tiff(head: bytes) -> bool:
    return head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"))


@dataclass(frozen=True)
class _Page:
    index: int  # in the file's chain of pages (tifffile's and Pillow's numbering)
    rows: int
    columns: int
    bits: int
    photometric: str


def image_from_raster(source: Source) -> Image:
    """An Image for a PNG/JPEG/TIFF file: its first page (`frames` says how many it holds; see
    images_from_raster for all of them)."""
    return images_from_raster(source)[0]


def images_from_raster(source: Source) -> list[Image]:
    """One Image per page of a PNG/JPEG/TIFF file: sizes read now, pixels on demand (as modality
    values equal to the gray levels, no windows: the display offers Auto and Full range).
    TIFF pages after the first that cannot be read are left out (see raster_images)."""
    return raster_images(source)[0]


def raster_images(source: Source) -> tuple[list[Image], list[str]]:
    """images_from_raster, and the sentences for what was left out of the file (at most one: the
    TIFF pages after the first that cannot be read), each worth a Problem for the file."""
    dropped: list[str] = []
    pages = _header(source, dropped)
    lossy = source.path.suffix.lower() in (".jpg", ".jpeg")
    images = [_image(source, page, frame, len(pages), lossy) for frame, page in enumerate(pages)]
    return images, dropped


def _image(source: Source, page: _Page, frame: int, frames: int, lossy: bool) -> Image:
    def load() -> np.ndarray:
        return read_raster(source, page.index)

    return Image(path=source.path, loader=load, source_file=source.file, frame=frame,
                 frames=frames, rows=page.rows, columns=page.columns,
                 photometric=page.photometric, bits_stored=page.bits, is_dicom=False,
                 lossy=lossy, modality="")


def read_raster(source: Source, page: int = 0) -> np.ndarray:
    """Gray levels as float32 (rows, columns): RGB(A) -> luminance, alpha dropped; for TIFF,
    page `page` with its photometric interpretation applied (see the module docstring)."""
    try:
        with source.opened() as handle:
            head = handle.read(8)
            handle.seek(0)
            arr = _read_tiff(handle, source.name, page) if is_tiff(head) else _read_pillow(handle)
    except ReadError:
        raise
    except BaseException as exc:
        if is_interrupt(exc):
            raise
        raise ReadError(f"{source.name} is not a readable image ({short_reason(exc)}).") from exc
    gray = to_gray(arr)
    if gray.ndim != 2 or gray.size == 0:
        raise ReadError(f"{source.name} holds no 2-D image.")
    return gray.astype(np.float32)


def _header(source: Source, dropped: list[str] | None = None) -> list[_Page]:
    try:
        with source.opened() as handle:
            head = handle.read(8)
            handle.seek(0)
            pages = _tiff_pages(handle, source.name, dropped) if is_tiff(head) else \
                [_pillow_page(handle, source.name)]
    except ReadError:
        raise
    except BaseException as exc:
        if is_interrupt(exc):
            raise
        raise ReadError(f"{source.name} is not a readable image ({short_reason(exc)}).") from exc
    return pages


def _checked_size(name: str, rows: int, columns: int, where: str = "") -> None:
    if rows <= 0 or columns <= 0:
        raise ReadError(f"{name}{where} has no pixels.")
    if rows * columns > MAX_FRAME_PIXELS:
        raise ReadError(f"{name}{where} declares {columns} x {rows} pixels, more than this viewer "
                        f"opens ({_MEGAPIXELS} megapixels); reduce it first.")


def _pillow_page(handle, name: str) -> _Page:
    from PIL import Image as PILImage

    try:
        with warnings.catch_warnings(), PILImage.open(handle) as img:
            warnings.simplefilter("ignore")
            columns, rows = img.size
            bits = 16 if img.mode.startswith("I") else 8
    except PILImage.DecompressionBombError as exc:
        limit = 2 * (PILImage.MAX_IMAGE_PIXELS or 0) // 1_000_000
        raise ReadError(f"{name} declares more pixels than this viewer opens ({limit} megapixels "
                        "for PNG and JPEG); reduce it first.") from exc
    _checked_size(name, rows, columns)
    return _Page(0, rows, columns, bits, "MONOCHROME2")


def _tiff_pages(handle, name: str, dropped: list[str] | None = None) -> list[_Page]:
    """The full-resolution image pages (NewSubfileType bits 0 and 2 clear), the first one always.

    The first page must be readable (a ReadError otherwise, for the whole file). A later page
    that is not (a colour space not read, too large, ...) is left out, and one sentence saying
    so is appended to `dropped`: the file still opens with its good pages (`frames` counts them).
    """
    import tifffile

    with tifffile.TiffFile(handle) as tif:
        pages = []
        bad: list[tuple[int, str]] = []
        for index in range(min(len(tif.pages), MAX_FRAMES)):
            if not index:
                page = tif.pages[0]
                rows, columns = int(page.imagelength), int(page.imagewidth)
                _checked_size(name, rows, columns)
                photometric, bits = _tiff_kind(page, name)
                pages.append(_Page(0, rows, columns, bits, photometric))
                continue
            where = f"page {index + 1}"
            try:
                page = tif.pages[index]
                if page.is_reduced or page.is_mask:  # thumbnails, pyramid levels, masks
                    continue
                rows, columns = int(page.imagelength), int(page.imagewidth)
                _checked_size(where, rows, columns)
                photometric, bits = _tiff_kind(page, where)
            except ReadError as exc:
                bad.append((index, str(exc)))
                continue
            except Exception as exc:  # a damaged page: the chain after it cannot be trusted
                if is_interrupt(exc):
                    raise
                bad.append((index, f"{where} cannot be read ({short_reason(exc)})."))
                break
            pages.append(_Page(index, rows, columns, bits, photometric))
        if bad and dropped is not None:
            dropped.append(_dropped_sentence(name, bad))
        return pages


def _dropped_sentence(name: str, bad: list[tuple[int, str]]) -> str:
    numbers = ", ".join(str(index + 1) for index, _reason in bad)
    label = f"page {numbers} was" if len(bad) == 1 else f"pages {numbers} were"
    reason = bad[0][1].rstrip(".")
    return f"{name}: {label} left out, as {reason}."


def _tiff_kind(page, name: str) -> tuple[str, int]:
    """(Image.photometric, bits of the values read) for a TIFF page; ReadError for kinds not read."""
    from tifffile import PHOTOMETRIC

    kind = page.photometric
    bits = int(page.bitspersample)
    if int(getattr(page, "imagedepth", 1) or 1) > 1:
        raise ReadError(f"{name} is a volume {page.imagedepth} slices deep, which this viewer does "
                        "not open; save the slice to show as its own image first.")
    if kind in (PHOTOMETRIC.MINISBLACK, PHOTOMETRIC.MINISWHITE):
        mono = "MONOCHROME1" if kind == PHOTOMETRIC.MINISWHITE else "MONOCHROME2"
        return mono, 8 if bits < 8 else bits
    if kind == PHOTOMETRIC.RGB:
        if _colour_samples(page) < 3:
            raise ReadError(f"{name} is marked RGB but has fewer than 3 samples per pixel.")
        return "MONOCHROME2", 8 if bits < 8 else bits
    if kind == PHOTOMETRIC.PALETTE:
        colormap = page.colormap
        if colormap is None:
            raise ReadError(f"{name} is a palette image without its colour table.")
        return "MONOCHROME2", 8 if _eight_bit_map(colormap) else 16
    if kind == PHOTOMETRIC.SEPARATED:
        inkset = page.tags.valueof(332, 1)  # InkSet: 1 = CMYK
        if inkset != 1 or _colour_samples(page) < 4 or bits not in (8, 16):
            raise ReadError(f"{name} holds ink separations other than 8- or 16-bit CMYK, which "
                            "this viewer does not read; save it as grayscale or RGB first.")
        return "MONOCHROME2", bits
    if kind == PHOTOMETRIC.YCBCR:
        return "MONOCHROME2", 8  # decoded to RGB by Pillow
    label = getattr(kind, "name", None) or f"photometric {int(kind)}"
    raise ReadError(f"{name} stores its pixels as {label}, which this viewer does not read; save "
                    "it as grayscale or RGB first.")


def _colour_samples(page) -> int:
    return int(page.samplesperpixel) - len(page.extrasamples or ())


def _eight_bit_map(colormap: np.ndarray) -> bool:
    """TIFF colour tables hold 16-bit values; 8-bit ones are written as v * 257."""
    return bool(np.all(np.asarray(colormap) % 257 == 0))


def _read_pillow(handle, page: int = 0) -> np.ndarray:
    from PIL import Image as PILImage

    with PILImage.open(handle) as img:
        if page:
            img.seek(page)
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


def _read_tiff(handle, name: str, index: int) -> np.ndarray:
    """Page `index` as gray (rows, columns) or colour (rows, columns, samples)."""
    import tifffile
    from tifffile import PHOTOMETRIC

    with tifffile.TiffFile(handle) as tif:
        page = tif.pages[index]
        _tiff_kind(page, name)
        kind = page.photometric
        if kind != PHOTOMETRIC.YCBCR:
            arr = page.asarray()
            axes = page.axes
            bits = int(page.bitspersample)
            colormap = page.colormap if kind == PHOTOMETRIC.PALETTE else None
    if kind == PHOTOMETRIC.YCBCR:
        handle.seek(0)
        return _read_pillow(handle, index)
    if "S" in axes and arr.ndim == 3 and axes.index("S") == 0:  # PlanarConfiguration 2
        arr = np.moveaxis(arr, 0, -1)
    if kind == PHOTOMETRIC.PALETTE:
        return _apply_colormap(arr, colormap, name)
    if kind == PHOTOMETRIC.SEPARATED:
        return _cmyk_to_rgb(arr[..., :4], bits)
    if kind == PHOTOMETRIC.RGB:
        arr = arr[..., :3]
    elif arr.ndim == 3:  # gray with extra samples (alpha, ...): the gray one
        arr = arr[..., 0]
    if arr.dtype == np.bool_ or (arr.dtype.kind == "u" and bits < 8):
        top = (1 << bits) - 1
        arr = np.rint(arr.astype(np.float32) * (255.0 / top)).astype(np.uint8)
    return arr


def _apply_colormap(indices: np.ndarray, colormap: np.ndarray, name: str) -> np.ndarray:
    colormap = np.asarray(colormap)
    if indices.ndim != 2 or indices.dtype.kind not in "ub":
        raise ReadError(f"{name} is a palette image whose samples are not single indices.")
    if indices.size and int(indices.max()) >= colormap.shape[-1]:
        raise ReadError(f"{name} uses palette entries beyond its colour table.")
    table = colormap // 257 if _eight_bit_map(colormap) else colormap
    return np.moveaxis(table[:, indices.astype(np.intp)], 0, -1)


def _cmyk_to_rgb(cmyk: np.ndarray, bits: int) -> np.ndarray:
    """Naive CMYK -> RGB (no colour profile), as Pillow: R = (top - C) * (top - K) / top."""
    top = float((1 << bits) - 1)
    cmyk = cmyk.astype(np.float32)
    white = top - cmyk[..., 3:4]
    return np.rint((top - cmyk[..., :3]) * white / top)
