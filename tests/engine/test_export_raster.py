"""PNG (8-bit as displayed, 16-bit full range) and 16-bit TIFF export."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage

from engine.io.export import ExportError, Provenance, write_png, write_tiff16

VALUES = np.linspace(-1000.0, 3000.0, 48, dtype=np.float32).reshape(6, 8)


def test_png_8_bit_frame_is_written_as_displayed(tmp_path):
    frame = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    out = write_png(frame, tmp_path / "f.png")
    with PILImage.open(out) as img:
        assert img.mode == "L" and np.array_equal(np.asarray(img), frame)


def test_png_16_bit_spans_the_full_range_and_records_it(tmp_path):
    out = write_png(VALUES, tmp_path / "v.png", bits=16)
    with PILImage.open(out) as img:
        pixels = np.asarray(img).astype(np.int64)
        assert (pixels.min(), pixels.max()) == (0, 65535)
        assert img.text["value_range"] == "-1000.0,3000.0"
    back = pixels / 65535 * 4000 - 1000
    assert np.abs(back - VALUES).max() < 0.05


def test_png_8_bit_from_values_with_a_range(tmp_path):
    out = write_png(VALUES, tmp_path / "r.png", bits=8, value_range=(0.0, 2000.0))
    with PILImage.open(out) as img:
        pixels = np.asarray(img)
    assert pixels.dtype == np.uint8 and pixels[0, 0] == 0 and pixels[-1, -1] == 255


def test_tiff16(tmp_path):
    out = write_tiff16(VALUES, tmp_path / "v.tif")
    with tifffile.TiffFile(out) as tif:
        pixels = tif.pages[0].asarray()
        assert "value_range=-1000.0,3000.0" in tif.pages[0].description
    assert pixels.dtype == np.uint16 and (pixels.min(), pixels.max()) == (0, 65535)


def test_refusals_leave_sources_alone(tmp_path):
    source = tmp_path / "source.png"
    source.write_bytes(b"original")
    with pytest.raises(ExportError):
        write_png(VALUES, source, bits=16, protect=[source])
    with pytest.raises(ExportError):
        write_tiff16(VALUES, tmp_path / "." / "source.png", protect=[source])
    assert source.read_bytes() == b"original"
    with pytest.raises(ExportError):
        write_png(VALUES, tmp_path / "x.png", bits=12)
    with pytest.raises(ExportError):
        write_tiff16(np.zeros((2, 2, 2)), tmp_path / "x.tif")
    with pytest.raises(ExportError, match="folder"):
        write_png(VALUES, tmp_path, bits=16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source.png"]


PROVENANCE = Provenance(model_name="cxr-fidelity-x4", model_sha256="ab12" * 16, scale=4, tile=256,
                        overlap=16, precision="bf16", device="cpu")


def test_png_says_it_is_ai_enhanced_and_by_what(tmp_path):
    out = write_png(VALUES, tmp_path / "p.png", bits=16, provenance=PROVENANCE)
    with PILImage.open(out) as img:
        text = img.text
    assert text["Warning"].startswith("AI-ENHANCED x4 - not for diagnosis")
    assert "not an acquisition" in text["Warning"]
    assert "cxr-fidelity-x4" in text["Source"]
    assert "ab12" * 16 in text["Description"] and "Not for diagnosis" in text["Description"]


def test_tiff_says_it_is_ai_enhanced_and_by_what(tmp_path):
    out = write_tiff16(VALUES, tmp_path / "p.tif", provenance=PROVENANCE)
    with tifffile.TiffFile(out) as tif:
        description = tif.pages[0].description
    assert "value_range=-1000.0,3000.0" in description
    assert "AI-ENHANCED x4 - not for diagnosis" in description and "ab12" * 16 in description


def test_inverted_source_keeps_its_polarity(tmp_path):
    # MONOCHROME1: high values display dark. PNG has no polarity flag: the mapping runs the other
    # way and the recorded range says so; TIFF has one (min-is-white) and keeps the values.
    out = write_png(VALUES, tmp_path / "m1.png", bits=16, inverted=True)
    with PILImage.open(out) as img:
        pixels = np.asarray(img).astype(np.int64)
        v0, v1 = (float(v) for v in img.text["value_range"].split(","))
    assert (v0, v1) == (3000.0, -1000.0)
    assert pixels[0, 0] == 65535 and pixels[-1, -1] == 0  # lowest value brightest
    assert np.abs(v0 + pixels / 65535 * (v1 - v0) - VALUES).max() < 0.05  # the recorded formula
    out = write_tiff16(VALUES, tmp_path / "m1.tif", inverted=True)
    with tifffile.TiffFile(out) as tif:
        page = tif.pages[0]
        assert page.photometric == tifffile.PHOTOMETRIC.MINISWHITE
        pixels = page.asarray()
    assert pixels[0, 0] == 0 and pixels[-1, -1] == 65535
