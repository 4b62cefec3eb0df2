"""Tiles with overlap, and the blending that makes the tiled picture equal the untiled one.

The region to enhance is cut into cores that cover it exactly (as even in size as possible). Each
tile feeds the network its core plus a context margin of `overlap` input pixels on every side,
clipped at the image border. Of the tile's output only the core plus a blend band of `blend` pixels
towards each neighbour is used; across each seam two linear ramps that sum to 1 cross-fade the
neighbours (a 2-D weight is the product of two 1-D ramps, so four tiles meeting at a corner also
sum to 1). The accumulator therefore needs no weight sum and never holds more than the output.

Every output pixel is computed from at least `overlap - blend` input pixels of context on each
side; when that is at least the network's receptive-field radius (`receptive_radius`) the tiled
output equals the untiled one up to float rounding, whatever the tile size. With a deep network
the context is smaller than the receptive field, and the ramps hide the small remaining
difference instead of leaving a seam. This is MONAI's `sliding_window_inference` pattern (output
larger than the input, weighted blending), specialised to super-resolution.

Pure numpy; the Enhancer moves one tile at a time to the device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from torch import nn

Box = tuple[int, int, int, int]  # (y0, x0, y1, x1), end exclusive


@dataclass(frozen=True)
class Tile:
    index: int
    row: int
    col: int
    core: Box  # input pixels this tile is responsible for; cores partition the region
    context: Box  # input pixels fed to the network: core + overlap, clipped at the image
    keep: Box  # input pixels its output is blended into: core + blend band towards neighbours


@dataclass(frozen=True)
class TilePlan:
    image_shape: tuple[int, int]
    region: Box
    tile: int
    overlap: int
    blend: tuple[int, int]  # blend band in input pixels along y and x
    rows: int
    cols: int
    tiles: tuple[Tile, ...]
    multiple: int = 1  # context boxes start and end on multiples of this

    @property
    def exact_context(self) -> int:
        """Input pixels of context every output pixel is guaranteed (see the module docstring)."""
        return self.overlap - max(self.blend)

    def at(self, row: int, col: int) -> Tile:
        return self.tiles[row * self.cols + col]

    def neighbourhood(self, tile: Tile) -> list[Tile]:
        """The tile and the (up to 8) tiles around it: all that can blend into its core."""
        return [
            self.at(r, c)
            for r in range(max(tile.row - 1, 0), min(tile.row + 2, self.rows))
            for c in range(max(tile.col - 1, 0), min(tile.col + 2, self.cols))
        ]


def default_blend(overlap: int) -> int:
    """A quarter of the overlap: a soft cross-fade that still leaves 3/4 of it as context."""
    return (overlap + 3) // 4


def split_even(start: int, stop: int, size: int) -> list[tuple[int, int]]:
    """Cut [start, stop) into the fewest pieces of at most `size`, as equal as possible.

    Equal pieces avoid a sliver of a last tile (slow, and too narrow for the blend band).
    """
    length = stop - start
    count = max(1, math.ceil(length / size))
    base, extra = divmod(length, count)
    bounds, pos = [], start
    for i in range(count):
        step = base + (1 if i < extra else 0)
        bounds.append((pos, pos + step))
        pos += step
    return bounds


def plan_tiles(
    shape: tuple[int, int],
    tile: int,
    overlap: int,
    *,
    region: Box | None = None,
    multiple: int = 1,
    blend: int | None = None,
) -> TilePlan:
    """Plan the tiles for an image of `shape` (or only `region` of it).

    `tile` is the core size (the network sees up to tile + 2 * overlap pixels); `multiple` aligns
    every context box to a multiple of that many pixels, for networks that pixel-unshuffle (the
    image itself must then be a multiple: pad it first).
    """
    h, w = int(shape[0]), int(shape[1])
    y0, x0, y1, x1 = region if region is not None else (0, 0, h, w)
    if tile < 1 or overlap < 0 or multiple < 1:
        raise ValueError("tile must be >= 1, overlap >= 0 and multiple >= 1.")
    if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
        raise ValueError(f"Region {(y0, x0, y1, x1)} is empty or outside the {h}x{w} image.")
    if h % multiple or w % multiple:
        raise ValueError(f"The image size {h}x{w} must be a multiple of {multiple}; pad it first.")
    ys, xs = split_even(y0, y1, tile), split_even(x0, x1, tile)
    want = default_blend(overlap) if blend is None else max(0, min(blend, overlap))
    # A band at most half the narrowest core keeps blending to the 3x3 neighbourhood.
    band = (min(want, min(b - a for a, b in ys) // 2), min(want, min(b - a for a, b in xs) // 2))
    tiles = []
    for r, (cy0, cy1) in enumerate(ys):
        for c, (cx0, cx1) in enumerate(xs):
            core = (cy0, cx0, cy1, cx1)
            context = (
                _round_down(max(cy0 - overlap, 0), multiple),
                _round_down(max(cx0 - overlap, 0), multiple),
                _round_up(min(cy1 + overlap, h), multiple),
                _round_up(min(cx1 + overlap, w), multiple),
            )
            keep = (
                cy0 - (band[0] if r > 0 else 0),
                cx0 - (band[1] if c > 0 else 0),
                cy1 + (band[0] if r < len(ys) - 1 else 0),
                cx1 + (band[1] if c < len(xs) - 1 else 0),
            )
            tiles.append(Tile(len(tiles), r, c, core, context, keep))
    return TilePlan(
        (h, w), (y0, x0, y1, x1), tile, overlap, band, len(ys), len(xs), tuple(tiles), multiple
    )


def _round_down(value: int, multiple: int) -> int:
    return value - value % multiple


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def ramp(keep: tuple[int, int], core: tuple[int, int], band: int, scale: int) -> np.ndarray:
    """1-D blend weights over the output pixels of `keep` along one axis.

    Across a seam at input coordinate S the tile on the low side weighs (S + band - p) / (2 band)
    and the one on the high side (p - S + band) / (2 band), p the output pixel's centre in input
    coordinates: the two sum to 1 and neither is zero inside its keep box.
    """
    k0, k1 = keep
    p = k0 + (np.arange((k1 - k0) * scale, dtype=np.float64) + 0.5) / scale
    weight = np.ones_like(p)
    if band > 0 and k0 < core[0]:
        weight *= np.clip((p - (core[0] - band)) / (2 * band), 0.0, 1.0)
    if band > 0 and k1 > core[1]:
        weight *= np.clip(((core[1] + band) - p) / (2 * band), 0.0, 1.0)
    return weight.astype(np.float32)


class Blender:
    """Accumulates tile outputs into the region's output and says when a core is final.

    A core is final once its tile and all tiles around it are in (they are the only ones whose
    blend band reaches it); `add` returns the tiles whose cores just became final, so a viewer can
    paint them while the rest is still running.
    """

    def __init__(self, plan: TilePlan, scale: int) -> None:
        self.plan = plan
        self.scale = scale
        ry0, rx0, ry1, rx1 = plan.region
        self.output = np.zeros(((ry1 - ry0) * scale, (rx1 - rx0) * scale), dtype=np.float32)
        self._done: set[int] = set()
        self._final: set[int] = set()

    @property
    def complete(self) -> bool:
        return len(self._final) == len(self.plan.tiles)

    def add(self, tile: Tile, tile_output: np.ndarray) -> list[Tile]:
        """Blend one tile's output (its whole context box, upscaled) into the region."""
        s = self.scale
        cy0, cx0, cy1, cx1 = tile.context
        if tile_output.shape != ((cy1 - cy0) * s, (cx1 - cx0) * s):
            raise ValueError(f"Tile output {tile_output.shape} does not match its context box.")
        ky0, kx0, ky1, kx1 = tile.keep
        crop = tile_output[(ky0 - cy0) * s : (ky1 - cy0) * s, (kx0 - cx0) * s : (kx1 - cx0) * s]
        wy = ramp((ky0, ky1), (tile.core[0], tile.core[2]), self.plan.blend[0], s)
        wx = ramp((kx0, kx1), (tile.core[1], tile.core[3]), self.plan.blend[1], s)
        self.output[self._slices(tile.keep)] += crop * wy[:, None] * wx[None, :]
        self._done.add(tile.index)
        return self._newly_final(tile)

    def _newly_final(self, tile: Tile) -> list[Tile]:
        final = []
        for candidate in self.plan.neighbourhood(tile):
            if candidate.index in self._final:
                continue
            if all(n.index in self._done for n in self.plan.neighbourhood(candidate)):
                self._final.add(candidate.index)
                final.append(candidate)
        return final

    def output_box(self, tile: Tile) -> Box:
        """The tile's core in output coordinates of the whole image (input coordinates x scale)."""
        y0, x0, y1, x1 = tile.core
        s = self.scale
        return (y0 * s, x0 * s, y1 * s, x1 * s)

    def core_pixels(self, tile: Tile) -> np.ndarray:
        """A view of the (final, once `add` said so) output of the tile's core."""
        return self.output[self._slices(tile.core)]

    def _slices(self, box: Box) -> tuple[slice, slice]:
        ry0, rx0 = self.plan.region[:2]
        y0, x0, y1, x1 = box
        s = self.scale
        return slice((y0 - ry0) * s, (y1 - ry0) * s), slice((x0 - rx0) * s, (x1 - rx0) * s)


def receptive_radius(model: nn.Module, in_channels: int | None = None, size: int = 32) -> int:
    """How many input pixels, at most, on each side influence an output pixel of `model`.

    Measured, not assumed: the gradient of one central output pixel with respect to a random
    input is non-zero exactly over the receptive field (leaky activations pass gradient
    everywhere). The probe grows until the field fits inside it. Use it to pick an overlap that
    makes tiling exact for small networks.
    """
    import copy

    import torch

    probe = copy.deepcopy(model).to("cpu", torch.float64).eval()
    in_ch = in_channels or int(getattr(model, "num_in_ch", 1))
    scale = int(getattr(model, "scale", 1))
    block = 4  # a 4x4 block of input pixels covers every pixel-unshuffle phase
    while True:
        size = _round_up(size, block)
        x = torch.rand(1, in_ch, size, size, dtype=torch.float64, requires_grad=True)
        c0, c1 = _round_down(size // 2, block), _round_down(size // 2, block) + block
        probe(x)[..., c0 * scale : c1 * scale, c0 * scale : c1 * scale].sum().backward()
        assert x.grad is not None
        hits = torch.nonzero(x.grad.abs().sum((0, 1))).to(torch.int64)
        if len(hits) == 0:
            return 0
        radius = int(torch.maximum(c0 - hits, hits - (c1 - 1)).max())
        if radius < c0 - 1 and radius < size - c1 - 1:
            return radius
        size *= 2
