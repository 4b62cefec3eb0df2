"""Training data: grayscale HR images, their x4 degradations, and random aligned patch pairs.

The main protocol (x4-native, QUALITY_PROTOCOLS.md) downsizes the whole 8-bit image with PIL's
antialiased bicubic and keeps the LR 8-bit. Training degrades whole images the same way once and
then cuts aligned LR/HR patches, so a training pair is exactly what evaluation will show the model.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}
DICOM_SUFFIXES = {".dcm", ".dicom", ""}
VAL_FRACTION = 0.1  # of patients held out when no validation folder is given
_NIH_NAME = re.compile(r"^(\d{8})_\d{3}\.png$", re.IGNORECASE)


class DataError(ValueError):
    """Training data that cannot be used; one sentence saying what to fix."""


def list_images(folder: str | Path) -> list[Path]:
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"Data folder {root} does not exist; point data.train / data.val at a folder of PNG or DICOM images.")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES | {".dcm"})
    if not files:
        raise DataError(f"No PNG, JPEG, TIFF or DICOM images found in {root}.")
    return files


def patient_of(path: str | Path) -> str:
    """The patient a file belongs to: NIH names start with the 8-digit patient id."""
    name = Path(path).name
    match = _NIH_NAME.match(name)
    return match.group(1) if match else Path(path).stem


def split_by_patient(files: list[Path], val_fraction: float, seed: int = 0) -> tuple[list[Path], list[Path]]:
    """Split files so that no patient has images on both sides."""
    patients = sorted({patient_of(f) for f in files})
    rng = np.random.default_rng(seed)
    rng.shuffle(patients)
    n_val = max(1, round(len(patients) * val_fraction)) if len(patients) > 1 else 0
    val_patients = set(patients[:n_val])
    train = [f for f in files if patient_of(f) not in val_patients]
    val = [f for f in files if patient_of(f) in val_patients]
    return train, val


def train_val_files(train: str, val: str | None, seed: int = 0) -> tuple[list[Path], list[Path]]:
    """The training and validation images; without a val folder, 10 % of patients are held out."""
    files = list_images(train)
    if val:
        return files, list_images(val)
    return split_by_patient(files, VAL_FRACTION, seed)


def read_gray_uint8(path: Path) -> np.ndarray:
    """An image as 8-bit grayscale (RGBA/RGB originals converted to L, as the protocol says)."""
    if path.suffix.lower() == ".dcm":
        return _read_dicom_uint8(path)
    with PILImage.open(path) as im:
        if im.mode in ("I;16", "I;16B", "I"):
            arr = np.asarray(im, dtype=np.float32)
            return _to_uint8(arr)
        return np.asarray(im.convert("L"), dtype=np.uint8).copy()


def _read_dicom_uint8(path: Path) -> np.ndarray:
    from engine.display import render_image

    try:
        from engine.io import ReadError, load
    except ImportError:
        raise DataError(f"{path.name}: reading DICOM needs engine.io.load, which this installation lacks.") from None
    try:
        collection = load(path)
        images = collection.images
        if not images:
            reason = collection.problems[0].reason if collection.problems else "no image in file"
            raise DataError(f"{path.name}: {reason}")
        # Train on what a reader sees: the file's own window (else Auto), polarity applied.
        return render_image(images[0], None)
    except ReadError as exc:
        raise DataError(f"{path.name}: {exc}") from None


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    return np.clip(np.rint((arr - lo) / (hi - lo) * 255.0), 0, 255).astype(np.uint8)


def degrade_bicubic(hr: np.ndarray, scale: int) -> np.ndarray:
    """x4-native: PIL antialiased bicubic reduction of the 8-bit image, kept 8-bit."""
    if scale == 4:  # the evaluation protocol's own function, so training and eval cannot drift
        from engine.evaluation import degrade_x4_native

        return degrade_x4_native(hr)
    h, w = hr.shape
    im = PILImage.fromarray(hr, mode="L")
    return np.asarray(im.resize((w // scale, h // scale), PILImage.Resampling.BICUBIC), dtype=np.uint8)


@dataclass
class Pair:
    """A whole HR image (cropped to a multiple of the scale) and its LR version, both uint8."""

    hr: np.ndarray
    lr: np.ndarray
    name: str


def load_pairs(files: list[Path], scale: int, max_images: int | None = None) -> list[Pair]:
    """Decode every image once and keep it in memory with its degradation."""
    pairs = []
    for path in files[: max_images or None]:
        hr = read_gray_uint8(path)
        h, w = (hr.shape[0] // scale) * scale, (hr.shape[1] // scale) * scale
        hr = np.ascontiguousarray(hr[:h, :w])
        pairs.append(Pair(hr=hr, lr=degrade_bicubic(hr, scale), name=path.name))
    return pairs


def augment(lr: np.ndarray, hr: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random flips and 90-degree rotations, the same on both."""
    k = int(rng.integers(4))
    if k:
        lr, hr = np.rot90(lr, k), np.rot90(hr, k)
    if rng.random() < 0.5:
        lr, hr = lr[:, ::-1], hr[:, ::-1]
    return lr, hr


Degradation = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


class PatchSampler:
    """Random aligned (LR, HR) patch batches as float32 in [0, 1], shape (B, 1, h, w).

    With a `degradation` (HR uint8 patch, scale, rng -> LR uint8) the LR of each patch is made on
    the fly after augmentation, from the same generator; without one it is cut from the whole
    image's precomputed x4-native LR.

    `edge_fraction` of the patches are snapped to an image border: to one of the four edges or,
    one time in three, to a corner. Uniform positions touch a border in under 2 % of 128-pixel
    patches of a 1024-pixel image, yet whole images are enhanced and scored border included, and
    NIH images carry 1-2-pixel frame lines there that bicubic smears (most of bicubic's error on
    many images lies in the outer 16 pixels). The network sees the border as the edge of its zero
    padding both in training and in the tiler, whose context stops at the image border. With 0
    no extra random numbers are drawn, so earlier runs sample exactly what they did.

    `hard_fraction` of the other patches are the hardest of `hard_candidates` uniform positions: the
    one whose x4-native LR, enlarged by bicubic, is furthest (MSE) from its HR. On chest films that
    is burned-in lettering, wires and device edges, a few percent of the area where bicubic's error
    is ten times its median and where a network trained on uniform patches still trails (see the
    README). Scored on the precomputed x4-native LR, also when `degradation` makes the LR. With 0 no
    extra random numbers are drawn.

    `degradation_fraction` of the patches get their LR from `degradation`; the others keep the cut of
    the precomputed x4-native LR. A mix teaches one network both the clean antialiased inputs the
    x4-native protocol measures and the blurred, noisy, compressed ones real images are. With 1
    (every patch degraded) no extra random numbers are drawn.

    `seed_protocol_fraction` of the patches are made the way seed-128to512 (the original project's
    protocol, engine.evaluation) makes its pairs, at patch size: a 2 x hr_patch crop of the original
    (on the protocol's 8-pixel grid), HR = that crop reduced x2 and LR = it reduced x(2 x scale),
    both torch bicubic without antialiasing, clipped, and N(0, 0.005) added to the float LR. That is
    an image reduced by naive software (aliased), with the finer content per pixel of a
    half-resolution HR, which neither clean nor `degradation` patches show. Drawn before everything
    else; such a patch takes no edge, hard or degradation choice. With 0 no extra random numbers
    are drawn.
    """

    def __init__(self, pairs: list[Pair], scale: int, hr_patch: int, batch_size: int, seed: int | list[int] = 0,
                 degradation: Degradation | None = None, edge_fraction: float = 0.0,
                 hard_fraction: float = 0.0, hard_candidates: int = 8, degradation_fraction: float = 1.0,
                 seed_protocol_fraction: float = 0.0) -> None:
        if not pairs:
            raise DataError("No training images were loaded.")
        small = [p.name for p in pairs if min(p.hr.shape) < hr_patch]
        if small:
            raise DataError(f"{small[0]} is smaller than the HR patch ({hr_patch}); lower data.hr_patch.")
        self.pairs, self.scale, self.hr_patch, self.batch_size = pairs, scale, hr_patch, batch_size
        self.degradation = degradation
        if not 0.0 <= edge_fraction <= 1.0:
            raise DataError(f"edge_fraction ({edge_fraction}) must be between 0 and 1.")
        self.edge_fraction = edge_fraction
        if not 0.0 <= hard_fraction <= 1.0:
            raise DataError(f"hard_fraction ({hard_fraction}) must be between 0 and 1.")
        if hard_candidates < 2:
            raise DataError(f"hard_candidates ({hard_candidates}) must be at least 2.")
        self.hard_fraction, self.hard_candidates = hard_fraction, hard_candidates
        if not 0.0 <= degradation_fraction <= 1.0:
            raise DataError(f"degradation_fraction ({degradation_fraction}) must be between 0 and 1.")
        self.degradation_fraction = degradation_fraction
        if not 0.0 <= seed_protocol_fraction <= 1.0:
            raise DataError(f"seed_protocol_fraction ({seed_protocol_fraction}) must be between 0 and 1.")
        if seed_protocol_fraction:
            small = [p.name for p in pairs if min(p.hr.shape) < 2 * hr_patch]
            if small:
                raise DataError(f"{small[0]} is smaller than twice the HR patch ({2 * hr_patch}), which a "
                                f"seed-protocol patch is cut from; lower data.hr_patch or data.seed_protocol_fraction.")
        self.seed_protocol_fraction = seed_protocol_fraction
        self.rng = np.random.default_rng(seed)

    def fork(self, seed: int | list[int]) -> PatchSampler:
        """The same images and settings with an independent generator (for a worker process)."""
        return PatchSampler(self.pairs, self.scale, self.hr_patch, self.batch_size, seed, self.degradation,
                            self.edge_fraction, self.hard_fraction, self.hard_candidates, self.degradation_fraction,
                            self.seed_protocol_fraction)

    def _snap(self, y: int, x: int, y_max: int, x_max: int) -> tuple[int, int]:
        """Move a patch position onto an edge (2 in 3) or a corner (1 in 3) of the image."""
        mode = int(self.rng.integers(3))  # 0: top/bottom edge, 1: left/right edge, 2: corner
        if mode in (0, 2):
            y = y_max if self.rng.random() < 0.5 else 0
        if mode in (1, 2):
            x = x_max if self.rng.random() < 0.5 else 0
        return y, x

    def _bicubic_mse(self, pair: Pair, y: int, x: int) -> float:
        """MSE of the bicubic baseline (the evaluation's own) of the LR patch at (y, x) against its HR."""
        from engine.evaluation import upsample_bicubic

        s, pl = self.scale, self.hr_patch // self.scale
        up = upsample_bicubic(pair.lr[y : y + pl, x : x + pl] / np.float32(255.0), s)
        hr = pair.hr[y * s : (y + pl) * s, x * s : (x + pl) * s] / np.float32(255.0)
        return float(np.mean((up - hr) ** 2))

    def _hardest(self, pair: Pair, y: int, x: int) -> tuple[int, int]:
        """The position, of (y, x) and hard_candidates - 1 more uniform ones, where bicubic errs most."""
        pl = self.hr_patch // self.scale
        ys = self.rng.integers(pair.lr.shape[0] - pl + 1, size=self.hard_candidates - 1)
        xs = self.rng.integers(pair.lr.shape[1] - pl + 1, size=self.hard_candidates - 1)
        candidates = [(y, x), *zip(ys.tolist(), xs.tolist(), strict=True)]
        return max(candidates, key=lambda c: self._bicubic_mse(pair, *c))

    def seed_protocol_patch(self, pair: Pair) -> tuple[np.ndarray, np.ndarray]:
        """(LR, HR) float32 in [0, 1]: seed-128to512's pair made from a random 2 x hr_patch crop."""
        from engine.evaluation import seed_protocol_pair

        s, ph = self.scale, self.hr_patch
        crop, grid = 2 * ph, 2 * s  # the whole-image protocol samples the original every 2 x scale pixels
        h, w = pair.hr.shape
        y = int(self.rng.integers((h - crop) // grid + 1)) * grid
        x = int(self.rng.integers((w - crop) // grid + 1)) * grid
        original = pair.hr[y : y + crop, x : x + crop].astype(np.float32) / np.float32(255.0)
        return augment(*seed_protocol_pair(original, ph, ph // s, self.rng), self.rng)

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        s, ph = self.scale, self.hr_patch
        pl = ph // s
        lr_batch = np.empty((self.batch_size, 1, pl, pl), np.float32)
        hr_batch = np.empty((self.batch_size, 1, ph, ph), np.float32)
        for i in range(self.batch_size):
            pair = self.pairs[int(self.rng.integers(len(self.pairs)))]
            if self.seed_protocol_fraction and self.rng.random() < self.seed_protocol_fraction:
                lr_batch[i, 0], hr_batch[i, 0] = self.seed_protocol_patch(pair)
                continue
            y = int(self.rng.integers(pair.lr.shape[0] - pl + 1))
            x = int(self.rng.integers(pair.lr.shape[1] - pl + 1))
            if self.edge_fraction and self.rng.random() < self.edge_fraction:
                y, x = self._snap(y, x, pair.lr.shape[0] - pl, pair.lr.shape[1] - pl)
            elif self.hard_fraction and self.rng.random() < self.hard_fraction:
                y, x = self._hardest(pair, y, x)
            lr = pair.lr[y : y + pl, x : x + pl]
            hr = pair.hr[y * s : (y + pl) * s, x * s : (x + pl) * s]
            lr, hr = augment(lr, hr, self.rng)
            if self.degradation is not None and (self.degradation_fraction >= 1.0
                                                 or self.rng.random() < self.degradation_fraction):
                lr = self.degradation(np.ascontiguousarray(hr), s, self.rng)
            lr_batch[i, 0] = lr / 255.0
            hr_batch[i, 0] = hr / 255.0
        return lr_batch, hr_batch

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        while True:
            yield self.sample()

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


def val_crops(pairs: list[Pair], scale: int, crop: int, count: int) -> list[Pair]:
    """Fixed centre crops (HR `crop` x `crop`) of the first `count` validation images.

    `crop` 0 keeps whole images: centre crops of a chest film are mostly smooth mediastinum and
    flatter the baseline, so whole images are the honest default.
    """
    if crop <= 0:
        return list(pairs[:count])
    out = []
    for pair in pairs[:count]:
        h, w = pair.hr.shape
        c = min(crop, h, w) // scale * scale
        y0 = ((h - c) // 2) // scale * scale
        x0 = ((w - c) // 2) // scale * scale
        hr = pair.hr[y0 : y0 + c, x0 : x0 + c]
        lr = pair.lr[y0 // scale : (y0 + c) // scale, x0 // scale : (x0 + c) // scale]
        out.append(Pair(hr=np.ascontiguousarray(hr), lr=np.ascontiguousarray(lr), name=pair.name))
    return out
