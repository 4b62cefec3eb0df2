"""Tiling: plans cover the image, ramps sum to 1, and tiled output equals untiled output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.sr.enhancer import Enhancer
from engine.sr.tiling import Blender, plan_tiles, receptive_radius, split_even
from tests.engine.conftest import run, tiny_compact, tiny_rrdb

# One tiny network per module: its receptive field is measured once.
COMPACT = tiny_compact(convs=1, feat=4)
COMPACT_RADIUS = receptive_radius(COMPACT)
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def reference(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """The untiled output in the Enhancer's convention (normalise, run, clamp, map back)."""
    lo, hi = float(image.min()), float(image.max())
    span = hi - lo or 1.0
    out = run(model, (image - lo) / span).clamp(0, 1)[0, 0].numpy()
    return out * (hi - lo) + lo


def test_receptive_radius_of_known_networks():
    # 3 convs of 3x3 at input resolution: 3 pixels; the nearest residual adds none.
    assert COMPACT_RADIUS == 3
    assert receptive_radius(tiny_compact(convs=3)) == 5
    # RRDB x4, 1 block: conv_first + 15 dense convs + conv_body at input resolution (17), then
    # two convs at 2x and 4x and two more at 4x: 0.5 + 3 * 0.25, rounded up: 19.
    assert receptive_radius(tiny_rrdb(4)) == 19


@given(
    length=st.integers(1, 300), start=st.integers(0, 50), size=st.integers(1, 80)
)
@settings(max_examples=200, deadline=None)
def test_split_even_covers_without_slivers(length, start, size):
    parts = split_even(start, start + length, size)
    assert parts[0][0] == start and parts[-1][1] == start + length
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:], strict=False))
    widths = [b - a for a, b in parts]
    assert max(widths) <= size and max(widths) - min(widths) <= 1
    assert len(parts) == -(-length // size)


@st.composite
def plans(draw):
    h, w = draw(st.integers(1, 70)), draw(st.integers(1, 70))
    multiple = draw(st.sampled_from([1, 1, 2, 4]))
    h, w = -(-h // multiple) * multiple, -(-w // multiple) * multiple
    y0, x0 = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
    y1, x1 = draw(st.integers(y0 + 1, h)), draw(st.integers(x0 + 1, w))
    tile, overlap = draw(st.integers(1, 40)), draw(st.integers(0, 12))
    blend = draw(st.one_of(st.none(), st.integers(0, 12)))
    return plan_tiles((h, w), tile, overlap, region=(y0, x0, y1, x1), multiple=multiple,
                      blend=blend)


@given(plan=plans(), scale=st.sampled_from([1, 2, 3, 4]))
@settings(max_examples=150, deadline=None)
def test_plan_geometry_and_blend_weights_sum_to_one(plan, scale):
    h, w = plan.image_shape
    ry0, rx0, ry1, rx1 = plan.region
    cover = np.zeros((h, w), int)
    for t in plan.tiles:
        cover[t.core[0]:t.core[2], t.core[1]:t.core[3]] += 1
        cy0, cx0, cy1, cx1 = t.context
        ky0, kx0, ky1, kx1 = t.keep
        assert 0 <= cy0 <= ky0 <= t.core[0] and t.core[2] <= ky1 <= cy1 <= h
        assert 0 <= cx0 <= kx0 <= t.core[1] and t.core[3] <= kx1 <= cx1 <= w
        assert ry0 <= ky0 and ky1 <= ry1 and rx0 <= kx0 and kx1 <= rx1
        assert all(v % plan.multiple == 0 for v in t.context)
        assert t.core[2] - t.core[0] <= plan.tile and t.core[3] - t.core[1] <= plan.tile
        # context reaches `overlap` beyond the core unless the image ends first
        assert cy0 <= max(t.core[0] - plan.overlap, 0) and cy1 >= min(t.core[2] + plan.overlap, h)
    inside = cover[ry0:ry1, rx0:rx1]
    assert (inside == 1).all() and cover.sum() == inside.sum()

    # Feeding ones through the blender must give ones everywhere: the ramps sum to 1.
    blender = Blender(plan, scale)
    finals = []
    for t in plan.tiles:
        cy0, cx0, cy1, cx1 = t.context
        finals += blender.add(t, np.ones(((cy1 - cy0) * scale, (cx1 - cx0) * scale), np.float32))
    np.testing.assert_allclose(blender.output, 1.0, atol=1e-6)
    assert sorted(t.index for t in finals) == list(range(len(plan.tiles))) and blender.complete


def test_plan_aligns_context_to_the_multiple():
    plan = plan_tiles((40, 36), 7, 5, multiple=4)
    for t in plan.tiles:
        assert all(v % 4 == 0 for v in t.context)
    with pytest.raises(ValueError, match="multiple of 4"):
        plan_tiles((41, 36), 7, 5, multiple=4)


def test_bad_plans():
    with pytest.raises(ValueError):
        plan_tiles((10, 10), 0, 2)
    with pytest.raises(ValueError, match="outside"):
        plan_tiles((10, 10), 4, 2, region=(0, 0, 11, 5))


@given(
    h=st.integers(1, 64), w=st.integers(1, 64), tile=st.integers(1, 40),
    extra=st.integers(0, 6), seed=st.integers(0, 2**16),
)
@FAST
def test_tiled_equals_untiled_for_any_tile_size(h, w, tile, extra, seed):
    # Exact when every output pixel sees the whole receptive field: overlap - blend >= radius,
    # and the default blend is a quarter of the overlap, so twice the radius is always enough.
    overlap = 2 * COMPACT_RADIUS + extra
    image = np.random.default_rng(seed).random((h, w), dtype=np.float32) * 3000 - 1000
    result = Enhancer(COMPACT, device="cpu", precision="fp32", tile=tile,
                      overlap=overlap).enhance(image)
    span = float(image.max() - image.min())
    assert result.image.shape == (4 * h, 4 * w) and result.image.dtype == np.float32
    np.testing.assert_allclose(result.image, reference(COMPACT, image), atol=1e-4 * span, rtol=0)


@pytest.mark.parametrize("scale, shape, tile", [(4, (30, 23), 9), (2, (26, 34), 10),
                                                (1, (24, 28), 11)])
def test_tiled_equals_untiled_for_rrdb(scale, shape, tile):
    model = tiny_rrdb(scale, residual="bicubic" if scale == 4 else None)
    radius = receptive_radius(model)
    overlap = radius + (radius + 2) // 3 + 1  # overlap - ceil(overlap / 4) >= radius
    assert plan_tiles(shape, tile, overlap).exact_context >= radius
    image = np.random.default_rng(scale).random(shape, dtype=np.float32)
    if scale != 4:  # pixel-unshuffling networks need a multiple of 2 / 4 untiled as well
        image = image[: shape[0] // 4 * 4, : shape[1] // 4 * 4]
    result = Enhancer(model, device="cpu", precision="fp32", tile=tile, overlap=overlap)
    out = result.enhance(image)
    assert out.tiles > 1
    np.testing.assert_allclose(out.image, reference(model, image), atol=1e-4, rtol=0)


def test_pixel_unshuffle_network_on_odd_image_is_padded_and_cropped():
    model = tiny_rrdb(2)
    image = np.random.default_rng(0).random((13, 9), dtype=np.float32)
    out = Enhancer(model, device="cpu", precision="fp32", tile=8, overlap=4).enhance(image)
    assert out.image.shape == (26, 18) and np.isfinite(out.image).all()


def test_small_overlap_still_blends_without_seams():
    """With less context than the receptive field the result is close, and smooth at seams."""
    model = tiny_compact(convs=6, feat=8)
    image = np.random.default_rng(1).random((48, 48), dtype=np.float32)
    ref = reference(model, image)
    out = Enhancer(model, device="cpu", precision="fp32", tile=16, overlap=4).enhance(image)
    assert np.abs(out.image - ref).max() < 0.05
