"""render(): VOI then polarity (MONOCHROME1 / Presentation LUT Shape / user invert), the fast
Renderer that must agree with it, and the re-windowing benchmark."""

from __future__ import annotations

import numpy as np
import pytest

from engine.display import Lut, Renderer, Window, render, shows_inverted, to_uint8
from engine.display.bench import bench_render

RAMP = np.arange(0, 256, dtype=np.float32).reshape(16, 16)
FULL = Window(127.5, 255.0, function="LINEAR_EXACT")  # 0 -> black, 255 -> white


@pytest.mark.parametrize(
    ("photometric", "shape", "inverted"),
    [
        ("MONOCHROME2", None, False),
        ("MONOCHROME2", "IDENTITY", False),
        ("MONOCHROME2", "INVERSE", True),
        ("MONOCHROME1", None, True),
        ("MONOCHROME1", "INVERSE", True),  # the same single inversion, never twice
        ("MONOCHROME1", "IDENTITY", True),  # inconsistent file: the pixels' description wins
    ],
)
def test_polarity_table(photometric, shape, inverted):
    assert shows_inverted(photometric, shape) is inverted
    frame = render(RAMP, window=FULL, photometric=photometric, presentation_lut_shape=shape)
    assert frame.dtype == np.uint8
    low_value_shown = int(frame[0, 0])  # the minimum stored value
    assert low_value_shown == (255 if inverted else 0)
    user = render(RAMP, window=FULL, photometric=photometric, presentation_lut_shape=shape,
                  invert=True)
    assert int(user[0, 0]) == (0 if inverted else 255)  # the user's invert goes on top


def test_monochrome1_minimum_is_white_after_voi():
    # The window is applied to the values first; only then is the result inverted.
    window = Window(100.0, 100.0, function="LINEAR_EXACT")
    values = np.array([[0.0, 50.0, 100.0, 150.0, 200.0]], dtype=np.float32)
    mono2 = render(values, window=window)
    mono1 = render(values, window=window, photometric="MONOCHROME1")
    assert mono2.tolist() == [[0, 0, 128, 255, 255]]
    assert mono1.tolist() == [[255, 255, 128, 0, 0]]


def test_none_window_is_full_range_and_voi_lut_overrides():
    frame = render(RAMP * 4 + 1000, window=None)
    assert (frame.min(), frame.max()) == (0, 255)
    lut = Lut(0, np.full(300, 255, dtype=np.float32), 8)
    assert render(RAMP, window=FULL, voi_lut=lut).min() == 255


def test_to_uint8_rounds_and_handles_nan():
    out = to_uint8(np.array([0.0, 0.5 / 255, 0.499, 1.0, np.nan, 2.0, -1.0], dtype=np.float32))
    assert out.tolist() == [0, 1, 127, 255, 0, 255, 0]


@pytest.fixture(scope="module")
def values():
    rng = np.random.default_rng(3)
    return rng.integers(-1024, 3072, size=(64, 80)).astype(np.float32)


class TestRenderer:
    @pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
    @pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
    def test_equals_render_for_integer_data(self, values, function, photometric):
        window = Window(500.0, 1200.0, function=function)
        expected = render(values, window=window, photometric=photometric)
        got = Renderer(values).render(window, photometric=photometric)
        assert np.array_equal(got, expected)

    def test_equals_render_for_voi_lut_and_full_range(self, values):
        lut = Lut(-1024, np.linspace(0, 4095, 4096, dtype=np.float32), 12)
        renderer = Renderer(values)
        assert np.array_equal(renderer.render(None, voi_lut=lut),
                              render(values, window=None, voi_lut=lut))
        assert np.array_equal(renderer.render(None), render(values, window=None))

    def test_float_data_within_one_grey_level(self, values):
        enhanced = values * np.float32(1.37) + np.float32(0.3)
        window = Window(600.0, 1500.0, function="SIGMOID")
        got = Renderer(enhanced).render(window).astype(int)
        expected = render(enhanced, window=window).astype(int)
        assert np.abs(got - expected).max() <= 1

    def test_out_buffer_and_non_finite_values(self, values):
        broken = values.copy()
        broken[0, 0], broken[0, 1] = np.nan, np.inf
        renderer = Renderer(broken)
        out = np.empty(broken.shape, np.uint8)
        assert renderer.render(Window(0.0, 100.0), out=out) is out

    def test_rejects_non_2d(self):
        with pytest.raises(ValueError):
            Renderer(np.zeros((2, 2, 2), np.float32))


def test_bench_render_reports_each_path():
    result = bench_render(size=128, repeats=2)
    for key in ("renderer_linear_ms", "renderer_sigmoid_mono1_ms", "direct_linear_ms",
                "float_renderer_linear_ms", "renderer_setup_ms", "meets_target"):
        assert key in result
    assert result["size"] == 128


@pytest.mark.slow
def test_rewindowing_2000_squared_is_fast_enough_for_a_live_drag():
    # The budget is 30 ms (bench_render reports it); the bound here is loose because this CPU is
    # shared with other jobs: it catches a regression to a slow path, not noise.
    result = bench_render(size=2000, repeats=5)
    assert result["renderer_linear_ms"] < 90
    assert result["renderer_sigmoid_mono1_ms"] < 90


def test_image_windows_uses_given_values_without_decoding_again():
    from engine.display import auto_window, full_range_window, image_windows

    class FakeImage:
        windows = [Window(40.0, 400.0)]
        voi_luts: list = []
        decoded = 0

        def modality_values(self):
            self.decoded += 1
            return RAMP

    image = FakeImage()
    given = image_windows(image, RAMP * 2)
    assert image.decoded == 0
    assert given[0] == Window(40.0, 400.0)
    assert given[-1] == full_range_window(RAMP * 2) and given[-2] == auto_window(RAMP * 2)
    decoded = image_windows(image)
    assert image.decoded == 1 and decoded[-1] == full_range_window(RAMP)
