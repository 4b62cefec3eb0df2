"""Super-resolution quality: the two x4 protocols of docs/QUALITY_PROTOCOLS.md and their metrics.

numpy, PIL and scikit-image only. torch appears in two places, both imported lazily: the
seed-128to512 protocol (which is *defined* by `torch.nn.functional.interpolate`) and model
methods, which run through `engine.sr.enhancer.Enhancer`. Training imports the degradations and
metrics from here so that training-time validation and `cxr-enhance eval` cannot drift apart.

Protocols (all images grayscale, float32 in [0, 1]):
- `x4-native`: HR = the 8-bit original / 255; LR = PIL BICUBIC reduction to (w // 4, h // 4) of the
  8-bit HR (antialiased, kept 8-bit). Baselines upsample LR / 255 with PIL BICUBIC / LANCZOS in
  mode F, clipped.
- `seed-128to512`: HR = original resized to 512x512 by torch bicubic (align_corners=False, no
  antialias), clipped; LR = original resized the same way straight to 128x128, plus Gaussian noise
  (std 0.005) from a fixed seed, clipped. The baselines upsample that float LR with the *same* PIL
  float BICUBIC / LANCZOS as x4-native (not torch bicubic), so "bicubic" means one thing in every
  table. Noise is drawn per image from `numpy.random.default_rng([seed, crc32(image name)])`, so an
  image's LR does not depend on which other images (or --limit) were in the run.
"""

from __future__ import annotations

import json
import math
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from engine.fileio import atomic_write, file_sha256

SCALE = 4
PROTOCOLS = ("x4-native", "seed-128to512")
SEED_HR_SIZE = 512
SEED_LR_SIZE = 128
SEED_NOISE_STD = 0.005
DEFAULT_SEED = 0
# The interior metrics leave out this many HR pixels on every side. Whole-image numbers (the
# protocols' own) are dominated on many NIH images by the outermost rows and columns: thin bright
# or dark frame lines that bicubic smears and a network learns to put back. The interior numbers
# say what a reader gains where the anatomy is.
INTERIOR_MARGIN = 16
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

Upsampler = Callable[[np.ndarray], np.ndarray]
PROTOCOL_DEFINITIONS = {
    "x4-native": "HR = 8-bit original / 255; LR = PIL BICUBIC (antialiased) to (w//4, h//4), "
                 "kept 8-bit, / 255; baselines PIL BICUBIC/LANCZOS mode F, clipped; SSIM/PSNR "
                 "skimage defaults, data_range 1.0, whole image.",
    "seed-128to512": "HR = original -> 512x512, LR = original -> 128x128, both torch bicubic "
                     "(align_corners=False, no antialias), clipped; LR + N(0, 0.005) noise from "
                     "default_rng([seed, crc32(name)]), clipped; baselines PIL BICUBIC/LANCZOS "
                     "mode F on the float LR, clipped.",
}
INTERIOR_DEFINITION = (f"psnr_interior / ssim_interior: the same metrics with {INTERIOR_MARGIN} HR pixels "
                       "left out on every side (the protocols themselves use the whole image).")
# The lung fields of a PA chest film: two squares, each a quarter of the image's shorter side,
# centred 42 % down and 28 % / 72 % across. Even the interior holds burned-in text labels
# ("PORTABLE", "L"), wires and device edges, where bicubic's error is ten times its median and a
# network that learned to redraw lettering gains most; these squares are mostly lung and ribs.
LUNG_FIELDS = ((0.42, 0.28), (0.42, 0.72))
LUNG_FIELD_SIDE = 0.25
LUNGS_DEFINITION = ("psnr_lungs / ssim_lungs: the same metrics over two squares, each a quarter of "
                    "the image's shorter side, centred 42 % down and 28 % / 72 % across (the lung "
                    "fields of a PA film): PSNR of their pooled squared error, SSIM the mean of "
                    "the whole image's SSIM map inside them.")


# --- loading -----------------------------------------------------------------------------------

def to_gray_uint8(image: Image.Image) -> np.ndarray:
    """A PIL image as 2-D uint8 (mode L). RGBA/RGB/P/LA are converted to L; 16-bit is scaled."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        return np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        return np.clip(np.rint(values), 0, 255).astype(np.uint8)
    if image.mode != "L":
        image = image.convert("L")
    return np.asarray(image, dtype=np.uint8).copy()


def load_gray_uint8(path: str | Path) -> np.ndarray:
    with Image.open(path) as image:
        image.load()
        return to_gray_uint8(image)


def find_images(inputs: Iterable[str | Path]) -> list[Path]:
    """Image files named directly or found (recursively) in folders, folders sorted by path."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                            and p.is_file())
        else:
            found.append(path)
    return found


# --- degradations and baselines ----------------------------------------------------------------

def degrade_x4_native(hr_uint8: np.ndarray) -> np.ndarray:
    """x4-native LR: PIL BICUBIC (antialiased) reduction to (w // 4, h // 4), kept 8-bit."""
    if hr_uint8.dtype != np.uint8 or hr_uint8.ndim != 2:
        raise ValueError("degrade_x4_native takes a 2-D uint8 image.")
    h, w = hr_uint8.shape
    small = Image.fromarray(hr_uint8).resize((w // SCALE, h // SCALE), Image.Resampling.BICUBIC)
    return np.asarray(small, dtype=np.uint8).copy()


def _upsample_pil(lr: np.ndarray, scale: int, method: Image.Resampling, clip: bool) -> np.ndarray:
    if lr.ndim != 2:
        raise ValueError("Upsampling takes a 2-D image.")
    h, w = lr.shape
    big = Image.fromarray(np.ascontiguousarray(lr, dtype=np.float32)).resize(
        (w * scale, h * scale), method)
    out = np.asarray(big, dtype=np.float32)
    return np.clip(out, 0.0, 1.0) if clip else out.copy()


def upsample_bicubic(lr_float: np.ndarray, scale: int = SCALE, *, clip: bool = True) -> np.ndarray:
    """PIL BICUBIC in mode F (float32), clipped to [0, 1] unless clip=False."""
    return _upsample_pil(lr_float, scale, Image.Resampling.BICUBIC, clip)


def upsample_lanczos(lr_float: np.ndarray, scale: int = SCALE, *, clip: bool = True) -> np.ndarray:
    """PIL LANCZOS in mode F (float32), clipped to [0, 1] unless clip=False."""
    return _upsample_pil(lr_float, scale, Image.Resampling.LANCZOS, clip)


def difference_from_bicubic(original: np.ndarray, enhanced: np.ndarray, scale: int = SCALE) -> np.ndarray:
    """`enhanced` minus the bicubic enlargement of `original`, in the input's own units (float32).

    "What the model added": the bicubic is `upsample_bicubic` (PIL float bicubic, unclipped), the
    baseline every quality table here compares against. `original` is the input (or the region of
    it) that was enhanced; where the shapes disagree by a few pixels the common top-left part is
    returned. Heavy for large images: call it off a UI thread.
    """
    base = upsample_bicubic(np.ascontiguousarray(original, np.float32), scale, clip=False)
    h, w = min(base.shape[0], enhanced.shape[0]), min(base.shape[1], enhanced.shape[1])
    return np.subtract(enhanced[:h, :w], base[:h, :w], dtype=np.float32)


def x4_native_pair(hr_uint8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(LR, HR) as float32 in [0, 1] under x4-native. HR is cropped to a multiple of 4.

    PIL maps the whole image onto (w // 4, h // 4), so for sizes that are not multiples of 4 the
    x4 upsample is smaller than the original; the HR is cropped to match (no-op for 1024x1024).
    """
    lr = degrade_x4_native(hr_uint8)
    h, w = lr.shape[0] * SCALE, lr.shape[1] * SCALE
    hr = hr_uint8[:h, :w].astype(np.float32) / 255.0
    return lr.astype(np.float32) / 255.0, hr


def torch_bicubic(image: np.ndarray, size: int) -> np.ndarray:
    """`image` (float in [0, 1]) resized to size x size as seed-128to512 resizes: torch bicubic,
    half-pixel centres, no antialiasing, clipped."""
    import torch  # the protocol is defined by torch's bicubic kernel
    from torch.nn import functional as F

    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    out = F.interpolate(tensor, size=(size, size), mode="bicubic", align_corners=False,
                        antialias=False)
    return out[0, 0].clamp_(0.0, 1.0).numpy()


def seed_128to512_pair(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(LR 128x128, HR 512x512) as float32 in [0, 1] under seed-128to512.

    `image` is the original (uint8, or float in [0, 1]); both sizes come straight from it.
    """
    original = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image
    return seed_protocol_pair(original, SEED_HR_SIZE, SEED_LR_SIZE, rng)


def seed_protocol_pair(original: np.ndarray, hr_size: int, lr_size: int,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """seed-128to512's recipe at any size: HR and LR both straight from `original` (float in
    [0, 1]) by `torch_bicubic`, N(0, SEED_NOISE_STD) from `rng` added to the LR, clipped. The
    protocol is it at 512 / 128 on whole images; training's seed-protocol patches at patch size."""
    hr = torch_bicubic(original, hr_size)
    lr = torch_bicubic(original, lr_size)
    noise = rng.normal(0.0, SEED_NOISE_STD, size=lr.shape)
    lr = np.clip(lr + noise, 0.0, 1.0).astype(np.float32)
    return lr, hr


def image_rng(seed: int, name: str) -> np.random.Generator:
    """The noise generator for one image: depends on the seed and the image's name only."""
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


def make_pair(protocol: str, hr_uint8: np.ndarray, name: str,
              seed: int = DEFAULT_SEED) -> tuple[np.ndarray, np.ndarray]:
    if protocol == "x4-native":
        return x4_native_pair(hr_uint8)
    if protocol == "seed-128to512":
        return seed_128to512_pair(hr_uint8, image_rng(seed, name))
    raise ValueError(f"Unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}.")


# --- metrics -----------------------------------------------------------------------------------

# skimage's SSIM window is 7 pixels wide (its default, kept); the mean leaves out half a window
# on every side, so the interior SSIM is the mean of the full map without margin + this.
_SSIM_HALF_WINDOW = 3


def metrics(sr: np.ndarray, hr: np.ndarray, *, margin: int | None = None,
            lungs: bool = False) -> dict[str, float]:
    """PSNR (dB), SSIM and MSE of `sr` against `hr`, both in [0, 1], whole image, no crop.

    With `margin` (see INTERIOR_MARGIN) also psnr_interior / ssim_interior: the same metrics
    without `margin` pixels on each side, NaN for an image too small to have an interior. Both
    come from the whole image's squared-error and SSIM maps, so SSIM is computed once; the values
    equal those of the cropped image (the SSIM map there is the same away from the crop's edge).
    With `lungs`, psnr_lungs / ssim_lungs over the LUNG_FIELDS squares, from the same maps.
    """
    if sr.shape != hr.shape:
        raise ValueError(f"Output shape {sr.shape} differs from reference shape {hr.shape}.")
    sr64 = sr.astype(np.float64)
    hr64 = hr.astype(np.float64)
    mse = float(np.mean((sr64 - hr64) ** 2))
    psnr = math.inf if mse == 0 else float(peak_signal_noise_ratio(hr64, sr64, data_range=1.0))
    ssim, ssim_map = structural_similarity(hr64, sr64, data_range=1.0, full=True)
    found = {"psnr": psnr, "ssim": float(ssim), "mse": mse}
    if margin is not None:
        found.update(_interior(sr64, hr64, ssim_map, margin))
    if lungs:
        found.update(_lungs(sr64, hr64, ssim_map))
    return found


def lung_fields(shape: tuple[int, ...]) -> list[tuple[slice, slice]]:
    """The LUNG_FIELDS squares of an image of `shape`, as (rows, columns) slices."""
    h, w = shape[:2]
    side = max(1, round(LUNG_FIELD_SIDE * min(h, w)))
    squares = []
    for fy, fx in LUNG_FIELDS:
        y0 = int(np.clip(round(fy * h - side / 2), 0, h - side))
        x0 = int(np.clip(round(fx * w - side / 2), 0, w - side))
        squares.append((slice(y0, y0 + side), slice(x0, x0 + side)))
    return squares


def _lungs(sr64: np.ndarray, hr64: np.ndarray, ssim_map: np.ndarray) -> dict[str, float]:
    squares = lung_fields(hr64.shape)
    if squares[0][0].stop - squares[0][0].start < 2 * _SSIM_HALF_WINDOW + 1:
        return {"psnr_lungs": math.nan, "ssim_lungs": math.nan}
    mse = float(np.mean([np.mean((sr64[sq] - hr64[sq]) ** 2) for sq in squares]))
    return {"psnr_lungs": math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse),
            "ssim_lungs": float(np.mean([np.mean(ssim_map[sq], dtype=np.float64) for sq in squares]))}


def _interior(sr64: np.ndarray, hr64: np.ndarray, ssim_map: np.ndarray, margin: int) -> dict[str, float]:
    if min(hr64.shape[:2]) < 2 * margin + 2 * _SSIM_HALF_WINDOW + 1:
        return {"psnr_interior": math.nan, "ssim_interior": math.nan}
    inner = (slice(margin, -margin or None), slice(margin, -margin or None))
    mse = float(np.mean((sr64[inner] - hr64[inner]) ** 2))
    edge = margin + _SSIM_HALF_WINDOW
    return {"psnr_interior": math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse),
            "ssim_interior": float(np.mean(ssim_map[edge:-edge, edge:-edge], dtype=np.float64))}


def interior_metrics(sr: np.ndarray, hr: np.ndarray, margin: int = INTERIOR_MARGIN) -> dict[str, float]:
    """psnr_interior / ssim_interior alone (see `metrics`)."""
    found = metrics(sr, hr, margin=margin)
    return {"psnr_interior": found["psnr_interior"], "ssim_interior": found["ssim_interior"]}


# --- crops for figures -----------------------------------------------------------------------

# A lung field of a PA chest film: about 42 % down, 28 % across (the patient's right lung).
LUNG_CENTRE = (0.42, 0.28)


def lung_box(shape: tuple[int, ...], size: int, scale: int = SCALE) -> tuple[int, int, int]:
    """(y0, x0, side) of an HR crop of about `size` pixels around LUNG_CENTRE, on the LR grid
    (y0, x0 and side are multiples of `scale`, so the LR crop is y0 // scale ...)."""
    h, w = shape[:2]
    side = min(size, h, w) // scale * scale
    y0 = int(np.clip(LUNG_CENTRE[0] * h - side / 2, 0, h - side)) // scale * scale
    x0 = int(np.clip(LUNG_CENTRE[1] * w - side / 2, 0, w - side)) // scale * scale
    return y0, x0, side


def crop_figure(rows: Sequence[tuple[str, Sequence[tuple[str, np.ndarray]]]], *, title: str = "",
                tile: int = 192) -> Image.Image:
    """A grid: one row per image, one column per (label, picture in [0, 1]); each picture is
    enlarged to `tile` pixels with nearest neighbour (LR pixels stay visible as pixels)."""
    from PIL import ImageDraw

    gap, header, label_h = 4, 16 if title else 0, 12
    columns = max((len(cells) for _, cells in rows), default=0)
    width = columns * tile + (columns - 1) * gap
    height = header + len(rows) * (label_h + tile + gap)
    grid = Image.new("L", (max(width, 1), max(height, 1)), 0)
    draw = ImageDraw.Draw(grid)
    if title:
        draw.text((2, 2), title, fill=255)
    for r, (_name, cells) in enumerate(rows):
        y = header + r * (label_h + tile + gap)
        for c, (label, picture) in enumerate(cells):
            x = c * (tile + gap)
            pixels = np.clip(np.rint(np.asarray(picture, np.float64) * 255.0), 0, 255).astype(np.uint8)
            cell = Image.fromarray(pixels).resize((tile, tile), Image.Resampling.NEAREST)
            grid.paste(cell, (x, y + label_h))
            draw.text((x + 2, y), label, fill=255)
    return grid


# --- methods -----------------------------------------------------------------------------------

@dataclass
class Method:
    """Something that turns an LR float image into an x4 float image."""

    name: str
    kind: str  # "baseline" | "model"
    run: Upsampler
    model_file: str | None = None
    sha256: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    card_path: Path | None = None  # the model's card, when it came from the registry


def baseline_methods() -> list[Method]:
    return [Method("bicubic", "baseline", upsample_bicubic,
                   info={"how": "PIL BICUBIC, mode F, clipped to [0, 1]"}),
            Method("lanczos", "baseline", upsample_lanczos,
                   info={"how": "PIL LANCZOS, mode F, clipped to [0, 1]"})]


def find_models(names: Sequence[str]) -> list[Any]:
    """The registry entries of `names` (model names or weights files), looked up before any image
    is read; no names: every installed model, or none. An unknown name raises LookupError or
    ValueError with the sentence to show."""
    from engine.sr import registry

    # a name with nothing installed raises NoModelInstalled (a ModelNotFound): not a baselines-only run
    return [registry.find_model(name) for name in names] if names else registry.list_models()


def model_method(model: Any, *, device: str = "auto", precision: str = "auto",
                 tile: int = 256, overlap: int = 16) -> Method:
    """A model (registry ModelInfo, name or path) run through the Enhancer: LR in, clipped out.

    `value_range=(0, 1)` makes the Enhancer hand the network the LR itself (the protocol's
    LR / 255), not the image stretched to its own min..max.
    """
    from engine.sr.enhancer import Enhancer  # torch stays out until a model is evaluated

    settings = {"device": device, "precision": precision, "tile": tile, "overlap": overlap}
    name, path, sha = _model_identity(model)
    enhancer = Enhancer(model, **settings)
    settings["resolved_precision"] = enhancer.precision
    settings["resolved_device"] = str(enhancer.device)  # "auto" alone does not say where it ran

    def run(lr: np.ndarray) -> np.ndarray:
        out = enhancer.enhance(np.ascontiguousarray(lr, dtype=np.float32),
                               value_range=(0.0, 1.0)).image
        return np.clip(out, 0.0, 1.0).astype(np.float32)

    return Method(name, "model", run, model_file=path, sha256=sha, info=settings,
                  card_path=getattr(model, "card_path", None))


def _model_identity(model: Any) -> tuple[str, str | None, str | None]:
    card = getattr(model, "card", model if hasattr(model, "architecture") else None)
    if card is not None:
        weights = getattr(card, "weights_path", None) or getattr(model, "weights_path", None)
        return card.name, str(weights) if weights else None, getattr(card, "sha256", None) or None
    path = Path(str(model))
    if path.is_file():
        return path.stem, str(path), file_sha256(path)
    return str(model), None, None


# --- running a protocol ------------------------------------------------------------------------

@dataclass
class ImageScore:
    image: str
    psnr: float
    ssim: float
    mse: float
    seconds: float
    psnr_interior: float = math.nan
    ssim_interior: float = math.nan
    psnr_lungs: float = math.nan
    ssim_lungs: float = math.nan


@dataclass
class MethodResult:
    method: str
    kind: str
    model_file: str | None
    sha256: str | None
    settings: dict[str, Any] = field(default_factory=dict)
    scores: list[ImageScore] = field(default_factory=list)

    def mean(self, key: str) -> float:
        values = [getattr(s, key) for s in self.scores]
        return float(np.mean(values)) if values else math.nan


@dataclass
class ProtocolResult:
    protocol: str
    seed: int
    images: list[str]
    methods: list[MethodResult]
    definition: str | None = None  # for a pair maker of the caller's (evaluate's `make`)

    def by_name(self, name: str) -> MethodResult | None:
        return next((m for m in self.methods if m.method == name), None)


def evaluate(images: Sequence[Path], protocol: str, methods: Sequence[Method], *,
             seed: int = DEFAULT_SEED, root: Path | None = None,
             on_image: Callable[[int, int, str], None] | None = None,
             on_problem: Callable[[str, str], None] | None = None,
             on_output: Callable[[str, str, np.ndarray, np.ndarray, np.ndarray], None] | None = None,
             make: Callable[[np.ndarray, str], tuple[np.ndarray, np.ndarray]] | None = None,
             definition: str | None = None,
             ) -> ProtocolResult:
    """Score every method on every image under one protocol; images are loaded once each.

    An image that cannot be read is left out of every method (so all methods are compared on
    the same images) and reported to `on_problem(name, sentence)`. `on_output(image, method, lr,
    sr, hr)` sees every output (for figures). `make(original, name) -> (LR, HR)` replaces the
    protocol's own pairs for a degradation defined elsewhere (training's realistic chain), named
    `protocol` and described by `definition` in the report.
    """
    if make is None and protocol not in PROTOCOL_DEFINITIONS:
        raise ValueError(f"Unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}.")
    names: list[str] = []
    results = [MethodResult(m.name, m.kind, m.model_file, m.sha256, dict(m.info))
               for m in methods]
    for index, path in enumerate(images):
        name = display_name(path, root)
        if on_image is not None:
            on_image(index, len(images), name)
        try:
            original = load_gray_uint8(path)
        except (OSError, ValueError) as exc:  # PIL's UnidentifiedImageError is an OSError
            if on_problem is None:
                raise
            on_problem(name, f"cannot be read as an image ({exc}).")
            continue
        names.append(name)
        lr, hr = make(original, name) if make is not None else make_pair(protocol, original, name, seed)
        for method, result in zip(methods, results, strict=True):
            start = time.perf_counter()
            sr = method.run(lr)
            seconds = time.perf_counter() - start
            result.scores.append(ImageScore(name, seconds=seconds,
                                            **metrics(sr, hr, margin=INTERIOR_MARGIN, lungs=True)))
            if on_output is not None:
                on_output(name, method.name, lr, sr, hr)
    return ProtocolResult(protocol, seed, names, results, definition)


def inputs_root(inputs: Sequence[str | Path]) -> Path | None:
    """The folder results name images relative to: the input when it is one folder, else None
    (images are then named by their file names)."""
    return Path(inputs[0]) if len(inputs) == 1 and Path(inputs[0]).is_dir() else None


def display_name(path: Path, root: Path | None) -> str:
    """How results name an image: its path below `root` (the folder evaluated), else its file name."""
    if root is not None:
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    return path.name


# --- reporting ---------------------------------------------------------------------------------

# The regions every image is scored on, as the suffix of their metric names: the whole image
# (the protocols' own numbers), the interior (INTERIOR_MARGIN) and the lung fields (LUNG_FIELDS).
REGIONS = ("", "_interior", "_lungs")


def region_keys(suffix: str) -> tuple[str, str, str, str]:
    """A region's summary keys: mean PSNR, mean SSIM, PSNR gain and SSIM win rate over bicubic."""
    return (f"psnr{suffix}", f"ssim{suffix}", f"delta_psnr{suffix}_vs_bicubic",
            f"ssim{suffix}_wins_vs_bicubic_pct")


def summary_rows(result: ProtocolResult, reference: str = "bicubic") -> list[dict[str, Any]]:
    """One row per method: means, and against the reference the PSNR gain and SSIM win rate,
    for each of the REGIONS."""
    ref = result.by_name(reference)
    rows = []
    for m in result.methods:
        row: dict[str, Any] = {"method": m.method, "kind": m.kind, "mse": m.mean("mse"),
                               "seconds_per_image": m.mean("seconds")}
        compared = ref is not None and m is not ref and m.scores
        pairs = list(zip(m.scores, ref.scores, strict=True)) if compared else []
        for suffix in REGIONS:
            psnr, ssim, delta, wins = region_keys(suffix)
            row.update({psnr: m.mean(psnr), ssim: m.mean(ssim), delta: None, wins: None})
            if compared:
                row[delta] = row[psnr] - ref.mean(psnr)
                row[wins] = 100.0 * sum(getattr(a, ssim) > getattr(b, ssim) for a, b in pairs) / len(pairs)
        rows.append(row)
    return rows


def format_table(result: ProtocolResult) -> str:
    header = (f"{'method':<24} {'PSNR dB':>8} {'SSIM':>7} {'MSE':>9} {'s/image':>8} "
              f"{'dPSNR':>7} {'SSIM>bic':>8} | {'interior':>8} {'SSIM':>7} {'dPSNR':>7} {'SSIM>bic':>8} "
              f"| {'lungs':>8} {'SSIM':>7} {'dPSNR':>7}")
    lines = [f"protocol {result.protocol} ({len(result.images)} images, seed {result.seed}); "
             f"interior = without {INTERIOR_MARGIN} px on each side; lungs = the two lung-field "
             f"squares ({LUNG_FIELD_SIDE:g} of the shorter side)",
             header, "-" * len(header)]

    def signed(value: float | None) -> str:
        return "" if value is None else f"{value:+7.3f}"

    def percent(value: float | None) -> str:
        return "" if value is None else f"{value:7.1f}%"

    for row in summary_rows(result):
        lines.append(
            f"{row['method']:<24} {row['psnr']:8.3f} {row['ssim']:7.4f} {row['mse']:9.6f} "
            f"{row['seconds_per_image']:8.3f} "
            f"{signed(row['delta_psnr_vs_bicubic']):>7} {percent(row['ssim_wins_vs_bicubic_pct']):>8} | "
            f"{row['psnr_interior']:8.3f} {row['ssim_interior']:7.4f} "
            f"{signed(row['delta_psnr_interior_vs_bicubic']):>7} "
            f"{percent(row['ssim_interior_wins_vs_bicubic_pct']):>8} | "
            f"{row['psnr_lungs']:8.3f} {row['ssim_lungs']:7.4f} {signed(row['delta_psnr_lungs_vs_bicubic']):>7}")
    return "\n".join(lines)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def result_to_json(result: ProtocolResult) -> dict[str, Any]:
    """Everything needed to compare two runs image by image."""
    methods = []
    for m, row in zip(result.methods, summary_rows(result), strict=True):
        methods.append({
            "method": m.method, "kind": m.kind, "model_file": m.model_file, "sha256": m.sha256,
            "settings": m.settings,
            "mean": {k: _finite(v) if isinstance(v, float) else v for k, v in row.items()
                     if k not in ("method", "kind")},
            "per_image": [{k: _finite(v) if isinstance(v, float) else v
                           for k, v in asdict(s).items()} for s in m.scores],
        })
    return {"protocol": result.protocol,
            "definition": result.definition or PROTOCOL_DEFINITIONS[result.protocol],
            "interior": INTERIOR_DEFINITION, "lungs": LUNGS_DEFINITION,
            "scale": SCALE, "seed": result.seed,
            "images": result.images, "methods": methods}


def new_report(software: str, inputs: Sequence[str], results: Sequence[ProtocolResult] = (),
               skipped: dict[str, str] | None = None,
               provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON report `cxr-enhance eval` and `cxr-train eval-chain` write: who made it, from what,
    one entry per protocol (`result_to_json`), and the images skipped with their sentences; with
    `provenance` (`engine.provenance.provenance`), also the versions, machine and git commit."""
    report = {"software": software, "inputs": list(inputs),
              "protocols": [result_to_json(result) for result in results], "skipped": dict(skipped or {})}
    if provenance is not None:
        report["provenance"] = dict(provenance)
    return report


def training_folder(card: Any, *, cwd: Path | None = None, root: Path | None = None) -> Path | None:
    """The folder a model was trained on, from its card's `training.data.train`, if it is here.

    A relative path is tried against the current folder, then the source checkout's root (where
    `cxr-train` runs); None when the card names none or no such folder exists on this machine.
    """
    training = getattr(card, "training", None) or {}
    data = training.get("data") if isinstance(training, dict) else None
    train = data.get("train") if isinstance(data, dict) else None
    if not isinstance(train, str) or not train.strip():
        return None
    path = Path(train).expanduser()
    if path.is_absolute():
        candidates = [path]
    else:
        from engine.provenance import ROOT

        candidates = [(cwd or Path.cwd()) / path, (root or ROOT) / path]
    found = next((c for c in candidates if c.is_dir()), None)
    return found.resolve() if found is not None else None


def image_stems(folder: Path) -> set[str]:
    """The names without suffix of the image files below `folder` (as cxr-train lists them: PNG,
    JPEG, TIFF, DICOM). Training images are matched by name: the evaluated copy may be another
    format or sit in another folder."""
    import os

    suffixes = {*IMAGE_SUFFIXES, ".dcm"}
    stems: set[str] = set()
    for _dirpath, _dirs, files in os.walk(folder):
        stems.update(Path(name).stem for name in files if Path(name).suffix.lower() in suffixes)
    return stems


def training_images(images: Sequence[Path], folder: Path) -> list[Path]:
    """The images among `images` whose name (stem) is that of a file in the training folder."""
    stems = image_stems(folder)
    return [image for image in images if Path(image).stem in stems]


def write_report(path: str | Path, report: dict[str, Any]) -> Path:
    """Write a report as JSON (`cxr-enhance eval` / `compare --json-out`, `cxr-train eval-chain
    --json-out`) atomically: a reader never sees, and an interrupted run never leaves, half a file."""
    return atomic_write(path, (json.dumps(report, indent=2) + "\n").encode("utf-8"))


# --- comparing two evaluations image by image ------------------------------------------------

COMPARED_METRICS = tuple(f"psnr{r}" for r in REGIONS) + tuple(f"ssim{r}" for r in REGIONS)


def _per_image(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    """{(protocol, method): {image: scores}} of an `eval --json-out` report."""
    try:
        return {(p["protocol"], m["method"]): {s["image"]: s for s in m["per_image"]}
                for p in report["protocols"] for m in p["methods"]}
    except (KeyError, TypeError):
        raise ValueError("this is not a report written by `cxr-enhance eval --json-out`") from None


def same_weights(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Models evaluated in both reports from the same weights file (equal sha256)."""
    def hashes(report: dict[str, Any]) -> dict[str, str]:
        return {m["method"]: m["sha256"] for p in report.get("protocols", []) for m in p.get("methods", [])
                if m.get("kind") == "model" and m.get("sha256")}
    old, new = hashes(before), hashes(after)
    return sorted(name for name in new if old.get(name) == new[name])


def compare_reports(before: dict[str, Any], after: dict[str, Any],
                    pairs: Sequence[tuple[str, str]] | None = None, *, skip: int = 0) -> list[dict[str, Any]]:
    """Image-by-image differences (after - before) between two eval reports, or two methods.

    `pairs` names (method in `before`, method in `after`); without it every model evaluated in both
    reports from different weights is compared with itself (the weights that replace shipped
    ones, say; `same_weights` lists those left out). Only images
    scored in both count; SSIM differences are reported as they are, PSNR in dB. One row per
    protocol, pair and metric: mean and median difference, images better / worse / equal, and
    the worst and best image. `skip` leaves out the first images by name: a training run's
    validation images (the first `data.val_crops` of the val folder), when a step or a model was
    chosen on them, so what is left was not seen by the choice.
    """
    if skip < 0:
        raise ValueError(f"skip must be 0 or more images, not {skip}")
    old, new = _per_image(before), _per_image(after)
    if pairs is None:
        models = sorted({m["method"] for p in after["protocols"] for m in p["methods"]
                         if m.get("kind") == "model" and (p["protocol"], m["method"]) in old}
                        - set(same_weights(before, after)))
        if not models:
            raise ValueError("the two reports share no model with different weights; "
                             "compare two methods with --methods")
        pairs = [(name, name) for name in models]
    rows = []
    protocols = [p["protocol"] for p in after["protocols"]]
    for a, b in pairs:
        if not any((protocol, a) in old and (protocol, b) in new for protocol in protocols):
            raise ValueError(f"no protocol has both {a!r} (before) and {b!r} (after); "
                             "name methods as the report lists them (e.g. cxr-fast-x4, bicubic)")
        for protocol in protocols:
            if (protocol, a) not in old or (protocol, b) not in new:
                continue
            first, second = old[protocol, a], new[protocol, b]
            images = sorted(set(first) & set(second))[skip:]
            if not images:
                raise ValueError(f"{protocol}: skipping {skip} images leaves none of the "
                                 f"{len(set(first) & set(second))} both reports scored")
            for metric in COMPARED_METRICS:
                diffs = [(second[i][metric] - first[i][metric], i) for i in images
                         if first[i].get(metric) is not None and second[i].get(metric) is not None]
                if not diffs:
                    continue
                values = np.array([d for d, _ in diffs])
                rows.append({
                    "protocol": protocol, "before": a, "after": b, "metric": metric, "images": len(values),
                    "mean": float(values.mean()), "median": float(np.median(values)),
                    "better": int((values > 0).sum()), "worse": int((values < 0).sum()),
                    "equal": int((values == 0).sum()),
                    "worst": {"image": min(diffs)[1], "diff": float(values.min())},
                    "best": {"image": max(diffs)[1], "diff": float(values.max())},
                })
    return rows


def format_comparison(rows: Sequence[dict[str, Any]]) -> str:
    """The rows of `compare_reports` as a table (dB for PSNR, SSIM x 1e4)."""
    width = max([14, *(len(r["protocol"]) for r in rows)])
    lines = [f"{'protocol':<{width}} {'before -> after':<36} {'metric':<18} {'mean':>8} {'median':>8} "
             f"{'better':>8} {'worst':>8} {'best':>8}"]
    for r in rows:
        unit = 1.0 if r["metric"].startswith("psnr") else 1e4
        label = r["metric"] + (" dB" if unit == 1.0 else " e-4")
        pair = r["after"] if r["before"] == r["after"] else f"{r['before']} -> {r['after']}"
        lines.append(f"{r['protocol']:<{width}} {pair:<36} {label:<18} {r['mean'] * unit:>+8.3f} "
                     f"{r['median'] * unit:>+8.3f} {r['better']:>4}/{r['images']:<3} "
                     f"{r['worst']['diff'] * unit:>+8.3f} {r['best']['diff'] * unit:>+8.3f}")
    return "\n".join(lines)
