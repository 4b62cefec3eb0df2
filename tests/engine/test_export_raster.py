"""PNG (8-bit as displayed, 16-bit full range) and 16-bit TIFF export."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage

from engine.io.export import ExportError, write_png, write_tiff16

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
