"""The PSNR-oriented training stage (L1, Adam, decaying schedule, EMA) with exact resume.

One process needs no launcher. Checkpoints hold the model, the EMA, the optimiser, the schedule,
the step and every RNG state, so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import copy
import csv
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image as PILImage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import nn

from engine.sr.archs import build_model
from training.config import TrainConfig
from training.data import Pair, PatchSampler, list_images, load_pairs, val_crops

CHECKPOINT_NAME = "last.ckpt"


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
    h, w = lr_uint8.shape
    im = PILImage.fromarray(lr_uint8.astype(np.float32) / 255.0, mode="F")
    up = np.asarray(im.resize((w * scale, h * scale), PILImage.Resampling.BICUBIC), np.float32)
    return np.clip(up, 0.0, 1.0)


def quality(sr: np.ndarray, hr: np.ndarray) -> dict[str, float]:
    return {
        "psnr": float(peak_signal_noise_ratio(hr, sr, data_range=1.0)),
        "ssim": float(structural_similarity(hr, sr, data_range=1.0)),
        "mse": float(np.mean((hr - sr) ** 2)),
    }


class Trainer:
    def __init__(self, cfg: TrainConfig, run_dir: str | Path | None = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir or Path(cfg.out_dir) / cfg.name)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self._seed_everything(cfg.seed)
        self.model = build_model(cfg.model.arch, cfg.model.params)
        if cfg.init_from:
            self._init_weights(cfg.init_from)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)
        self.ema = EMA(self.model, cfg.ema_decay)
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=cfg.optim.lr, betas=cfg.optim.betas, weight_decay=cfg.optim.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(cfg))
        self.step = 0
        self.best_psnr = -math.inf
        train_pairs = load_pairs(list_images(cfg.data.train), cfg.data.scale, cfg.data.max_images)
        self.sampler = PatchSampler(train_pairs, cfg.data.scale, cfg.data.hr_patch, cfg.data.batch_size, cfg.seed)
        val_pairs = load_pairs(list_images(cfg.data.val), cfg.data.scale, cfg.data.val_crops)
        self.val_set: list[Pair] = val_crops(val_pairs, cfg.data.scale, cfg.data.val_crop_size, cfg.data.val_crops)
        self.val_bicubic = [quality(bicubic_upsample(p.lr, cfg.data.scale), p.hr / 255.0) for p in self.val_set]

    # -- set-up -------------------------------------------------------------------------------
    @staticmethod
    def _seed_everything(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def _init_weights(self, path: str) -> None:
        from engine.sr.weights import load_state_dict

        self.model.load_state_dict(load_state_dict(path), strict=True)

    # -- one step -----------------------------------------------------------------------------
    def train_step(self) -> float:
        lr_np, hr_np = self.sampler.sample()
        lr = torch.from_numpy(lr_np).to(memory_format=self.memory_format)
        hr = torch.from_numpy(hr_np).to(memory_format=self.memory_format)
        self.model.train()
        dtype = autocast_dtype(self.cfg.precision)
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            sr = self.model(lr)
        loss = torch.nn.functional.l1_loss(sr.float(), hr)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.ema.update(self.model)
        self.step += 1
        return float(loss.detach())

    # -- validation ---------------------------------------------------------------------------
    @torch.inference_mode()
    def validate(self) -> dict[str, float]:
        model = self.ema.model
        rows = []
        for pair, base in zip(self.val_set, self.val_bicubic):
            lr = torch.from_numpy(pair.lr.astype(np.float32) / 255.0)[None, None]
            sr = model(lr.to(memory_format=self.memory_format)).float().clamp_(0, 1)[0, 0].numpy()
            q = quality(sr, pair.hr / 255.0)
            rows.append((q, base))
        n = len(rows)
        out = {
            "val_psnr": sum(q["psnr"] for q, _ in rows) / n,
            "val_ssim": sum(q["ssim"] for q, _ in rows) / n,
            "bicubic_psnr": sum(b["psnr"] for _, b in rows) / n,
            "bicubic_ssim": sum(b["ssim"] for _, b in rows) / n,
        }
        out["gain_db"] = out["val_psnr"] - out["bicubic_psnr"]
        return out

    # -- checkpoints --------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "best_psnr": self.best_psnr,
            "model": self.model.state_dict(),
            "ema": self.ema.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": np.random.get_state(),
                "python": random.getstate(),
                "sampler": self.sampler.state(),
            },
            "arch": self.cfg.model.arch,
            "params": self.cfg.model.params,
        }

    def save_checkpoint(self, name: str = CHECKPOINT_NAME) -> Path:
        path = self.run_dir / name
        tmp = path.with_suffix(".tmp")
        torch.save(self.state(), tmp)
        tmp.replace(path)
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        # Our own checkpoints hold numpy RNG state and python tuples: trusted, written by us.
        state = torch.load(path, map_location="cpu", weights_only=False)
        self.model.load_state_dict(state["model"])
        self.ema.model.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = state["step"]
        self.best_psnr = state["best_psnr"]
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        self.sampler.set_state(rng["sampler"])

    # -- the loop -----------------------------------------------------------------------------
    def fit(self, steps: int | None = None, progress: bool = True) -> dict[str, float]:
        """Train until `steps` total steps (default cfg.steps); resumable at any checkpoint."""
        target = steps or self.cfg.steps
        log_path = self.run_dir / "log.csv"
        new_log = not log_path.exists()
        last: dict[str, float] = {}
        with log_path.open("a", newline="") as fh:
            writer = csv.writer(fh)
            if new_log:
                writer.writerow(["step", "loss", "lr", "val_psnr", "val_ssim", "bicubic_psnr", "bicubic_ssim", "gain_db", "elapsed_s"])
            start, start_step, losses = time.perf_counter(), self.step, []
            while self.step < target:
                losses.append(self.train_step())
                if self.step % self.cfg.log_every == 0 or self.step == target:
                    elapsed = time.perf_counter() - start
                    rate = (self.step - start_step) / max(elapsed, 1e-9)
                    row: dict[str, float] = {"loss": sum(losses) / len(losses)}
                    losses = []
                    if self.step % self.cfg.val_every == 0 or self.step == target:
                        row.update(self.validate())
                        if row["val_psnr"] > self.best_psnr:
                            self.best_psnr = row["val_psnr"]
                            torch.save({"ema": self.ema.model.state_dict(), "step": self.step, "val": row}, self.run_dir / "best_ema.pt")
                    writer.writerow([self.step, f"{row['loss']:.6f}", f"{self.scheduler.get_last_lr()[0]:.3e}",
                                     *(f"{row[k]:.4f}" if k in row else "" for k in ("val_psnr", "val_ssim", "bicubic_psnr", "bicubic_ssim", "gain_db")),
                                     f"{elapsed:.1f}"])
                    fh.flush()
                    if progress:
                        eta = (target - self.step) / max(rate, 1e-9)
                        extra = f" val {row['val_psnr']:.2f} dB (bicubic {row['bicubic_psnr']:.2f}, {row['gain_db']:+.2f})" if "val_psnr" in row else ""
                        print(f"step {self.step}/{target} loss {row['loss']:.5f} {rate:.2f} it/s eta {eta / 60:.0f} min{extra}", flush=True)
                    last = row
                if self.step % self.cfg.ckpt_every == 0 or self.step == target:
                    self.save_checkpoint()
        return last
