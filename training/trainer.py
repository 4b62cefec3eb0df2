"""The PSNR-oriented training stage (L1, Adam, decaying schedule, EMA) with exact resume.

One process needs no launcher; under torchrun the generator is wrapped in DistributedDataParallel,
each rank samples its own patches (seed + rank) and only rank 0 validates, logs and checkpoints.
Checkpoints hold the model, the EMA, the optimiser, the schedule, the step and every RNG state,
so a resumed run continues exactly where it stopped. The GAN stage (training.gan) builds on this.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import json
import math
import platform
import random
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from engine.evaluation import INTERIOR_MARGIN, metrics, upsample_bicubic
from engine.sr.archs import build_model
from training import distributed
from training.checkpoints import BEST_NAME, CHECKPOINT_NAME, read_generator
from training.config import ConfigError, TrainConfig
from training.data import Pair, PatchSampler, load_pairs, train_val_files, val_crops
from training.degradations import RealisticDegradation
from training.loader import Batch, seed_key, worker_batches

__all__ = ["ALL_VAL_COLUMNS", "CHECKPOINT_NAME", "EMA", "Trainer", "autocast_dtype", "bicubic_upsample", "kept_checkpoint_name", "lr_lambda",
           "quality"]

LOG_NAME = "log.csv"
RUN_INFO_NAME = "run.json"
INIT_CARD_NAME = "init_card.json"  # the card of the shipped weights named by init_from
# Validation columns of log.csv. The interior ones leave out INTERIOR_MARGIN pixels on every side,
# as `cxr-enhance eval` does: on whole NIH images the frame lines at the border can carry most of
# the gain, the interior is where the anatomy is.
VAL_COLUMNS = ("val_psnr", "val_ssim", "bicubic_psnr", "bicubic_ssim", "gain_db",
               "val_psnr_interior", "bicubic_psnr_interior", "gain_interior_db")
# The same columns under seed-128to512 (data.val_protocols), on the same images, whole.
SEED_SUFFIX = "_seed"
SEED_COLUMNS = tuple(c + SEED_SUFFIX for c in VAL_COLUMNS)
ALL_VAL_COLUMNS = VAL_COLUMNS + SEED_COLUMNS


def autocast_dtype(precision: str) -> torch.dtype | None:
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


class EMA:
    """Exponential moving average of a model's parameters and buffers (kept in fp32)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_state = self.model.state_dict()
        for key, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                ema_state[key].mul_(self.decay).add_(value.detach(), alpha=1.0 - self.decay)
            else:
                ema_state[key].copy_(value)


def kept_checkpoint_name(step: int) -> str:
    """The copy of the checkpoint `keep_every` keeps at `step` (export it with --checkpoint NAME)."""
    return f"step-{step:06d}.ckpt"


def lr_lambda(cfg: TrainConfig):
    opt = cfg.optim

    def factor(step: int) -> float:
        if opt.warmup_steps and step < opt.warmup_steps:
            return (step + 1) / opt.warmup_steps
        if opt.schedule == "step":
            return 0.5 ** sum(step >= m for m in opt.milestones)
        progress = min(1.0, (step - opt.warmup_steps) / max(1, cfg.steps - opt.warmup_steps))
        floor = opt.min_lr / opt.lr
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def bicubic_upsample(lr_uint8: np.ndarray, scale: int) -> np.ndarray:
    """The protocol's baseline: PIL BICUBIC in mode F on the 8-bit LR, clipped to [0, 1]."""
    return upsample_bicubic(lr_uint8.astype(np.float32) / 255.0, scale)


def quality(sr: np.ndarray, hr: np.ndarray) -> dict[str, float]:
    """PSNR / SSIM / MSE, whole and interior, exactly as `cxr-enhance eval` computes them."""
    return metrics(sr, hr, margin=INTERIOR_MARGIN)


def validation_summary(rows: list[tuple[dict[str, float], dict[str, float]]]) -> dict[str, float]:
    """log.csv's validation columns from (model quality, bicubic quality) per image."""
    n = len(rows)
    out = {
        "val_psnr": sum(q["psnr"] for q, _ in rows) / n,
        "val_ssim": sum(q["ssim"] for q, _ in rows) / n,
        "bicubic_psnr": sum(b["psnr"] for _, b in rows) / n,
        "bicubic_ssim": sum(b["ssim"] for _, b in rows) / n,
    }
    out["gain_db"] = out["val_psnr"] - out["bicubic_psnr"]
    inner = [(q["psnr_interior"], b["psnr_interior"]) for q, b in rows]
    if all(math.isfinite(a) and math.isfinite(b) for a, b in inner):  # crops too small: left out
        out["val_psnr_interior"] = sum(a for a, _ in inner) / n
        out["bicubic_psnr_interior"] = sum(b for _, b in inner) / n
        out["gain_interior_db"] = out["val_psnr_interior"] - out["bicubic_psnr_interior"]
    return out


def git_commit(repo: Path | None = None) -> str:
    """The checkout's commit ("+dirty" when it has changes), or "unknown" outside git."""
    repo = repo or Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode:
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def zero_last_conv(model: nn.Module) -> None:
    """Zero the output convolution so a residual network starts as its upsampled input."""
    last = [m for m in model.modules() if isinstance(m, nn.Conv2d)][-1]
    with torch.no_grad():
        last.weight.zero_()
        if last.bias is not None:
            last.bias.zero_()


def keeps(value: float, best: float, tolerance: float = 0.0) -> tuple[bool, float]:
    """Whether best_ema.pt takes this validation, and the best value so far: a new best always;
    with a tolerance, also a later one within `tolerance` of the best (the latest such is kept)."""
    if value > best:
        return True, value
    return tolerance > 0 and value >= best - tolerance, best


class Trainer:
    """The PSNR stage; subclasses override `train_step` and add state (see training.gan)."""

    loss_keys: tuple[str, ...] = ("loss",)
    select_best = True  # keep best_ema.pt by validation PSNR (cfg.select_by: whole image or interior)
    command: str | None = None  # the command line that started this session (`cxr-train` sets it)

    def __init__(self, cfg: TrainConfig, run_dir: str | Path | None = None) -> None:
        self.cfg = cfg
        self.dist = distributed.dist_env()
        self.run_dir = Path(run_dir or Path(cfg.out_dir) / cfg.name)
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = self._resolve_device(cfg.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed patch sizes: let cuDNN pick kernels once
        distributed.init(self.dist, self.device)
        self._seed_everything(cfg.seed)
        self.model = build_model(cfg.model.arch, cfg.model.params)
        if cfg.init_from:
            self._init_weights(cfg.init_from)
        elif cfg.model.zero_init_last:
            zero_last_conv(self.model)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model.to(self.device, memory_format=self.memory_format)
        self.ema = EMA(self.model, cfg.ema_decay)
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=cfg.optim.lr, betas=cfg.optim.betas, weight_decay=cfg.optim.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(cfg))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.precision == "fp16")
        self.step = 0
        self.best_psnr = -math.inf
        train_files, val_files = train_val_files(cfg.data.train, cfg.data.val, cfg.seed)
        train_pairs = load_pairs(train_files, cfg.data.scale, cfg.data.max_images)
        degradation = (RealisticDegradation.from_settings(cfg.data.realistic)
                       if cfg.data.degradation == "realistic" else None)
        # Rank 0 keeps the configured seed, so one process samples what it always did.
        self.sampler = PatchSampler(train_pairs, cfg.data.scale, cfg.data.hr_patch, cfg.data.batch_size,
                                    cfg.seed + self.dist.rank, degradation, cfg.data.edge_fraction,
                                    cfg.data.hard_fraction, cfg.data.hard_candidates, cfg.data.realistic_fraction,
                                    cfg.data.seed_protocol_fraction)
        self.val_set: list[Pair] = []
        self.grid_set: list[Pair] = []
        self.val_bicubic: list[dict[str, float]] = []
        self.seed_val_set: list[tuple[np.ndarray, np.ndarray]] = []  # (LR, HR) in [0, 1], seed-128to512
        self.seed_val_bicubic: list[dict[str, float]] = []
        if self.dist.is_main:
            self._load_val(val_files)
        self.train_model: nn.Module = self._wrap(self.model)
        self._batches: Iterator[Batch] | None = None

    # -- set-up -------------------------------------------------------------------------------
    @staticmethod
    def _seed_everything(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def _resolve_device(self, spec: str) -> torch.device:
        from engine.sr.device import DeviceError, resolve_device

        try:
            device = resolve_device(spec)
        except DeviceError as exc:
            raise ConfigError(str(exc).replace("--device", "device:")) from None
        if device.type == "mps":  # autocast and DDP on MPS are not what this trainer is tested on
            device = torch.device("cpu")
        return distributed.process_device(self.dist, device)

    def _load_val(self, files: list[Path]) -> None:
        from training.report import lung_crop

        data = self.cfg.data
        pairs = load_pairs(files, data.scale, max(data.val_crops, self.cfg.val_grid))
        self.val_set = val_crops(pairs[: data.val_crops], data.scale, data.val_crop_size, data.val_crops)
        self.val_bicubic = [quality(bicubic_upsample(p.lr, data.scale), p.hr / 255.0) for p in self.val_set]
        self.grid_set = [lung_crop(p, data.scale) for p in pairs[: self.cfg.val_grid]]
        if "seed-128to512" in data.val_protocols:
            from engine.evaluation import DEFAULT_SEED, make_pair

            # The protocol's own pairs, noise seeded by the file name as `cxr-enhance eval DIR`
            # seeds it, so a logged value equals eval's on the same images and weights.
            self.seed_val_set = [make_pair("seed-128to512", p.hr, p.name, DEFAULT_SEED) for p in pairs[: data.val_crops]]
            self.seed_val_bicubic = [quality(upsample_bicubic(lr, data.scale), hr) for lr, hr in self.seed_val_set]

    def _init_weights(self, path: str) -> None:
        from engine.sr.weights import WeightsError

        try:
            source = read_generator(path)
        except WeightsError as exc:
            raise ConfigError(f"init_from: {exc}") from None
        if source.arch and source.arch != self.cfg.model.arch:
            raise ConfigError(f"init_from {path} holds a {source.arch} but model.arch is {self.cfg.model.arch}; make them match.")
        try:
            self.model.load_state_dict(source.state, strict=True)
        except RuntimeError:
            raise ConfigError(f"The weights in {path} do not fit model.params (layer names or shapes differ); "
                              f"they were made with {source.params}.") from None
        self._keep_parent_card(Path(path))
        # The residual adds no weights, so a mismatch loads silently: say so.
        wanted = getattr(self.model, "upsample_residual", None)
        had = (source.params or {}).get("upsample_residual", wanted)
        if had != wanted:
            self.say(f"note: {path} was made with upsample_residual={had}, this run uses {wanted}.")

    def _keep_parent_card(self, weights: Path) -> None:
        """Copy the model card of shipped weights this run starts from into the run folder.

        Export reads it to write the whole lineage (both runs' steps, compute and wall time) into
        the new card. Copied once, at the run's first start: by the time the run is resumed, an
        export may already have overwritten the shipped card with this run's own.
        """
        card = weights.with_suffix(".json")
        kept = self.run_dir / INIT_CARD_NAME
        if self.dist.is_main and weights.suffix == ".safetensors" and card.is_file() and not kept.exists():
            shutil.copyfile(card, kept)

    def _wrap(self, model: nn.Module, **kwargs: Any) -> nn.Module:
        if not self.dist.enabled:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, **kwargs)

    def say(self, text: str) -> None:
        """Print on rank 0 only (one line per event, not one per process)."""
        if self.dist.is_main:
            print(text, flush=True)

    # -- one step -----------------------------------------------------------------------------
    def autocast(self) -> AbstractContextManager[Any]:
        dtype = autocast_dtype(self.cfg.precision)
        return torch.autocast(self.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cfg.data.workers:
            if self._batches is None:
                key = seed_key(self.cfg.seed, self.dist.rank, self.step)
                self._batches = worker_batches(self.sampler, self.cfg.data.workers, key)
            lr, hr = next(self._batches)
        else:
            lr_np, hr_np = self.sampler.sample()
            lr, hr = torch.from_numpy(lr_np), torch.from_numpy(hr_np)
        move = {"device": self.device, "non_blocking": True, "memory_format": self.memory_format}
        return lr.to(**move), hr.to(**move)

    def optimizer_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, model: nn.Module) -> None:
        """Backward, optional gradient clipping, step (loss scaling for fp16)."""
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.optim.grad_clip:
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.cfg.optim.grad_clip)
        self.scaler.step(optimizer)

    def train_step(self) -> dict[str, float]:
        lr, hr = self.next_batch()
        self.train_model.train()
        with self.autocast():
            sr = self.train_model(lr)
        loss = torch.nn.functional.l1_loss(sr.float(), hr)
        self.optimizer_step(loss, self.optimizer, self.model)
        self.scaler.update()
        self.scheduler.step()
        self.ema.update(self.model)
        self.step += 1
        return {"loss": float(loss.detach())}

    # -- validation ---------------------------------------------------------------------------
    def enhance(self, model: nn.Module, lr: np.ndarray) -> np.ndarray:
        """A whole LR image (uint8, or float in [0, 1]) through `model` (fp32), clipped to [0, 1]."""
        from training.report import run_model

        return run_model(model, lr, self.device, self.memory_format)

    @torch.inference_mode()
    def validate(self) -> dict[str, float]:
        rows = [(quality(self.enhance(self.ema.model, pair.lr), pair.hr / 255.0), base)
                for pair, base in zip(self.val_set, self.val_bicubic, strict=True)]
        out = validation_summary(rows)
        if self.seed_val_set:
            seed_rows = [(quality(self.enhance(self.ema.model, lr), hr), base)
                         for (lr, hr), base in zip(self.seed_val_set, self.seed_val_bicubic, strict=True)]
            out.update({k + SEED_SUFFIX: v for k, v in validation_summary(seed_rows).items()})
        return out

    def write_report(self) -> None:
        """Loss / PSNR plot and the LR | bicubic | model | HR grid, beside the log."""
        from training.report import write_progress_plot, write_val_grid

        write_progress_plot(self.run_dir)
        if self.grid_set:
            with torch.inference_mode():
                outputs = [self.enhance(self.ema.model, p.lr) for p in self.grid_set]
            write_val_grid(self.grid_set, outputs, self.cfg.data.scale, self.run_dir / "val_grid.png",
                           title=f"{self.cfg.name} step {self.step}")

    # -- checkpoints --------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        rng: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(),
            "python": random.getstate(),
            "sampler": self.sampler.state(),
        }
        if self.device.type == "cuda":
            rng["torch_cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "step": self.step,
            "best_psnr": self.best_psnr,
            "select_by": self.cfg.select_by,
            "model": self.model.state_dict(),
            "ema": self.ema.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng,
            "arch": self.cfg.model.arch,
            "params": self.cfg.model.params,
            "stage": self.cfg.stage,
            "scaler": self.scaler.state_dict(),
            "world_size": self.dist.world_size,
        }

    def save_checkpoint(self, name: str = CHECKPOINT_NAME) -> Path | None:
        """Write the checkpoint on rank 0 (a collective under torchrun: every rank calls it)."""
        samplers = distributed.gather_to_main(self.sampler.state(), self.dist)
        if not self.dist.is_main:
            return None
        state = self.state()
        if self.dist.enabled:
            state["rng"]["sampler_ranks"] = samplers
        path = self.run_dir / name
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(path)
        return path

    def keep_copy(self, path: Path) -> Path:
        """Copy the checkpoint just written to step-NNNNNN.ckpt (atomically, as it was written)."""
        kept = self.run_dir / kept_checkpoint_name(self.step)
        tmp = kept.with_suffix(".tmp")
        shutil.copyfile(path, tmp)
        tmp.replace(kept)
        return kept

    def load_checkpoint(self, path: str | Path) -> None:
        # Our own checkpoints hold numpy RNG state and python tuples: trusted, written by us.
        self.load_state(torch.load(path, map_location="cpu", weights_only=False))

    def load_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.model.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        self.step = state["step"]
        # best_psnr is a value of the column best_ema.pt was chosen by; resumed under another
        # select_by, the next validation starts the choice again.
        same_column = state.get("select_by", "val_psnr") == self.cfg.select_by
        self.best_psnr = state["best_psnr"] if same_column else -math.inf
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if "torch_cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["torch_cuda"], self.device)
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        self.sampler.set_state(self._sampler_state(rng))
        self._batches = None  # worker streams restart from the resumed step

    def _sampler_state(self, rng: dict[str, Any]) -> dict:
        ranks = rng.get("sampler_ranks")
        if ranks and len(ranks) == self.dist.world_size:
            return ranks[self.dist.rank]
        if self.dist.is_main:
            return rng["sampler"]
        # A different number of processes than when saved: a fresh, distinct stream per rank.
        return np.random.default_rng(seed_key(self.cfg.seed, self.dist.rank, self.step)).bit_generator.state

    def save_best(self, row: dict[str, float]) -> None:
        torch.save({"ema": self.ema.model.state_dict(), "step": self.step, "val": row,
                    "arch": self.cfg.model.arch, "params": self.cfg.model.params}, self.run_dir / BEST_NAME)

    def write_run_info(self) -> None:
        """Config and compute of this session (read by `cxr-train export` for the model card)."""
        import yaml

        from training.config import to_dict

        (self.run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(self.cfg), sort_keys=False))
        info_path = self.run_dir / RUN_INFO_NAME
        info = json.loads(info_path.read_text()) if info_path.is_file() else {"sessions": []}
        info["sessions"].append({
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "start_step": self.step,
            "device": self.device.type, "device_name": _device_name(self.device),
            "processes": self.dist.world_size, "threads": torch.get_num_threads(),
            "precision": self.cfg.precision, "torch": torch.__version__, "commit": git_commit(),
            **({"command": self.command} if self.command else {}),
        })
        info_path.write_text(json.dumps(info, indent=2) + "\n")

    # -- the loop -----------------------------------------------------------------------------
    def log_columns(self) -> list[str]:
        seed = SEED_COLUMNS if "seed-128to512" in self.cfg.data.val_protocols else ()
        return ["step", *self.loss_keys, "lr", *VAL_COLUMNS, *seed, "elapsed_s"]

    def fit(self, steps: int | None = None, progress: bool = True,
            max_seconds: float | None = None) -> dict[str, float]:
        """Train until `steps` total steps (default cfg.steps); resumable at any checkpoint.

        With `max_seconds`, stop after the first step that ends that long after the start, as
        at the target: a validation (which may take the best EMA) and a checkpoint, so that a
        machine lent for minutes at a time ends each call with `--resume` ready. `stopped_early`
        says whether it stopped so.
        """
        target = steps or self.cfg.steps
        last: dict[str, float] = {}
        self.stopped_early = False
        if self.dist.is_main:
            self.write_run_info()
        with self._open_log() as log:
            start, start_step, losses = time.perf_counter(), self.step, []
            while self.step < target:
                losses.append(self.train_step())
                stop = self.step < target and max_seconds is not None and \
                    distributed.any_rank(time.perf_counter() - start >= max_seconds, self.dist, self.device)
                final = stop or self.step == target
                if self.step % self.cfg.log_every == 0 or final:
                    row = {k: sum(d[k] for d in losses) / len(losses) for k in self.loss_keys}
                    losses = []
                    if self.dist.is_main:
                        last = self._log_row(row, log, start, start_step, target, progress, final)
                keep = bool(self.cfg.keep_every) and self.step % self.cfg.keep_every == 0
                if keep or self.step % self.cfg.ckpt_every == 0 or final:
                    path = self.save_checkpoint()
                    if keep and path is not None:  # the kept copy is this checkpoint, copied, not saved again
                        self.keep_copy(path)
                if stop:
                    self.stopped_early = True
                    minutes = (time.perf_counter() - start) / 60
                    self.say(f"stopped at step {self.step} of {target} after {minutes:.1f} min (the time limit); "
                             f"--resume goes on from {self.run_dir / CHECKPOINT_NAME}")
                    break
        return last

    @contextlib.contextmanager
    def _open_log(self) -> Iterator[_Log | None]:
        if not self.dist.is_main:
            yield None
            return
        log_path = self.run_dir / LOG_NAME
        columns = _log_header(log_path)  # a run resumed from an older version keeps its columns
        with log_path.open("a", newline="") as fh:
            log = _Log(fh, columns or self.log_columns())
            if not columns:
                log.write_header()
            yield log

    def _log_row(self, row: dict[str, float], log: _Log, start: float, start_step: int, target: int,
                 progress: bool, final: bool = False) -> dict[str, float]:
        elapsed = time.perf_counter() - start
        rate = (self.step - start_step) / max(elapsed, 1e-9)
        validated = self.step % self.cfg.val_every == 0 or self.step == target or final
        if validated:
            row.update(self.validate())
            if self.select_best:
                keep, self.best_psnr = keeps(row[self.cfg.select_by], self.best_psnr, self.cfg.select_tolerance)
                if keep:
                    self.save_best(row)
        log.write({"step": self.step, **{k: f"{row[k]:.6f}" for k in self.loss_keys},
                   "lr": f"{self.scheduler.get_last_lr()[0]:.3e}",
                   **{k: f"{row[k]:.4f}" for k in ALL_VAL_COLUMNS if k in row}, "elapsed_s": f"{elapsed:.1f}"})
        if validated:
            self._report_safely()
        if progress:
            eta = (target - self.step) / max(rate, 1e-9)
            extra = ""
            if validated:
                extra = f" val {row['val_psnr']:.2f} dB (bicubic {row['bicubic_psnr']:.2f}, {row['gain_db']:+.2f})"
                if "gain_interior_db" in row:
                    extra += f", interior {row['gain_interior_db']:+.2f}"
                if "gain_db_seed" in row:
                    extra += f"; seed-128to512 {row['gain_db_seed']:+.2f}"
            print(f"step {self.step}/{target} {self._loss_text(row)} {rate:.2f} it/s eta {eta / 60:.0f} min{extra}", flush=True)
        return row

    def _loss_text(self, row: dict[str, float]) -> str:
        return " ".join(f"{k} {row[k]:.5f}" for k in self.loss_keys)

    def _report_safely(self) -> None:
        try:
            self.write_report()
        except ImportError as exc:  # matplotlib is in the `train` extra; training goes on without
            if not getattr(self, "_report_warned", False):
                print(f"note: no plots ({exc}); install the train extra: pip install -e '.[train]'", flush=True)
                self._report_warned = True

    def close(self) -> None:
        self._batches = None
        distributed.shutdown(self.dist)


class _Log:
    """log.csv, flushed after every row so a crash loses nothing that was printed. A value without
    a column is left out, a column without a value left empty (csv.DictWriter)."""

    def __init__(self, fh: Any, columns: list[str]) -> None:
        self.fh = fh
        self.writer = csv.DictWriter(fh, columns, restval="", extrasaction="ignore")

    def write_header(self) -> None:
        self.writer.writeheader()
        self.fh.flush()

    def write(self, values: dict[str, Any]) -> None:
        self.writer.writerow(values)
        self.fh.flush()


def _log_header(path: Path) -> list[str]:
    """The columns of an existing log.csv, empty for none."""
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return next(csv.reader(fh), [])


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
