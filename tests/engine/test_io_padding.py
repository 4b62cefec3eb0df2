"""Pixel Padding Value (PS3.3 C.7.5.1.1.2): padding pixels are not part of the image, so the Auto
and Full range windows and the range Enhance maps to the network leave them out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset

from engine import display
from engine.io import load
from engine.io.dicom import pixel_padding
from engine.sr.enhancer import Enhancer
from engine.sr.ranges import network_range
from tests.engine.conftest import tiny_compact
from tests.engine.test_export_dicom import make_source

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def padded_image(tmp_path: Path, **extra):
    body = (1000 + np.arange(24 * 24).reshape(24, 24) * 3).astype(np.uint16)  # 1000..2725
    pixels = np.zeros((32, 32), np.uint16)  # a padded frame of 0 around the body
    pixels[4:28, 4:28] = body
    path = make_source(tmp_path / "pad.dcm", pixels=pixels, photometric="MONOCHROME2",
                       PixelPaddingValue=0, RescaleIntercept=-1024, **extra)
    return load(path).images[0]


def test_padding_is_read_as_modality_values(tmp_path: Path) -> None:
    image = padded_image(tmp_path)
    assert image.padding == (-1024.0, -1024.0)  # stored 0, rescaled
    ranged = padded_image(tmp_path, PixelPaddingRangeLimit=10)
    assert ranged.padding == (-1024.0, -1014.0)
    assert load(make_source(tmp_path / "none.dcm")).images[0].padding is None


def test_windows_leave_padding_out(tmp_path: Path) -> None:
    image = padded_image(tmp_path)
    values = image.modality_values()
    assert float(values.min()) == -1024.0  # the padding is there ...
    full = display.full_range_window(values, image.padding)
    assert (full.center - full.width / 2, full.center + full.width / 2) == (-24.0, 1701.0)
    windows = {w.explanation: w for w in display.image_windows(image, values)}
    assert windows["Full range"] == full  # ... but no window spans it
    auto = windows["Auto"]
    assert auto.center - auto.width / 2 > -200  # the body's percentiles, not -1024
    assert display.full_range_window(values).center - display.full_range_window(values).width / 2 \
        == -1024.0  # without the padding range the frame stretches the window


def test_enhance_maps_the_body_not_the_padding_to_the_network(tmp_path: Path) -> None:
    image = padded_image(tmp_path)
    values = image.modality_values()
    assert network_range(image, values) == (-24.0, 1701.0)
    assert network_range(load(make_source(tmp_path / "none.dcm")).images[0]) is None
    seen: list[tuple[float, float]] = []
    model = tiny_compact()
    model.register_forward_pre_hook(lambda _m, args: seen.append(
        (float(args[0].min()), float(args[0].max()))))
    result = Enhancer(model, device="cpu", precision="fp32", tile=32, overlap=8).enhance(
        values, value_range=network_range(image, values))
    assert min(lo for lo, _ in seen) >= 0.0 and max(hi for _, hi in seen) <= 1.0  # padding clipped
    assert result.value_range == (-24.0, 1701.0)
    assert -24.0 <= float(result.image.min()) and float(result.image.max()) <= 1701.0


def test_padding_value_with_an_ambiguous_vr_is_read_from_its_bytes() -> None:
    ds = Dataset()
    ds.add_new(0x00280120, "OB", b"\x00\x80")  # US or SS left undecided: raw little-endian bytes
    assert pixel_padding(ds, signed=True) == (-32768.0, -32768.0)
    assert pixel_padding(ds, signed=False) == (32768.0, 32768.0)
    ds = Dataset()
    ds.PixelPaddingValue = [1, 2]  # multi-valued: not a padding value this viewer can use
    assert pixel_padding(ds, signed=False) is None


def test_cli_png_and_tiff_map_the_range_enhance_mapped(tmp_path: Path) -> None:
    # The CLI's PNG/TIFF of a padded DICOM spans the body (Enhance's range), as the viewer's does
    from types import SimpleNamespace

    from engine.cli import value_range_for

    image = padded_image(tmp_path)
    values = image.modality_values()
    result = SimpleNamespace(value_range=network_range(image, values))
    assert value_range_for(image, values, result) == (-24.0, 1701.0)
    assert value_range_for(image, values) == (-1024.0, 1701.0)  # no result: the values' own
