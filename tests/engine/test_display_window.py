"""VOI functions against the formulas of DICOM PS3.3 C.11.2.1.2 / C.11.2.1.3, and the modality
LUT (C.11.1), checked at their break points and against literal transcriptions of the standard."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset

from engine.display import (
    Lut,
    Window,
    apply_voi_lut,
    apply_window,
    auto_window,
    drag_sensitivity,
    full_range_window,
    lut_from_item,
    modality_values,
    voi_lut_window,
    window_from_drag,
)


def linear_reference(x: float, c: float, w: float) -> float:
    """PS3.3 C.11.2.1.2.1 written out literally (ymin 0, ymax 1)."""
    if x <= c - 0.5 - (w - 1) / 2:
        return 0.0
    if x > c - 0.5 + (w - 1) / 2:
        return 1.0
    return (x - (c - 0.5)) / (w - 1) + 0.5


def linear_exact_reference(x: float, c: float, w: float) -> float:
    """PS3.3 C.11.2.1.3.2 written out literally."""
    if x <= c - w / 2:
        return 0.0
    if x > c + w / 2:
        return 1.0
    return (x - c) / w + 0.5


def sigmoid_reference(x: float, c: float, w: float) -> float:
    """PS3.3 C.11.2.1.3.1 written out literally."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-4.0 * (x - c) / w))


def _apply(x: float, window: Window) -> float:
    return float(apply_window(np.array([x], dtype=np.float32), window)[0])


class TestLinear:
    window = Window(100.0, 51.0)  # break points 74.5 and 124.5

    def test_break_points(self):
        assert self.window.lower == pytest.approx(74.5)
        assert self.window.upper == pytest.approx(124.5)
        assert _apply(74.5, self.window) == 0.0
        assert _apply(74.0, self.window) == 0.0
        assert _apply(124.5, self.window) == pytest.approx(1.0, abs=1e-6)
        assert _apply(125.0, self.window) == 1.0
        assert _apply(99.5, self.window) == pytest.approx(0.5, abs=1e-6)  # c - 0.5 is mid-grey
        assert 0.0 < _apply(75.0, self.window) < 0.02

    def test_width_one_is_a_step_at_center_minus_half(self):
        window = Window(10.0, 1.0)
        assert _apply(9.5, window) == 0.0
        assert _apply(9.51, window) == 1.0

    @settings(max_examples=60, deadline=None)
    @given(c=st.floats(-4000, 4000), w=st.floats(1.5, 8000), x=st.floats(-9000, 9000))
    def test_matches_the_standard(self, c, w, x):
        got = _apply(x, Window(c, w))
        tolerance = 1e-6 * (abs(x) + abs(c) + 1.0) / (w - 1.0) + 1e-6
        assert got == pytest.approx(linear_reference(np.float32(x), c, w), abs=tolerance)


class TestLinearExact:
    window = Window(100.0, 50.0, function="LINEAR_EXACT")

    def test_break_points(self):
        assert _apply(75.0, self.window) == 0.0
        assert _apply(125.0, self.window) == pytest.approx(1.0, abs=1e-6)
        assert _apply(125.5, self.window) == 1.0
        assert _apply(100.0, self.window) == pytest.approx(0.5, abs=1e-6)

    @settings(max_examples=60, deadline=None)
    @given(c=st.floats(-4000, 4000), w=st.floats(0.5, 8000), x=st.floats(-9000, 9000))
    def test_matches_the_standard(self, c, w, x):
        got = _apply(x, Window(c, w, function="LINEAR_EXACT"))
        tolerance = 1e-6 * (abs(x) + abs(c) + 1.0) / w + 1e-6
        assert got == pytest.approx(linear_exact_reference(np.float32(x), c, w), abs=tolerance)


class TestSigmoid:
    def test_center_is_half_and_edges_follow_the_formula(self):
        window = Window(100.0, 40.0, function="SIGMOID")
        assert _apply(100.0, window) == pytest.approx(0.5, abs=1e-6)
        assert _apply(120.0, window) == pytest.approx(1 / (1 + np.exp(-2.0)), abs=1e-6)
        assert _apply(80.0, window) == pytest.approx(1 / (1 + np.exp(2.0)), abs=1e-6)

    def test_extremes_do_not_overflow(self):
        window = Window(0.0, 1.0, function="SIGMOID")
        with np.errstate(all="raise"):
            out = apply_window(np.array([-1e6, 1e6], dtype=np.float32), window)
        assert out.tolist() == [0.0, 1.0]

    @settings(max_examples=40, deadline=None)
    @given(c=st.floats(-4000, 4000), w=st.floats(1, 8000), x=st.floats(-9000, 9000))
    @example(c=2048.7332639247406, w=1.0, x=2048.75)  # float32 cancellation, found by hypothesis
    def test_matches_the_standard(self, c, w, x):
        got = _apply(x, Window(c, w, function="SIGMOID"))
        assert got == pytest.approx(sigmoid_reference(float(np.float32(x)), c, w), abs=1e-4)


def test_output_is_float32_in_unit_range():
    values = np.linspace(-5000, 5000, 1001, dtype=np.float32)
    for function in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        out = apply_window(values, Window(0.0, 2000.0, function=function))
        assert out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert np.all(np.diff(out) >= 0)  # monotonic


def _lut_item(descriptor, data, explanation="") -> Dataset:
    item = Dataset()
    item.LUTDescriptor = descriptor
    item.LUTData = data
    if explanation:
        item.LUTExplanation = explanation
    return item


class TestVoiLut:
    def test_lookup_clamps_below_and_above_the_table(self):
        lut = lut_from_item(_lut_item([4, 10, 8], [0, 85, 170, 255], "SOFT"))
        out = apply_voi_lut(np.array([5, 10, 11, 12, 13, 100], dtype=np.float32), lut)
        assert out.tolist() == pytest.approx([0, 0, 1 / 3, 2 / 3, 1, 1])
        assert lut.explanation == "SOFT"

    def test_ow_bytes_and_raw_item(self):
        data = np.array([0, 1000, 4095], dtype="<u2").tobytes()
        item = _lut_item([3, 0, 12], data)
        out = apply_voi_lut(np.array([0, 1, 2], dtype=np.float32), item)  # raw item accepted
        assert out.tolist() == pytest.approx([0, 1000 / 4095, 1])

    def test_signed_first_mapped_value(self):
        lut = lut_from_item(_lut_item([2, 65535, 16], [0, 65535]), signed=True)
        assert lut.first_mapped == -1

    def test_descriptor_understating_depth_is_widened(self):
        lut = lut_from_item(_lut_item([2, 0, 8], [0, 4095]))
        assert lut.output_max == 4095

    def test_window_standing_for_a_lut(self):
        lut = Lut(100, np.arange(200, dtype=np.float32), 8, "LUT A")
        window = voi_lut_window(lut)
        assert (window.center, window.width, window.function) == (200.0, 200.0, "LUT")
        values = np.array([100, 299], dtype=np.float32)
        assert np.array_equal(apply_window(values, window), apply_voi_lut(values, lut))


class TestModalityLut:
    def test_rescale(self):
        out = modality_values(np.array([0, 10], dtype=np.uint16), slope=2.0, intercept=-1024.0)
        assert out.dtype == np.float32 and out.tolist() == [-1024.0, -1004.0]

    def test_lut_sequence_wins_and_clamps(self):
        lut = Lut(2, np.array([7, 8, 9], dtype=np.float32), 8)
        out = modality_values(np.array([0, 2, 3, 4, 9]), lut=lut, slope=5.0)
        assert out.tolist() == [7, 7, 8, 9, 9]


class TestComputedWindows:
    def test_full_range(self):
        values = np.array([[10, 20], [30, np.nan]], dtype=np.float32)
        window = full_range_window(values)
        assert (window.lower, window.upper) == (10.0, 30.0)
        assert window.explanation == "Full range"

    def test_auto_ignores_collimation_border_and_labels(self):
        rng = np.random.default_rng(0)
        image = np.full((400, 400), 4095.0, dtype=np.float32)  # collimator: saturated
        image[40:360, 40:360] = rng.uniform(1000, 2000, (320, 320))  # body
        image[180:200, 180:260] = 0.0  # a burned-in label (minimum value)
        window = auto_window(image)
        assert 900 < window.lower < 1050 and 1950 < window.upper < 2100
        assert window.explanation == "Auto"

    def test_constant_image_gets_a_usable_window(self):
        window = auto_window(np.full((50, 50), 7.0, dtype=np.float32))
        assert window.width > 0


class TestDrag:
    def test_horizontal_is_width_vertical_is_level(self):
        start = Window(1000.0, 500.0, "File", "LINEAR")
        moved = window_from_drag(start, 10, -20, sensitivity=2.0)
        assert (moved.center, moved.width) == (960.0, 520.0)
        assert moved.function == "LINEAR" and moved.explanation == "Manual"

    def test_width_never_below_what_the_function_allows(self):
        moved = window_from_drag(Window(0.0, 5.0), -1000, 0, sensitivity=1.0)
        assert moved.width == 1.0
        exact = window_from_drag(Window(0.0, 5.0, function="SIGMOID"), -1000, 0, sensitivity=1.0)
        assert 0 < exact.width < 1.0

    def test_lut_window_becomes_linear(self):
        lut_window = voi_lut_window(Lut(0, np.arange(10, dtype=np.float32), 8))
        moved = window_from_drag(lut_window, 1, 1, sensitivity=1.0)
        assert moved.function == "LINEAR" and moved.lut is None

    def test_sensitivity_scales_with_value_range(self):
        assert drag_sensitivity((0.0, 4096.0)) == 4.0
        assert drag_sensitivity(np.array([0.0, 1024.0])) == 1.0
