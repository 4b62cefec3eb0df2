"""TIFF pages read as what their tags say they are (TIFF 6.0 Photometric Interpretation,
PlanarConfiguration, BitsPerSample, NewSubfileType): never a silently wrong picture."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage

from engine.display import shows_inverted
from engine.io import load
from engine.io.raster import images_from_raster
from engine.io.sources import Source

GRAY = (np.arange(15, dtype=np.uint8).reshape(3, 5) * 17)  # 0..238, 3 rows x 5 columns


def _image(path: Path):
    collection = load(path)
    assert collection.problems == [], collection.problems
    (image,) = collection.images
    assert not image.is_dicom
    return image


def _problem(path: Path) -> str:
    collection = load(path)
    assert collection.images == []
    (problem,) = collection.problems
    assert not problem.skipped
    return problem.reason


def test_min_is_white_keeps_values_and_displays_inverted(tmp_path):
    tifffile.imwrite(tmp_path / "mw.tif", GRAY, photometric="miniswhite")
    image = _image(tmp_path / "mw.tif")
    assert image.photometric == "MONOCHROME1" and image.bits_stored == 8
    assert shows_inverted(image.photometric, image.presentation_lut_shape)
    assert np.array_equal(image.modality_values(), GRAY.astype(np.float32))


def test_min_is_black_stays_monochrome2(tmp_path):
    tifffile.imwrite(tmp_path / "mb.tif", GRAY, photometric="minisblack")
    image = _image(tmp_path / "mb.tif")
    assert image.photometric == "MONOCHROME2" and image.frames == 1
    assert np.array_equal(image.modality_values(), GRAY.astype(np.float32))


def test_palette_shows_the_colour_table_not_the_indices(tmp_path):
    levels = np.arange(256)
    gray_map = np.stack([255 - levels] * 3).astype(np.uint16) * 257  # index i -> gray 255 - i
    tifffile.imwrite(tmp_path / "gray.tif", GRAY, photometric="palette", colormap=gray_map)
    image = _image(tmp_path / "gray.tif")
    assert image.bits_stored == 8 and image.photometric == "MONOCHROME2"
    assert np.array_equal(image.modality_values(), (255 - GRAY).astype(np.float32))

    colour_map = np.zeros((3, 256), np.uint16)
    colour_map[1] = levels * 257  # index i -> pure green of level i
    tifffile.imwrite(tmp_path / "green.tif", GRAY, photometric="palette", colormap=colour_map)
    values = _image(tmp_path / "green.tif").modality_values()
    assert np.allclose(values, 0.587 * GRAY, atol=1e-3)


def test_palette_with_16_bit_table(tmp_path):
    table = np.stack([np.arange(256) * 200 + 1] * 3).astype(np.uint16)  # not 8-bit * 257
    tifffile.imwrite(tmp_path / "p16.tif", GRAY, photometric="palette", colormap=table)
    image = _image(tmp_path / "p16.tif")
    assert image.bits_stored == 16
    assert np.array_equal(image.modality_values(), (GRAY.astype(np.float32) * 200 + 1))


def test_cmyk_converted_as_pillow_does(tmp_path):
    rng = np.random.default_rng(0)
    cmyk = rng.integers(0, 256, (4, 6, 4), dtype=np.uint8)
    cmyk[0, 0] = (0, 0, 0, 0)  # paper: white
    cmyk[0, 1] = (0, 0, 0, 255)  # full black ink
    tifffile.imwrite(tmp_path / "cmyk.tif", cmyk, photometric="separated")
    image = _image(tmp_path / "cmyk.tif")
    values = image.modality_values()
    expected = np.asarray(PILImage.fromarray(cmyk, "CMYK").convert("L"), np.float32)
    assert values[0, 0] == 255 and values[0, 1] == 0
    assert np.abs(values - expected).max() <= 1.0
    assert values.mean() > 20  # not the all-black picture of C, M, Y read as R, G, B


def test_non_cmyk_inks_refused_with_a_sentence(tmp_path):
    inks = np.zeros((3, 5, 4), np.uint8)
    tifffile.imwrite(tmp_path / "inks.tif", inks, photometric="separated",
                     extratags=[(332, "H", 1, 2, True)])  # InkSet 2: not CMYK
    reason = _problem(tmp_path / "inks.tif")
    assert reason.startswith("inks.tif holds ink separations other than") and "first." in reason


def test_unread_colour_space_refused_with_a_sentence(tmp_path):
    lab = np.zeros((3, 5, 3), np.uint8)
    tifffile.imwrite(tmp_path / "lab.tif", lab, photometric="cielab")
    reason = _problem(tmp_path / "lab.tif")
    assert reason == ("lab.tif stores its pixels as CIELAB, which this viewer does not read; "
                      "save it as grayscale or RGB first.")


def test_ycbcr_decoded_to_rgb_luminance(tmp_path):
    ycc = np.zeros((4, 4, 3), np.uint8)
    ycc[..., 0], ycc[..., 1], ycc[..., 2] = 120, 128, 128  # neutral: gray 120
    tifffile.imwrite(tmp_path / "ycc.tif", ycc, photometric="ycbcr", subsampling=(1, 1))
    values = _image(tmp_path / "ycc.tif").modality_values()
    assert values.shape == (4, 4) and np.allclose(values, 120, atol=1)


@pytest.mark.parametrize("writer", ["pillow", "tifffile"])
def test_bilevel_is_0_and_255(tmp_path, writer):
    bits = GRAY > 100
    path = tmp_path / f"bi_{writer}.tif"
    if writer == "pillow":
        PILImage.fromarray(bits).convert("1").save(path)
    else:
        tifffile.imwrite(path, bits, photometric="minisblack")
    image = _image(path)
    assert image.bits_stored == 8 and image.photometric == "MONOCHROME2"
    assert np.array_equal(image.modality_values(), np.where(bits, 255, 0).astype(np.float32))
    PILImage.fromarray(bits).convert("1").save(tmp_path / "bi.png")
    png = _image(tmp_path / "bi.png")
    assert png.bits_stored == image.bits_stored
    assert np.array_equal(png.modality_values(), image.modality_values())


def test_bilevel_min_is_white(tmp_path):
    bits = GRAY > 100
    tifffile.imwrite(tmp_path / "fax.tif", bits, photometric="miniswhite")
    image = _image(tmp_path / "fax.tif")
    assert image.photometric == "MONOCHROME1"
    assert np.array_equal(image.modality_values(), np.where(bits, 255, 0).astype(np.float32))


def test_4_bit_gray_scaled_to_8_bits(tmp_path):
    pytest.importorskip("imagecodecs")  # tifffile unpacks 2- to 7-bit samples with it
    nibbles = (np.arange(15, dtype=np.uint8) % 16).reshape(3, 5)
    padded = np.concatenate([nibbles, np.zeros((3, 1), np.uint8)], axis=1)
    packed = (padded[:, 0::2] << 4) | padded[:, 1::2]  # 3 bytes per row, MSB first
    path = tmp_path / "g4.tif"
    tifffile.imwrite(path, packed, photometric="minisblack")
    _patch(path, ImageWidth=5, BitsPerSample=4)
    image = _image(path)
    assert image.bits_stored == 8
    assert np.array_equal(image.modality_values(), nibbles.astype(np.float32) * 17)


def test_multi_page_says_page_1_of_n_and_offers_every_page(tmp_path):
    stack = np.stack([GRAY, GRAY + 1, GRAY + 2])
    tifffile.imwrite(tmp_path / "pages.tif", stack, photometric="minisblack")
    collection = load(tmp_path / "pages.tif")  # every page is listed, each saying which it is
    assert collection.problems == []
    assert all(f"frame {k + 1}/3" in i.label for k, i in enumerate(collection.images))
    assert len(collection.images) == 3
    image = collection.images[0]
    assert (image.frame, image.frames) == (0, 3)
    assert np.array_equal(image.modality_values(), GRAY.astype(np.float32))
    path = tmp_path / "pages.tif"
    images = images_from_raster(Source(path, path))
    assert [(i.frame, i.frames) for i in images] == [(0, 3), (1, 3), (2, 3)]
    for k, page in enumerate(images):
        assert np.array_equal(page.modality_values(), (GRAY + k).astype(np.float32))


def test_reduced_resolution_page_is_not_a_page(tmp_path):
    path = tmp_path / "thumb.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(GRAY, photometric="minisblack")
        tif.write(GRAY[::2, ::2], photometric="minisblack", subfiletype=1)  # a thumbnail
    image = _image(path)
    assert image.frames == 1 and "frame" not in image.label


def test_a_bad_later_page_is_left_out_not_the_file(tmp_path):
    """Page 1 gray, page 2 CIELAB (not read): page 1 still opens, page 2 gets one sentence."""
    path = tmp_path / "lab.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(GRAY, photometric="minisblack")
        tif.write(np.zeros((3, 5, 3), np.uint8), photometric="cielab")
        tif.write(GRAY + 2, photometric="minisblack")
    collection = load(path)
    images = collection.images
    assert [(i.frame, i.frames) for i in images] == [(0, 2), (1, 2)]
    assert np.array_equal(images[1].modality_values(), (GRAY + 2).astype(np.float32))
    (problem,) = collection.problems  # the page left out is said, and the file still opens
    assert problem.skipped and problem.reason.startswith("lab.tif: page 2 was left out")
    from engine.io.raster import raster_images

    shown, dropped = raster_images(Source(path, path))
    assert len(shown) == 2
    assert dropped == ["lab.tif: page 2 was left out, as page 2 stores its pixels as CIELAB, "
                       "which this viewer does not read; save it as grayscale or RGB first."]


def test_a_bad_first_page_still_fails_the_file(tmp_path):
    path = tmp_path / "lab_first.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(np.zeros((3, 5, 3), np.uint8), photometric="cielab")
        tif.write(GRAY, photometric="minisblack")
    assert "lab_first.tif stores its pixels as CIELAB" in _problem(path)


def test_mask_page_is_not_a_page(tmp_path):
    path = tmp_path / "mask.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(GRAY, photometric="minisblack")
        tif.write(np.ones((3, 5), bool), photometric="miniswhite", subfiletype=4)  # a mask
    images = images_from_raster(Source(path, path))
    assert [(i.frame, i.frames) for i in images] == [(0, 1)]


@pytest.mark.parametrize("width", [3, 4])
def test_planar_rgb_narrow_not_transposed(tmp_path, width):
    rgb = np.zeros((5, width, 3), np.uint8)
    rgb[..., 0] = np.arange(5 * width, dtype=np.uint8).reshape(5, width) * 10
    rgb[..., 1] = 40
    path = tmp_path / f"planar{width}.tif"
    tifffile.imwrite(path, np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate")
    image = _image(path)
    values = image.modality_values()
    assert (image.rows, image.columns) == (5, width) and values.shape == (5, width)
    expected = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    assert np.allclose(values, expected, atol=1e-3)


def test_contiguous_rgb_3_wide_unchanged(tmp_path):
    rgb = np.zeros((3, 3, 3), np.uint8)
    rgb[..., 2] = np.arange(9, dtype=np.uint8).reshape(3, 3) * 20
    tifffile.imwrite(tmp_path / "c.tif", rgb, photometric="rgb", planarconfig="contig")
    values = _image(tmp_path / "c.tif").modality_values()
    assert np.allclose(values, 0.114 * rgb[..., 2], atol=1e-3)


def _patch(path: Path, **values: int) -> None:
    """Rewrite first-page tags in place (ImageWidth, BitsPerSample, ...)."""
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        places = [(tags[name].valueoffset, int(tags[name].dtype), value)
                  for name, value in values.items()]
    data = bytearray(path.read_bytes())
    for offset, dtype, value in places:
        struct.pack_into("<H" if dtype == 3 else "<I", data, offset, value)
    path.write_bytes(bytes(data))


def _declare_size(path: Path, columns: int, rows: int) -> None:
    _patch(path, ImageWidth=columns, ImageLength=rows)


def test_huge_declared_tiff_refused_before_decoding(tmp_path):
    path = tmp_path / "huge.tif"
    tifffile.imwrite(path, np.zeros((16, 16), np.uint8), tile=(16, 16), compression="zlib")
    _declare_size(path, 60000, 60000)
    assert _problem(path) == ("huge.tif declares 60000 x 60000 pixels, more than this viewer "
                              "opens (400 megapixels); reduce it first.")


def test_large_but_allowed_size_passes_the_header(tmp_path):
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, np.zeros((16, 16), np.uint8))
    _declare_size(path, 20000, 20000)  # exactly the DICOM limit (MAX_FRAME_PIXELS)
    image = _image(path)
    assert (image.rows, image.columns) == (20000, 20000)


def test_exported_min_is_white_reads_back_as_written(tmp_path):
    from engine.io.export import write_tiff16

    values = np.arange(12, dtype=np.float32).reshape(3, 4) * 1000
    path = write_tiff16(values, tmp_path / "out.tiff", (0.0, 65535.0), inverted=True)
    image = _image(path)
    assert image.photometric == "MONOCHROME1" and image.bits_stored == 16
    assert np.array_equal(image.modality_values(), values)


def test_png_beyond_pillow_limit_gets_the_same_kind_of_sentence(tmp_path):
    import zlib

    path = tmp_path / "bomb.png"
    PILImage.fromarray(np.zeros((4, 4), np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    struct.pack_into(">II", data, 16, 30000, 30000)  # IHDR width, height
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    reason = _problem(path)
    assert reason.startswith("bomb.png declares more pixels than this viewer opens (")
    assert reason.endswith(" megapixels for PNG and JPEG); reduce it first.")
