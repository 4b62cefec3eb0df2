"""Typed training configuration, read from YAML presets into dataclasses."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PRESETS_DIR = Path(__file__).resolve().parent / "presets"


class ConfigError(ValueError):
    """A config that cannot be used; the message is one sentence saying what to change."""


@dataclass
class ModelConfig:
    arch: str = "SRVGGNetCompact"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    train: str = "../shared/data/cxr14/train"
    val: str = "../shared/data/cxr14/val"
    scale: int = 4
    hr_patch: int = 128
    batch_size: int = 16
    degradation: str = "bicubic"  # "bicubic" (x4-native protocol) or "realistic"
    val_crops: int = 8  # fixed centre crops of val images used for validation during training
    val_crop_size: int = 256  # HR size of each validation crop
    max_images: int | None = None
    workers: int = 0  # DataLoader worker processes; 0 = load in the training process


@dataclass
class OptimConfig:
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    schedule: str = "cosine"  # "cosine" or "step"
    warmup_steps: int = 0
    milestones: list[int] = field(default_factory=list)  # for "step": halve at these steps
    min_lr: float = 1e-6
    grad_clip: float = 0.0  # 0 = off


@dataclass
class GanConfig:
    perceptual_weight: float = 1.0
    gan_weight: float = 5e-3
    pixel_weight: float = 1e-2
    vgg_weights: str | None = None  # local torchvision-format VGG19 file
    feature_loss: str = "vgg"  # "vgg" or "discriminator" (feature matching, no VGG needed)
    d_lr: float = 1e-4


@dataclass
class TrainConfig:
    name: str = "run"
    stage: str = "psnr"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    gan: GanConfig = field(default_factory=GanConfig)
    steps: int = 10000
    ema_decay: float = 0.999
    precision: str = "bf16"  # "fp32", "bf16" or "fp16" (autocast)
    channels_last: bool = True
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0 = torch's default
    log_every: int = 50
    val_every: int = 1000
    ckpt_every: int = 500
    out_dir: str = "runs"
    init_from: str | None = None  # weights in any format engine.sr reads


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"Unknown setting {where}{unknown[0]!r}; known: {', '.join(sorted(known))}.")
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        sub = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig, "gan": GanConfig}
        if cls is TrainConfig and key in sub:
            if not isinstance(value, dict):
                raise ConfigError(f"Setting {key!r} must be a mapping of settings.")
            kwargs[key] = _build(sub[key], value, f"{key}.")
        elif key == "betas":
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    return cls(**kwargs)


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    cfg = _build(TrainConfig, values, "")
    validate(cfg)
    return cfg


def load_config(path_or_preset: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML file or a preset name (`cpu-fast`, `gpu-full`, ...) into a TrainConfig."""
    import yaml

    path = Path(path_or_preset)
    if not path.exists():
        preset = PRESETS_DIR / f"{path_or_preset}.yaml"
        if not preset.exists():
            names = ", ".join(sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))
            raise ConfigError(f"No config file or preset named {str(path_or_preset)!r}; presets: {names}.")
        path = preset
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML ({exc.__class__.__name__}).") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a mapping of settings at the top level.")
    for dotted, value in (overrides or {}).items():
        node = values
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return config_from_dict(values)


def validate(cfg: TrainConfig) -> None:
    if cfg.stage not in ("psnr", "gan"):
        raise ConfigError(f"stage must be 'psnr' or 'gan', not {cfg.stage!r}.")
    if cfg.precision not in ("fp32", "bf16", "fp16"):
        raise ConfigError(f"precision must be fp32, bf16 or fp16, not {cfg.precision!r}.")
    if cfg.data.scale not in (2, 4):
        raise ConfigError(f"data.scale must be 2 or 4, not {cfg.data.scale}.")
    if cfg.data.hr_patch % cfg.data.scale:
        raise ConfigError(f"data.hr_patch ({cfg.data.hr_patch}) must be a multiple of the scale.")
    if cfg.data.degradation not in ("bicubic", "realistic"):
        raise ConfigError(f"data.degradation must be 'bicubic' or 'realistic', not {cfg.data.degradation!r}.")
    if cfg.steps <= 0 or cfg.data.batch_size <= 0:
        raise ConfigError("steps and data.batch_size must be positive.")
    if cfg.optim.schedule not in ("cosine", "step"):
        raise ConfigError(f"optim.schedule must be 'cosine' or 'step', not {cfg.optim.schedule!r}.")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise ConfigError("ema_decay must be in [0, 1).")
