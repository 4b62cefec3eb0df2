"""The Enhancer: value ranges, callbacks, cancel, regions, recovery from OOM and NaN, threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch import nn

from engine.sr import enhancer as enhancer_module
from engine.sr.card import ModelCard
from engine.sr.enhancer import (
    EnhanceCancelled,
    EnhanceError,
    Enhancer,
    TileProgress,
    TileResult,
    clear_model_cache,
)
from engine.sr.registry import NoModelInstalled, find_model
from engine.sr.weights import save_model
from tests.engine.conftest import run, tiny_compact, tiny_rrdb

RNG = np.random.default_rng(7)
IMAGE = (RNG.random((40, 36), dtype=np.float32) * 4095 - 1024).astype(np.float32)


def fp32(model: nn.Module, **kwargs) -> Enhancer:
    kwargs = {"tile": 16, "overlap": 8, **kwargs}
    return Enhancer(model, device="cpu", precision=kwargs.pop("precision", "fp32"), **kwargs)


def reference(model: nn.Module, image: np.ndarray) -> np.ndarray:
    lo, hi = float(image.min()), float(image.max())
    out = run(model, (image - lo) / (hi - lo)).clamp(0, 1)[0, 0].numpy()
    return out * (hi - lo) + lo


def nearest_upsampler() -> nn.Module:
    """A compact net with zero weights: exactly the nearest-upsampled input."""
    model = tiny_compact(feat=4)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    return model


class Wrapper(nn.Module):
    """A network stand-in that records its inputs and can misbehave on demand."""

    def __init__(self, inner: nn.Module, *, oom_above: int | None = None, oom_kind: str = "cuda",
                 nan_in_reduced: bool = False, always_nan: bool = False) -> None:
        super().__init__()
        self.inner, self.scale = inner, inner.scale
        self.oom_above, self.oom_kind = oom_above, oom_kind
        self.nan_in_reduced, self.always_nan = nan_in_reduced, always_nan
        self.shapes: list[tuple[int, ...]] = []
        self.active = 0
        self.max_active = 0
        self._count = threading.Lock()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self._count:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            self.shapes.append(tuple(x.shape))
            if self.oom_above is not None and max(x.shape[-2:]) > self.oom_above:
                if self.oom_kind == "cuda":
                    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
                if self.oom_kind == "cpu":
                    raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. "
                                       "DefaultCPUAllocator: can't allocate memory: you tried to "
                                       "allocate 8589934592 bytes. Error code 12 (Cannot allocate "
                                       "memory)")
                raise RuntimeError("MPS backend out of memory (MPS allocated: 9 GB)")
            out = self.inner(x)
            reduced = torch.is_autocast_enabled("cpu") or x.dtype != torch.float32
            if self.always_nan or (self.nan_in_reduced and reduced):
                out = out * float("nan")
            return out
        finally:
            with self._count:
                self.active -= 1


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_model_cache()
    yield
    clear_model_cache()


# ------------------------------------------------------------------ values


@pytest.mark.parametrize("dtype", [np.float32, np.uint16, np.int16, np.float64])
def test_value_range_round_trips(dtype):
    image = (RNG.random((9, 11)) * 3000).astype(dtype)
    result = fp32(nearest_upsampler(), tile=4, overlap=2).enhance(image)
    expected = np.repeat(np.repeat(image.astype(np.float32), 4, 0), 4, 1)
    as32 = image.astype(np.float32)
    assert result.image.dtype == np.float32
    assert result.value_range == (float(as32.min()), float(as32.max()))
    np.testing.assert_allclose(result.image, expected, rtol=0, atol=3000 * 1e-6)


def test_given_value_range_is_used_and_clips():
    image = np.array([[0, 100], [200, 300]], np.float32)
    result = fp32(nearest_upsampler()).enhance(image, value_range=(0, 255))
    assert result.value_range == (0.0, 255.0)
    expected = np.repeat(np.repeat(np.minimum(image, 255), 4, 0), 4, 1)
    np.testing.assert_allclose(result.image, expected, atol=1e-3, rtol=0)
    for bad in [(5, 5), (0, np.inf), ("a", 1), (1,)]:
        with pytest.raises(EnhanceError, match="value range"):
            fp32(nearest_upsampler()).enhance(image, value_range=bad)


def test_constant_image_stays_constant():
    image = np.full((10, 7), 1234.5, np.float32)
    result = fp32(tiny_rrdb()).enhance(image)
    assert result.value_range == (1234.5, 1234.5)
    assert (result.image == np.float32(1234.5)).all() and result.image.shape == (40, 28)


def test_inverted_polarity_shows_the_network_the_image_as_displayed():
    # MONOCHROME1: high values display dark. The network must see the same picture as for the
    # MONOCHROME2 version of the image, and the result must come back in MONOCHROME1 values.
    model = tiny_rrdb(residual="bicubic")
    lo, hi = float(IMAGE.min()), float(IMAGE.max())
    mono2 = fp32(model).enhance(IMAGE).image
    mono1 = fp32(model).enhance((lo + hi) - IMAGE, inverted=True)
    np.testing.assert_allclose(mono1.image, (lo + hi) - mono2, atol=1e-3 * (hi - lo))
    np.testing.assert_allclose(mono1.value_range, (lo, hi), rtol=1e-5)
    tiles = []
    fp32(model).enhance((lo + hi) - IMAGE, inverted=True, on_tile=tiles.append)
    for tile in tiles:  # progressive painting gets the same values as the final image
        y0, x0, y1, x1 = tile.box
        np.testing.assert_allclose(tile.pixels, mono1.image[y0:y1, x0:x1], atol=1e-4 * (hi - lo))


def test_output_stays_within_the_input_range():
    result = fp32(tiny_rrdb(residual="bicubic")).enhance(IMAGE)
    assert IMAGE.min() <= result.image.min() and result.image.max() <= IMAGE.max()


@pytest.mark.parametrize("bad, match", [
    (None, "no image"),
    (np.zeros((3, 8, 8), np.float32), "2-D"),
    (np.zeros((0, 5), np.float32), "empty"),
    (np.array([[1.0, np.nan]], np.float32), "NaN"),
    (np.array([["a", "b"]]), "numeric"),
])
def test_bad_images(bad, match):
    with pytest.raises(EnhanceError, match=match) as exc:
        fp32(tiny_compact()).enhance(bad)
    assert "\n" not in str(exc.value) and str(exc.value).endswith(".")


def test_bad_settings():
    with pytest.raises(EnhanceError, match="Tile size"):
        Enhancer(tiny_compact(), device="cpu", tile=0)
    with pytest.raises(EnhanceError, match="Unknown device"):
        Enhancer(tiny_compact(), device="gpu7")
    with pytest.raises(EnhanceError, match="scale"):
        fp32(nn.Conv2d(1, 1, 3, padding=1)).enhance(IMAGE)


def test_network_with_the_wrong_output_is_reported():
    class Liar(nn.Module):
        scale = 4

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # says x4, computes x2
            return nn.functional.interpolate(x, scale_factor=2)

    with pytest.raises(EnhanceError, match="not one x4 gray channel"):
        fp32(Liar()).enhance(IMAGE)


# ------------------------------------------------------------------ tiles and callbacks


def test_tiles_go_to_the_device_one_at_a_time():
    wrapped = Wrapper(tiny_compact())
    result = fp32(wrapped, tile=12, overlap=4).enhance(IMAGE)
    assert result.tiles == len(wrapped.shapes) == 12
    assert all(s[0] == 1 and max(s[-2:]) <= 12 + 2 * 4 for s in wrapped.shapes)


def test_progress_and_on_tile_paint_the_whole_output_once():
    model = tiny_compact()
    events: list[TileProgress] = []
    painted: list[TileResult] = []
    result = fp32(model, tile=10, overlap=8).enhance(IMAGE, progress=events.append,
                                                     on_tile=painted.append)
    total = result.tiles
    assert [e.done for e in events] == list(range(total + 1))
    assert all(e.total == total for e in events) and events[0].eta_s is None
    assert all(e.eta_s is not None and e.eta_s >= 0 for e in events[1:]) and events[-1].eta_s == 0
    assert all(b.elapsed_s >= a.elapsed_s for a, b in zip(events, events[1:], strict=False))
    cover = np.zeros(result.image.shape, int)
    for tile in painted:
        y0, x0, y1, x1 = tile.box
        cover[y0:y1, x0:x1] += 1
        np.testing.assert_array_equal(tile.pixels, result.image[y0:y1, x0:x1])
        assert tile.total == total and 1 <= tile.done <= total
    assert (cover == 1).all()
    np.testing.assert_allclose(result.image, reference(model, IMAGE), atol=1e-4 * 4095, rtol=0)


def test_region_matches_the_same_part_of_the_whole_image():
    model = tiny_compact()
    whole = fp32(model, tile=8, overlap=8).enhance(IMAGE)
    painted: list[TileResult] = []
    region = (5, 9, 27, 30)
    part = fp32(model, tile=8, overlap=8).enhance(IMAGE, region=region, on_tile=painted.append)
    assert part.region == region and part.value_range == whole.value_range
    assert part.image.shape == (22 * 4, 21 * 4)
    np.testing.assert_allclose(part.image, whole.image[20:108, 36:120], atol=1e-3, rtol=0)
    for tile in painted:  # boxes are in whole-image output coordinates
        y0, x0, y1, x1 = tile.box
        assert 20 <= y0 < y1 <= 108 and 36 <= x0 < x1 <= 120
        np.testing.assert_array_equal(tile.pixels, part.image[y0 - 20:y1 - 20, x0 - 36:x1 - 36])
    with pytest.raises(EnhanceError, match="outside"):
        fp32(model).enhance(IMAGE, region=(0, 0, 41, 10))
    with pytest.raises(EnhanceError, match="four integers"):
        fp32(model).enhance(IMAGE, region=(0, 0, 4))


@pytest.mark.parametrize("use_event", [True, False])
def test_cancel_between_tiles(use_event):
    wrapped = Wrapper(tiny_compact())
    stop = threading.Event()

    def progress(p: TileProgress) -> None:
        if p.done == 2:
            stop.set()

    cancel = stop if use_event else stop.is_set
    with pytest.raises(EnhanceCancelled):
        fp32(wrapped, tile=8).enhance(IMAGE, progress=progress, cancel=cancel)
    assert len(wrapped.shapes) == 2  # stopped before the third tile


# ------------------------------------------------------------------ recovery


@pytest.mark.parametrize("kind", ["cuda", "runtime", "cpu"])
def test_out_of_memory_halves_the_tile_and_goes_on(kind):
    model = tiny_compact()
    wrapped = Wrapper(model, oom_above=50, oom_kind=kind)
    image = RNG.random((100, 90), dtype=np.float32)
    result = fp32(wrapped, tile=64, overlap=8).enhance(image)
    assert result.tile == 32 and result.tile_backoffs == 1 and "out of memory" in result.summary
    np.testing.assert_allclose(result.image, reference(model, image), atol=1e-4, rtol=0)


def test_out_of_memory_down_to_the_minimum_gives_advice():
    # The tile is then below Settings' minimum (64): the advice is what the reader can still do
    wrapped = Wrapper(tiny_compact(), oom_above=10, oom_kind="cpu")
    with pytest.raises(EnhanceError, match="CPU ran out of memory even with 32-pixel tiles; "
                       "enhance the visible region only, pick the Fast model") as error:
        fp32(wrapped, tile=64, overlap=4).enhance(RNG.random((70, 70), dtype=np.float32))
    assert "tile size" not in str(error.value)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_non_finite_tiles_are_recomputed_in_fp32(precision):
    model = tiny_rrdb()
    wrapped = Wrapper(model, nan_in_reduced=True)
    result = fp32(wrapped, precision=precision, overlap=24).enhance(IMAGE)
    assert result.precision == precision and result.fp32_fallback_tiles == result.tiles
    assert "recomputed in fp32" in result.summary
    np.testing.assert_allclose(result.image, reference(model, IMAGE), atol=1e-4 * 4095, rtol=0)


def test_non_finite_in_fp32_is_an_error():
    with pytest.raises(EnhanceError, match="NaN or infinite.*reinstall"):
        fp32(Wrapper(tiny_compact(), always_nan=True)).enhance(IMAGE)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_on_cpu_is_finite_and_close(precision):
    model = tiny_rrdb(blocks=2, residual="bicubic")
    result = fp32(model, precision=precision, overlap=26).enhance(IMAGE)
    assert result.precision == precision and result.fp32_fallback_tiles == 0
    assert np.isfinite(result.image).all()
    np.testing.assert_allclose(result.image, reference(model, IMAGE), atol=0.02 * 4095, rtol=0)


# ------------------------------------------------------------------ threads, models, cache


def test_concurrent_calls_are_serialised_and_correct():
    model = tiny_compact()
    wrapped = Wrapper(model)
    shared = fp32(wrapped, tile=8)
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(shared.enhance(IMAGE).image)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 3 and wrapped.max_active == 1
    for out in results:
        np.testing.assert_array_equal(out, results[0])


def test_registry_models_load_once_per_device(models_dir, monkeypatch):
    model = tiny_compact(feat=4)
    card = save_model(model, models_dir / "fast.safetensors",
                      ModelCard(name="fast", title="Fast", architecture="?"), dtype="fp32")
    loads = []
    real = enhancer_module.load_model

    def counting(*args, **kwargs):
        loads.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(enhancer_module, "load_model", counting)
    small = IMAGE[:12, :12]
    for source in ("fast", "Fast", find_model("fast"), models_dir / "fast.json", None):
        result = Enhancer(source, device="cpu", precision="fp32", tile=8).enhance(small)
        assert result.model_name == "fast" and result.model_sha256 == card.sha256
    assert len(loads) == 1
    # autocast keeps the weights in fp32, so another precision shares the loaded copy
    out = Enhancer("fast", device="cpu", precision="bf16", tile=8).enhance(small)
    assert len(loads) == 1 and out.precision == "bf16"
    save_model(tiny_compact(feat=4, seed=3), models_dir / "other.safetensors", dtype="fp32")
    Enhancer("other", device="cpu", precision="fp32").enhance(small)
    assert len(loads) == 2
    save_model(tiny_compact(feat=4, seed=4), models_dir / "third.safetensors", dtype="fp32")
    Enhancer("third", device="cpu", precision="fp32").enhance(small)
    Enhancer("fast", device="cpu", precision="fp32").enhance(small)  # evicted: least recent
    assert len(loads) == 4
    np.testing.assert_allclose(
        Enhancer(card, device="cpu", precision="fp32").enhance(small).image,
        reference(model, small), atol=1e-4 * 4095, rtol=0)


def test_replaced_model_file_is_read_again(models_dir):
    save_model(tiny_compact(feat=4, seed=1), models_dir / "fast.safetensors", dtype="fp32")
    first = Enhancer("fast", device="cpu", precision="fp32").enhance(IMAGE[:8, :8]).image
    save_model(tiny_compact(feat=4, seed=2), models_dir / "fast.safetensors", dtype="fp32")
    second = Enhancer("fast", device="cpu", precision="fp32").enhance(IMAGE[:8, :8]).image
    assert not np.array_equal(first, second)


def test_no_model_installed(models_dir):
    with pytest.raises(NoModelInstalled, match=str(models_dir)):
        Enhancer()


def test_broken_model_file_becomes_an_enhance_error(models_dir):
    save_model(tiny_compact(feat=4), models_dir / "fast.safetensors")
    data = (models_dir / "fast.safetensors").read_bytes()
    (models_dir / "fast.safetensors").write_bytes(data[:100])
    with pytest.raises(EnhanceError, match="sha256|truncated"):
        Enhancer("fast", device="cpu").enhance(IMAGE[:8, :8])


def test_two_cards_naming_one_weights_file_get_their_own_networks(models_dir):
    # The model cache was keyed by the weights file alone: a second card naming the same file with
    # another network (here: no bicubic/nearest residual) silently got the first card's network.
    import dataclasses

    from engine.sr.registry import ModelInfo

    card = save_model(tiny_compact(feat=4), models_dir / "fast.safetensors",
                      ModelCard(name="fast", title="Fast", architecture="?"), dtype="fp32")
    weights = models_dir / "fast.safetensors"
    other = dataclasses.replace(card, params={**card.params, "upsample_residual": None})
    small = IMAGE[:12, :12]
    first = Enhancer(ModelInfo(card, weights), device="cpu", precision="fp32").enhance(small)
    second = Enhancer(ModelInfo(other, weights), device="cpu", precision="fp32").enhance(small)
    assert np.abs(first.image - second.image).max() > 1.0
