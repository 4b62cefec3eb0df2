"""The Enhancer: a 2-D float32 array in, the super-resolved array out, tile by tile.

It knows nothing of DICOM or Qt. The image is normalised to [0, 1] with its recorded min/max and
mapped back afterwards, so windowing behaves the same on the original and the enhanced image. Only
one tile at a time goes to the device; the output accumulates on the CPU in float32. Progress,
cancellation (between tiles) and finished regions are reported through callbacks, so the viewer's
worker thread can show a progressive picture and stop promptly.
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.sr.archs import RRDBNet
from engine.sr.card import ModelCard
from engine.sr.device import (
    DeviceError,
    autocast,
    is_out_of_memory,
    precision_name,
    release_memory,
    resolve_device,
    resolve_precision,
)
from engine.sr.registry import ModelInfo, default_model, find_model
from engine.sr.tiling import Blender, Box, Tile, TilePlan, plan_tiles
from engine.sr.weights import WeightsError, load_model

# Halving below this after running out of memory helps no more than the CPU would.
MIN_TILE_AFTER_OOM = 32
MODEL_CACHE_SIZE = 2

ModelSource = ModelInfo | ModelCard | str | Path | nn.Module | None
CancelFlag = threading.Event | Callable[[], bool] | None


class EnhanceError(Exception):
    """Enhance could not run; the message is one sentence with the next step."""


class EnhanceCancelled(Exception):
    """The cancel flag was set; raised between tiles."""


@dataclass(frozen=True)
class TileProgress:
    done: int
    total: int
    elapsed_s: float
    eta_s: float | None  # None until the first tile has been timed


@dataclass(frozen=True)
class TileResult:
    box: Box  # (y0, x0, y1, x1) in output coordinates of the whole image (input x scale)
    pixels: np.ndarray  # float32, in the input's value range, final (blending complete)
    done: int
    total: int


@dataclass
class EnhanceResult:
    image: np.ndarray  # float32, region size x scale, in the input's value range
    scale: int
    device: str  # where it actually ran, e.g. "cpu", "cuda:0"
    precision: str  # what the tiles ran in: "fp32", "fp16" or "bf16"
    tile: int  # the tile size actually used (smaller than asked after running out of memory)
    overlap: int
    seconds: float
    model_name: str
    model_sha256: str
    value_range: tuple[float, float]  # (lo, hi) of the input, mapped to [0, 1] for the network
    region: Box | None  # the input region enhanced, None for the whole image
    tiles: int = 0
    fp32_fallback_tiles: int = 0  # tiles recomputed in fp32 because reduced precision gave NaN/inf
    tile_backoffs: int = 0  # times the tile size was halved after running out of memory

    @property
    def summary(self) -> str:
        """One line for a status bar or a log."""
        parts = [f"x{self.scale} with {self.model_name} on {self.device} in {self.precision}, "
                 f"{self.tiles} tiles of {self.tile}, {self.seconds:.1f} s"]
        if self.fp32_fallback_tiles:
            parts.append(f"{self.fp32_fallback_tiles} tiles recomputed in fp32")
        if self.tile_backoffs:
            parts.append(f"tile size halved {self.tile_backoffs}x after running out of memory")
        return "; ".join(parts) + "."


@dataclass
class _Loaded:
    module: nn.Module
    name: str
    sha256: str
    lock: threading.Lock = field(default_factory=threading.Lock)


class _OutOfMemory(Exception):
    pass


_cache: OrderedDict[tuple[object, ...], _Loaded] = OrderedDict()
_cache_lock = threading.Lock()
_module_locks: weakref.WeakKeyDictionary[nn.Module, threading.Lock] = weakref.WeakKeyDictionary()
_module_locks_lock = threading.Lock()


def clear_model_cache() -> None:
    with _cache_lock:
        _cache.clear()


class Enhancer:
    """Runs one model over images. Safe to share between threads (runs are serialised)."""

    def __init__(
        self,
        model: ModelSource = None,
        *,
        device: str | torch.device = "auto",
        precision: str | torch.dtype = "auto",
        tile: int = 256,
        overlap: int = 16,
    ) -> None:
        if tile < 1 or overlap < 0:
            raise EnhanceError(f"Tile size must be at least 1 and overlap at least 0, "
                               f"not {tile} and {overlap}.")
        try:
            self.device = resolve_device(device)
            self.dtype = resolve_precision(precision, self.device)
        except DeviceError as exc:
            raise EnhanceError(str(exc)) from None
        self.tile = int(tile)
        self.overlap = int(overlap)
        self._source = model
        self.info: ModelInfo | None = None if isinstance(model, nn.Module) else _resolve(model)

    @property
    def precision(self) -> str:
        return precision_name(self.dtype)

    @property
    def model_name(self) -> str:
        return self.info.name if self.info else type(self._source).__name__

    def load(self) -> nn.Module:
        """Load the model onto the device now (otherwise the first `enhance` does)."""
        return self._loaded().module

    def enhance(
        self,
        image: np.ndarray,
        *,
        progress: Callable[[TileProgress], None] | None = None,
        cancel: CancelFlag = None,
        on_tile: Callable[[TileResult], None] | None = None,
        region: Box | None = None,
        value_range: tuple[float, float] | None = None,
        inverted: bool = False,
    ) -> EnhanceResult:
        """Super-resolve `image` (2-D, any value range), or only `region` (y0, x0, y1, x1) of it.

        Context around the region is read from the image, so a region comes out the same as the
        matching part of the whole enhanced image. `value_range` (lo, hi) is what maps to [0, 1]
        for the network (default: the image's min and max); e.g. (0, 2**bits - 1) for a PNG, as
        the model saw in training. The output is clipped to it. `inverted`: high values display
        dark (MONOCHROME1 or Presentation LUT INVERSE); the network then sees the image the way it
        is shown, bone bright, as in training: the wrong polarity costs 0.4-0.8 dB.
        """
        started = time.perf_counter()
        values = _check_image(image)
        box = _check_region(region, values.shape)
        lo, hi = _value_range(values, value_range)
        # network value = (value - offset) / span; an inverted image maps hi to 0 and lo to 1.
        offset, span = (hi, lo - hi) if inverted else (lo, hi - lo)
        if span != 0:
            # Values outside the range (Pixel Padding left out of it, say) are clipped to its ends
            normalised = np.clip((values - np.float32(offset)) / np.float32(span), 0.0, 1.0)
        else:  # a constant image: any network output maps back to the constant
            normalised = np.zeros_like(values)
        loaded = self._loaded()
        run = _Run(self, loaded.module, progress, cancel, on_tile, (offset, span), started)
        with loaded.lock:
            blender = run.execute(normalised, box)
        output = blender.output
        output *= np.float32(span)
        output += np.float32(offset)
        return EnhanceResult(
            image=output, scale=run.scale, device=_device_label(self.device),
            precision=self.precision, tile=run.tile, overlap=self.overlap,
            seconds=time.perf_counter() - started, model_name=loaded.name,
            model_sha256=loaded.sha256, value_range=(lo, hi),
            region=box if region is not None else None,
            tiles=len(blender.plan.tiles), fp32_fallback_tiles=run.fallbacks,
            tile_backoffs=run.backoffs,
        )

    def _loaded(self) -> _Loaded:
        if isinstance(self._source, nn.Module):
            with _module_locks_lock:
                lock = _module_locks.setdefault(self._source, threading.Lock())
            with lock:  # another thread may be running this very module
                module = _prepare(self._source, self.device)
            return _Loaded(module, type(module).__name__, "", lock)
        assert self.info is not None
        return _cached_model(self.info, self.device)


def _resolve(model: ModelSource) -> ModelInfo:
    if isinstance(model, ModelInfo):
        return model
    if isinstance(model, ModelCard):
        return ModelInfo.from_card(model)
    return default_model() if model is None else find_model(model)


def _cached_model(info: ModelInfo, device: torch.device) -> _Loaded:
    weights = info.weights_path.resolve()
    try:
        stat = weights.stat()
    except OSError:
        raise EnhanceError(f"The model file {weights} is missing; reinstall the model.") from None
    # The file's time and size are in the key so a replaced model file is read again. The
    # precision is not: autocast leaves the weights in fp32, so fp32 and bf16/fp16 runs share
    # one copy (and its lock).
    # The card is too: two cards may name one weights file with different networks (a bare
    # file's described card and an installed one, say), and each must get its own.
    card = info.card
    network = "" if card is None else json.dumps(
        [card.name, card.architecture, card.params, card.scale], sort_keys=True, default=str)
    key = (str(weights), stat.st_mtime_ns, stat.st_size, str(device), network)
    with _cache_lock:  # held while loading so two threads never load the same model twice
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        try:
            module, card = load_model(weights, card=info.card)
        except WeightsError as exc:
            raise EnhanceError(str(exc)) from exc
        loaded = _Loaded(_prepare(module, device), card.name, card.sha256)
        _cache[key] = loaded
        while len(_cache) > MODEL_CACHE_SIZE:
            _cache.popitem(last=False)
        return loaded


def _prepare(module: nn.Module, device: torch.device) -> nn.Module:
    # channels_last is the fast layout for convolutions on CPUs (oneDNN) and tensor cores.
    return module.eval().to(device=device, memory_format=torch.channels_last)


def _device_label(device: torch.device) -> str:
    if device.type == "cuda" and device.index is None:
        return f"cuda:{torch.cuda.current_device()}"
    return str(device)


def _check_image(image: np.ndarray | None) -> np.ndarray:
    if image is None:
        raise EnhanceError("There is no image to enhance; open an image first.")
    values = np.asarray(image)
    if values.ndim != 2:
        raise EnhanceError(f"Enhance takes one grayscale frame (2-D), not an array of shape "
                           f"{values.shape}; pick a single frame.")
    if values.size == 0:
        raise EnhanceError("The image is empty (no pixels); open another image.")
    if not np.issubdtype(values.dtype, np.number) or np.iscomplexobj(values):
        raise EnhanceError(f"Enhance takes numeric pixel values, not {values.dtype}.")
    values = values.astype(np.float32, copy=False)
    if not np.isfinite(values).all():
        raise EnhanceError("The image contains NaN or infinite values; fix the pixel data first.")
    return values


def _value_range(values: np.ndarray, given: tuple[float, float] | None) -> tuple[float, float]:
    if given is None:
        return float(values.min()), float(values.max())
    try:
        lo, hi = (float(v) for v in given)
    except (TypeError, ValueError):
        raise EnhanceError("The value range must be two numbers (low, high).") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise EnhanceError(f"The value range ({lo}, {hi}) must be finite with high > low.")
    return lo, hi


def _check_region(region: Box | None, shape: tuple[int, ...]) -> Box:
    h, w = shape
    if region is None:
        return (0, 0, h, w)
    try:
        y0, x0, y1, x1 = (int(v) for v in region)
    except (TypeError, ValueError):
        raise EnhanceError("The region must be four integers (y0, x0, y1, x1).") from None
    if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
        raise EnhanceError(f"The region {(y0, x0, y1, x1)} is empty or outside the {h}x{w} "
                           "image; choose a part of the image.")
    return (y0, x0, y1, x1)


def input_multiple(module: nn.Module) -> int:
    """Input sizes the network needs (BasicSR's x2/x1 RRDB pixel-unshuffle by 2/4)."""
    if isinstance(module, RRDBNet):
        return {4: 1, 2: 2, 1: 4}[module.scale]
    return int(getattr(module, "input_multiple", 1))


def network_scale(module: nn.Module) -> int:
    scale = getattr(module, "scale", None)
    if scale is None:
        raise EnhanceError(f"The network {type(module).__name__} does not say its scale "
                           "(a `scale` attribute); use a network from engine.sr.archs.")
    return int(scale)


class _Run:
    """One enhance call's loop: tiles in, blended output, out-of-memory and NaN recovery."""

    def __init__(self, owner: Enhancer, module: nn.Module,
                 progress: Callable[[TileProgress], None] | None, cancel: CancelFlag,
                 on_tile: Callable[[TileResult], None] | None,
                 mapping: tuple[float, float], started: float) -> None:
        self.module = module
        self.device, self.dtype, self.overlap = owner.device, owner.dtype, owner.overlap
        self.tile = owner.tile
        self.scale = network_scale(module)
        self.multiple = input_multiple(module)
        self.progress, self.cancel, self.on_tile = progress, cancel, on_tile
        self.lo, self.span = mapping
        self.started = started
        self.fallbacks = 0
        self.backoffs = 0

    def execute(self, normalised: np.ndarray, box: Box) -> Blender:
        padded = _pad_to_multiple(normalised, self.multiple)
        while True:
            plan = plan_tiles(padded.shape, self.tile, self.overlap, region=box,
                              multiple=self.multiple)
            try:
                return self._run_plan(padded, plan)
            except _OutOfMemory:
                # Start the plan again with smaller tiles: usually the first tile runs out, and
                # a fresh plan keeps the blending bookkeeping simple and exact.
                release_memory(self.device)
                if self.tile // 2 < MIN_TILE_AFTER_OOM:
                    # The tile is already below what Settings offers: advise what still helps.
                    advice = ("enhance the visible region only, pick the Fast model, or close "
                              "other programs" if self.device.type == "cpu" else
                              "use the CPU, enhance the visible region only, or pick the Fast "
                              "model")
                    raise EnhanceError(
                        f"The {self.device.type.upper()} ran out of memory even with "
                        f"{self.tile}-pixel tiles; {advice}."
                    ) from None
                self.tile //= 2
                self.backoffs += 1
                self.fallbacks = 0

    def _run_plan(self, padded: np.ndarray, plan: TilePlan) -> Blender:
        blender = Blender(plan, self.scale)
        total = len(plan.tiles)
        first = time.perf_counter()
        self._report(0, total, first)
        for done, tile in enumerate(plan.tiles, start=1):
            if _cancelled(self.cancel):
                raise EnhanceCancelled("Enhance was cancelled.")
            y0, x0, y1, x1 = tile.context
            output = self._infer(padded[y0:y1, x0:x1])
            for final in blender.add(tile, output):
                self._emit(blender, final, done, total)
            self._report(done, total, first)
        return blender

    def _report(self, done: int, total: int, first: float) -> None:
        if self.progress is None:
            return
        now = time.perf_counter()
        eta = (now - first) / done * (total - done) if done else None
        self.progress(TileProgress(done, total, now - self.started, eta))

    def _emit(self, blender: Blender, tile: Tile, done: int, total: int) -> None:
        if self.on_tile is None:
            return
        pixels = blender.core_pixels(tile) * np.float32(self.span) + np.float32(self.lo)
        self.on_tile(TileResult(blender.output_box(tile), pixels, done, total))

    def _infer(self, patch: np.ndarray) -> np.ndarray:
        """One tile through the network; fp32 again if reduced precision gave NaN or inf."""
        x = torch.from_numpy(np.ascontiguousarray(patch))[None, None]
        x = x.to(self.device).contiguous(memory_format=torch.channels_last)
        y = self._forward(x, self.dtype)
        finite = bool(torch.isfinite(y).all())
        if not finite and self.dtype != torch.float32:
            y = self._forward(x, torch.float32)
            self.fallbacks += 1
            finite = bool(torch.isfinite(y).all())
        if not finite:
            raise EnhanceError("The model produced NaN or infinite values even in fp32; its "
                               "weights are damaged: reinstall the model.")
        expected = (1, 1, patch.shape[0] * self.scale, patch.shape[1] * self.scale)
        if tuple(y.shape) != expected:
            raise EnhanceError(f"The network returned {tuple(y.shape)} for a {patch.shape} tile, "
                               f"not one x{self.scale} gray channel; check the model card.")
        # The network works in [0, 1]; clamping keeps the enhanced image in the input's range.
        return y[0, 0].clamp(0.0, 1.0).cpu().numpy()

    def _forward(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        try:
            with torch.inference_mode(), autocast(self.device, dtype):
                y = self.module(x)
            return y.float()
        except Exception as exc:
            if is_out_of_memory(exc):
                raise _OutOfMemory from exc
            raise


def _pad_to_multiple(values: np.ndarray, multiple: int) -> np.ndarray:
    h, w = values.shape
    pad_h, pad_w = -h % multiple, -w % multiple
    if not pad_h and not pad_w:
        return values
    # Edge padding: the network sees a plausible continuation; the padding is cropped away.
    return np.pad(values, ((0, pad_h), (0, pad_w)), mode="edge")


def _cancelled(cancel: CancelFlag) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())
