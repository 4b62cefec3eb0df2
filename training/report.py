"""Pictures of a run: losses and validation PSNR over steps, and LR | bicubic | model | HR crops.

Written into the run folder at every validation and by `cxr-train report RUN_DIR`.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw

from engine.evaluation import lung_box, metrics, upsample_bicubic
from training.data import Pair

PLOT_NAME = "progress.png"
GRID_NAME = "val_grid.png"
GRID_CROP = 128  # HR pixels per side of each crop in the grid
GAP = 4


def lung_crop(pair: Pair, scale: int, size: int = GRID_CROP) -> Pair:
    """An aligned HR `size` x `size` crop (and its LR) from a lung region of a chest film."""
    y0, x0, c = lung_box(pair.hr.shape, size, scale)
    hr = pair.hr[y0 : y0 + c, x0 : x0 + c]
    lr = pair.lr[y0 // scale : (y0 + c) // scale, x0 // scale : (x0 + c) // scale]
    return Pair(hr=np.ascontiguousarray(hr), lr=np.ascontiguousarray(lr), name=pair.name)


# -- the log plot --------------------------------------------------------------------------------

def read_log(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """log.csv as {column: [(step, value)]}; rows replayed after a resume replace older ones."""
    path = Path(run_dir) / "log.csv"
    if not path.is_file():
        return {}
    by_step: dict[int, dict[str, str]] = {}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            by_step[int(row["step"])] = row
    series: dict[str, list[tuple[int, float]]] = {}
    for step in sorted(by_step):
        for key, value in by_step[step].items():
            if key not in ("step", "elapsed_s") and value not in ("", None):
                series.setdefault(key, []).append((step, float(value)))
    return series


def _timeline(run_dir: Path) -> list[tuple[int, float]]:
    """(step, elapsed_s) of every log.csv row in file order, replayed rows included."""
    path = Path(run_dir) / "log.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return [(int(row["step"]), float(row.get("elapsed_s") or 0.0)) for row in csv.DictReader(fh)]


def wall_time_s(run_dir: Path) -> float:
    """Training time over every session: elapsed_s restarts at each resume, so sum the segments."""
    total, previous = 0.0, 0.0
    for _, elapsed in _timeline(run_dir):
        if elapsed < previous:
            total += previous
        previous = elapsed
    return total + previous


def steps_per_second(run_dir: Path) -> dict[str, float]:
    """Training speed from log.csv: steps per second between consecutive log rows of one session
    (rows spanning a validation are slower; a run's first row counts from step 0); min, median
    and max, empty without a row."""
    rates: list[float] = []
    previous = (0, 0.0)
    for step, elapsed in _timeline(run_dir):
        if step > previous[0] and elapsed > previous[1]:  # not the first row after a resume
            rates.append((step - previous[0]) / (elapsed - previous[1]))
        previous = (step, elapsed)
    if not rates:
        return {}
    return {"min": round(min(rates), 3), "median": round(float(np.median(rates)), 3), "max": round(max(rates), 3)}


def write_progress_plot(run_dir: Path, out: Path | None = None) -> Path | None:
    """Losses (log scale) and validation PSNR of the model and of bicubic, against the step."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    series = read_log(run_dir)
    if not series:
        return None
    out = out or Path(run_dir) / PLOT_NAME
    seed = "val_psnr_seed" in series  # data.val_protocols with seed-128to512: a third panel
    fig, (ax_loss, ax_val, *ax_seed) = plt.subplots(1, 3 if seed else 2, figsize=(16.5 if seed else 11, 4))
    for key, points in series.items():
        if key in ("lr",) or key.startswith(("val_", "bicubic_", "gain")):
            continue
        steps, values = zip(*points, strict=True)
        ax_loss.plot(steps, values, label=key)
    ax_loss.set_yscale("log")
    ax_loss.set(xlabel="step", ylabel="loss", title="training loss")
    ax_loss.legend()
    _plot_validation(ax_val, series, "", "validation (x4-native)")
    for ax in ax_seed:
        _plot_validation(ax, series, "_seed", "validation (seed-128to512, same images)")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


VAL_LINES = (("val_psnr", "-o", "C0", "model (EMA)"), ("bicubic_psnr", "--.", "C0", "bicubic"),
             ("val_psnr_interior", "-o", "C1", "model, interior"),
             ("bicubic_psnr_interior", "--.", "C1", "bicubic, interior"))


def _plot_validation(ax: Any, series: dict[str, list[tuple[int, float]]], suffix: str, title: str) -> None:
    """One protocol's validation panel: the log's columns with `suffix` ("" x4-native, "_seed")."""
    for key, style, color, label in VAL_LINES:
        if key + suffix in series:
            steps, values = zip(*series[key + suffix], strict=True)
            ax.plot(steps, values, style, color=color, label=label)
    ax.set(xlabel="step", ylabel="PSNR dB", title=title)
    if "val_psnr" + suffix in series:
        ax.legend()


# -- the crop grid -------------------------------------------------------------------------------

def _tile(img01: np.ndarray, size: int) -> PILImage.Image:
    tile = PILImage.fromarray(np.clip(np.rint(img01 * 255.0), 0, 255).astype(np.uint8))
    return tile if tile.size == (size, size) else tile.resize((size, size), PILImage.Resampling.NEAREST)


def write_val_grid(crops: list[Pair], outputs: list[np.ndarray], scale: int, out: Path, title: str = "") -> Path:
    """One row per crop: LR (pixels enlarged) | bicubic | model | HR, PSNR written on each."""
    size = max(p.hr.shape[0] for p in crops)
    header = 16
    cols = ("LR", "bicubic", "model", "HR")
    grid = PILImage.new("L", (4 * size + 3 * GAP, header + len(crops) * (size + GAP + 12)), 0)
    draw = ImageDraw.Draw(grid)
    draw.text((2, 2), title, fill=255)
    for r, (pair, sr) in enumerate(zip(crops, outputs, strict=True)):
        hr = pair.hr / 255.0
        bic = upsample_bicubic(pair.lr.astype(np.float32) / 255.0, scale)
        images = (pair.lr / 255.0, bic, sr, hr)
        y = header + r * (size + GAP + 12)
        for c, (name, img) in enumerate(zip(cols, images, strict=True)):
            x = c * (size + GAP)
            grid.paste(_tile(img, size), (x, y + 12))
            label = name if name in ("LR", "HR") else f"{name} {metrics(np.asarray(img), hr)['psnr']:.2f}"
            draw.text((x + 2, y), label, fill=255)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    return out


# -- on demand -----------------------------------------------------------------------------------

def run_model(model: Any, lr_image: np.ndarray, device: Any = None, memory_format: Any = None) -> np.ndarray:
    """A whole LR image (uint8, or float in [0, 1]) through `model` in fp32, clipped to [0, 1]
    (no tiling: crops and val)."""
    import torch

    scale = 255.0 if lr_image.dtype == np.uint8 else 1.0
    lr = torch.from_numpy(np.ascontiguousarray(lr_image, dtype=np.float32) / scale)[None, None]
    lr = lr.to(device or next(model.parameters()).device, memory_format=memory_format or torch.contiguous_format)
    with torch.inference_mode():
        return model(lr).float().clamp_(0, 1)[0, 0].cpu().numpy()


def report_run(run_dir: Path, config: str | None = None) -> list[Path]:
    """`cxr-train report`: the plot from log.csv and the grid from the run's best EMA weights."""
    from training.checkpoints import read_generator
    from training.config import ConfigError, load_config
    from training.data import load_pairs, train_val_files
    from training.export import _architecture, _build, run_config

    if not run_dir.is_dir():
        raise ConfigError(f"The run folder {run_dir} does not exist; name a folder under runs/.")
    written = [p for p in [write_progress_plot(run_dir)] if p is not None]
    cfg = load_config(config) if config else run_config(run_dir)
    if cfg is None:
        raise ConfigError(f"{run_dir} has no config.yaml (older run): pass --config with the preset it was trained with.")
    weights = read_generator(run_dir)
    model = _build(*_architecture(weights, cfg), weights.state, weights.source)
    files = train_val_files(cfg.data.train, cfg.data.val, cfg.seed)[1]
    crops = [lung_crop(p, cfg.data.scale) for p in load_pairs(files, cfg.data.scale, max(1, cfg.val_grid))]
    outputs = [run_model(model, p.lr) for p in crops]
    step = f" step {weights.step}" if weights.step is not None else ""
    written.append(write_val_grid(crops, outputs, cfg.data.scale, run_dir / GRID_NAME, f"{run_dir.name}{step} ({weights.source.name})"))
    return written
