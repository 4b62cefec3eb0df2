"""The `realistic` degradation chain: what a real low-resolution radiograph went through.

Real-ESRGAN's first-order model (Wang et al. 2021), applied per HR patch on the fly: blur with a
random isotropic or anisotropic Gaussian kernel, downsample with a random kernel, add Gaussian or
Poisson (quantum) noise, quantise to 8 bits and JPEG-compress at a random quality. Every random
choice comes from the generator passed in, so a patch sampler's seed fixes the whole chain.

The downsampling kernels here are PIL's, which always antialias. Real-ESRGAN resizes with
`torch.nn.functional.interpolate`, which does not (bilinear and bicubic alias; area does not), and
so does the original project's seed-128to512 protocol. `aliased_prob` makes that share of the
resizes torch bicubic or bilinear without antialiasing (0, the default: none, and no extra random
numbers, so earlier runs sample what they did).

Every field can be set from a training config (`data.realistic`, through `from_settings`).

The x4-native protocol (engine.evaluation.degrade_x4_native) stays the `bicubic` degradation and
is what validation measures in either case.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image as PILImage
from scipy.signal import fftconvolve

RESIZE_KERNELS = {
    "bicubic": PILImage.Resampling.BICUBIC,
    "bilinear": PILImage.Resampling.BILINEAR,
    "area": PILImage.Resampling.BOX,
    "lanczos": PILImage.Resampling.LANCZOS,
}
ALIASED_KERNELS = ("bicubic", "bilinear")  # torch interpolate modes that do not antialias


@dataclass(frozen=True)
class RealisticDegradation:
    """Ranges of the chain (Real-ESRGAN's first-order defaults, noise tuned for radiographs)."""

    blur_prob: float = 0.9
    kernel_sizes: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)
    isotropic_prob: float = 0.5
    sigma_range: tuple[float, float] = (0.2, 3.0)
    resize_kernels: tuple[str, ...] = ("bicubic", "bilinear", "area", "lanczos")
    aliased_prob: float = 0.0  # share of resizes by torch interpolate without antialiasing
    aliased_kernels: tuple[str, ...] = ("bicubic", "bilinear")
    noise_prob: float = 0.8
    gaussian_prob: float = 0.5  # else Poisson
    gaussian_sigma: tuple[float, float] = (1.0 / 255.0, 20.0 / 255.0)
    poisson_peak: tuple[float, float] = (50.0, 5000.0)  # photon counts at white, log-uniform
    jpeg_prob: float = 0.8
    jpeg_quality: tuple[int, int] = (30, 95)

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> RealisticDegradation:
        """The chain with `settings` (field -> value, lists for ranges) over the defaults; ValueError names
        the first bad one."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ValueError(f"unknown setting {unknown[0]!r}; known: {', '.join(sorted(known))}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}
        chain = cls(**values)
        chain.check()
        return chain

    def check(self) -> None:
        for name in ("blur_prob", "isotropic_prob", "noise_prob", "gaussian_prob", "jpeg_prob", "aliased_prob"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} ({value!r}) must be a number between 0 and 1")
        for name, low in (("sigma_range", 1e-3), ("gaussian_sigma", 0.0), ("poisson_peak", 1.0), ("jpeg_quality", 1)):
            pair = getattr(self, name)
            if (not isinstance(pair, tuple) or len(pair) != 2 or not all(isinstance(v, (int, float)) for v in pair)
                    or not low <= pair[0] <= pair[1]):
                raise ValueError(f"{name} ({list(pair) if isinstance(pair, tuple) else pair!r}) must be [low, high] "
                                 f"with {low} <= low <= high")
        if self.jpeg_quality[1] > 100:
            raise ValueError(f"jpeg_quality ({list(self.jpeg_quality)}) must stay within 1-100")
        if not self.kernel_sizes or any(not isinstance(k, int) or k < 3 or k % 2 == 0 for k in self.kernel_sizes):
            raise ValueError(f"kernel_sizes ({list(self.kernel_sizes)}) must be odd integers of at least 3")
        for name, allowed in (("resize_kernels", tuple(RESIZE_KERNELS)), ("aliased_kernels", ALIASED_KERNELS)):
            chosen = getattr(self, name)
            if not chosen or any(k not in allowed for k in chosen):
                raise ValueError(f"{name} ({list(chosen)}) must be chosen from {', '.join(allowed)}")

    def __call__(self, hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
        """HR uint8 (h, w) -> LR uint8 (h // scale, w // scale)."""
        img = hr.astype(np.float32) / 255.0
        if rng.random() < self.blur_prob:
            img = blur(img, self.random_kernel(rng))
        if self.aliased_prob and rng.random() < self.aliased_prob:
            img = downsample_aliased(img, scale, self.aliased_kernels[int(rng.integers(len(self.aliased_kernels)))])
        else:
            img = downsample(img, scale, self.resize_kernels[int(rng.integers(len(self.resize_kernels)))])
        if rng.random() < self.noise_prob:
            img = self.add_noise(img, rng)
        lr = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
        if rng.random() < self.jpeg_prob:
            lr = jpeg(lr, int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1)))
        return lr

    def random_kernel(self, rng: np.random.Generator) -> np.ndarray:
        size = int(self.kernel_sizes[int(rng.integers(len(self.kernel_sizes)))])
        lo, hi = self.sigma_range
        if rng.random() < self.isotropic_prob:
            sigma = float(rng.uniform(lo, hi))
            return gaussian_kernel(size, sigma, sigma, 0.0)
        return gaussian_kernel(size, float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi)),
                               float(rng.uniform(0.0, np.pi)))

    def add_noise(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() < self.gaussian_prob:
            sigma = float(rng.uniform(*self.gaussian_sigma))
            return img + rng.normal(0.0, sigma, img.shape).astype(np.float32)
        peak = float(np.exp(rng.uniform(np.log(self.poisson_peak[0]), np.log(self.poisson_peak[1]))))
        counts = rng.poisson(np.clip(img, 0.0, 1.0) * peak)
        return (counts / peak).astype(np.float32)


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """A normalised 2-D Gaussian, `sigma_x` along the direction `theta` (radians)."""
    half = size // 2
    y, x = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    c, s = np.cos(theta), np.sin(theta)
    u, v = c * x + s * y, -s * x + c * y
    kernel = np.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))
    return (kernel / kernel.sum()).astype(np.float32)


def blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve with reflected borders, so the patch edges are not darkened."""
    pad = kernel.shape[0] // 2
    padded = np.pad(img, pad, mode="reflect")
    return fftconvolve(padded, kernel, mode="valid").astype(np.float32)


def downsample(img: np.ndarray, scale: int, kernel: str) -> np.ndarray:
    """Reduce by `scale` with PIL's (antialiased) `kernel`, in float."""
    h, w = img.shape
    im = PILImage.fromarray(np.ascontiguousarray(img, dtype=np.float32))
    return np.asarray(im.resize((w // scale, h // scale), RESIZE_KERNELS[kernel]), dtype=np.float32)


def downsample_aliased(img: np.ndarray, scale: int, mode: str) -> np.ndarray:
    """Reduce by `scale` with torch's `mode` interpolation (half-pixel centres, no antialiasing)."""
    h, w = img.shape
    tensor = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None]
    out = F.interpolate(tensor, size=(h // scale, w // scale), mode=mode, align_corners=False)
    return out[0, 0].numpy()


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip an 8-bit grayscale image through JPEG at `quality`."""
    buffer = io.BytesIO()
    PILImage.fromarray(img).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with PILImage.open(buffer) as im:
        return np.asarray(im.convert("L"), dtype=np.uint8).copy()
