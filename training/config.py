"""Typed training configuration, read from YAML presets into dataclasses."""

from __future__ import annotations

import dataclasses
import math
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
    # Start from the upsampled-input residual exactly: the last convolution begins at zero, so step 0
    # outputs bicubic instead of bicubic plus noise (only with params.upsample_residual; ignored
    # when init_from loads weights).
    zero_init_last: bool = False


@dataclass
class DataConfig:
    train: str = "../shared/data/cxr14/train"
    val: str | None = "../shared/data/cxr14/val"  # None: hold out 10 % of the patients of `train`
    scale: int = 4
    hr_patch: int = 128
    batch_size: int = 16
    degradation: str = "bicubic"  # "bicubic" (x4-native protocol) or "realistic"
    realistic_fraction: float = 1.0  # with "realistic": share of patches degraded; the rest stay x4-native
    # with "realistic": fields of training.degradations.RealisticDegradation over its defaults, e.g.
    # {sigma_range: [0.2, 1.5], aliased_prob: 0.5}
    realistic: dict[str, Any] = field(default_factory=dict)
    # share of patches made as seed-128to512 makes its pairs (2x-reduced HR, aliased LR + noise;
    # see data.py), drawn before the other choices
    seed_protocol_fraction: float = 0.0
    edge_fraction: float = 0.0  # share of patches snapped to an image edge or corner (see data.py)
    hard_fraction: float = 0.0  # share of the other patches taken where bicubic errs most (see data.py)
    hard_candidates: int = 8  # uniform positions a hard patch is chosen from
    val_crops: int = 8  # fixed centre crops of val images used for validation during training
    val_crop_size: int = 256  # HR size of each validation crop
    # Protocols the training validation runs on those images (engine.evaluation.PROTOCOLS):
    # x4-native always; with seed-128to512 too, log.csv gains the same columns suffixed _seed
    # (whole images, 128 -> 512, the protocol's own noise), so a run meant for inputs that were
    # not made by clean downsampling can keep its best EMA by them (select_by: val_psnr_seed).
    val_protocols: list[str] = field(default_factory=lambda: ["x4-native"])
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
    """The GAN stage (ESRGAN paper defaults): perceptual + 5e-3 RaGAN + 1e-2 L1."""

    perceptual_weight: float = 1.0
    gan_weight: float = 5e-3
    pixel_weight: float = 1e-2
    vgg_weights: str | None = None  # local torchvision-format VGG19 file (vgg19-dcbb9e9d.pth)
    feature_loss: str = "vgg"  # "vgg" (VGG19 conv5_4) or "discriminator" (feature matching)
    d_lr: float = 1e-4  # discriminator learning rate; follows optim.schedule / milestones
    d_num_feat: int = 64  # width of the VGG-style discriminator's first stage


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
    # best_ema.pt keeps the EMA weights of the validation with the highest value of this column:
    # val_psnr (whole image) or val_psnr_interior (without the 16-pixel border, where a model's
    # frame-line redrawing does not count: the number the default model is chosen by).
    select_by: str = "val_psnr"
    # With a tolerance (dB), best_ema.pt keeps the LATEST validation within that much of the best
    # so far (a new best always, a later step that is as good to within the noise of a few
    # validation images too), so a 0.002 dB lead on 8 images does not hold back the steps after
    # it. 0 = the best only. Set it before the run: choosing after seeing the report set is not.
    select_tolerance: float = 0.0
    ckpt_every: int = 500
    # Every this many steps also keep a copy of the checkpoint as step-NNNNNN.ckpt (0 = none), so
    # several points of one run can be exported (`cxr-train export --checkpoint`) and measured
    # under protocols the training validation does not run (seed-128to512).
    keep_every: int = 0
    out_dir: str = "runs"
    init_from: str | None = None  # weights in any format engine.sr reads, or a run's checkpoint
    device: str = "auto"  # "auto" (CUDA if available), "cpu", "cuda", "cuda:N"
    val_grid: int = 4  # validation images shown in val_grid.png (0 = no grid)


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
        elif key == "betas" and isinstance(value, (list, tuple)):
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = _yaml_number(value, known[key].default)
    return cls(**kwargs)


def _yaml_number(value: Any, default: Any) -> Any:
    """YAML 1.1 reads `1e-4` (no dot) as a string: accept it where a float is expected."""
    if isinstance(default, float) and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Plain values (for config.yaml in the run folder); `config_from_dict` reads them back."""
    values = dataclasses.asdict(cfg)
    values["optim"]["betas"] = list(cfg.optim.betas)
    return values


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


def _check_type(value: Any, default: Any, where: str) -> None:
    """A YAML value must have the type of the field's default (ints pass for floats)."""
    if default is None or value is None:
        return
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(value, bool) and isinstance(default, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float))
    elif isinstance(default, (tuple, list)):
        ok = isinstance(value, (tuple, list))
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(f"Setting {where} must be a {type(default).__name__}, not {value!r}.")


def _check_types(obj: Any, prefix: str = "") -> None:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            _check_types(value, f"{f.name}.")
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        _check_type(value, default, f"{prefix}{f.name}")


# Validation columns best_ema.pt may be chosen by; the _seed ones need seed-128to512 in
# data.val_protocols.
SELECT_BY = ("val_psnr", "val_psnr_interior", "val_psnr_seed", "val_psnr_interior_seed")
VAL_PROTOCOLS = ("x4-native", "seed-128to512")  # engine.evaluation.PROTOCOLS, without importing it


def validate(cfg: TrainConfig) -> None:
    _check_types(cfg)
    if cfg.stage not in ("psnr", "gan"):
        raise ConfigError(f"stage must be 'psnr' or 'gan', not {cfg.stage!r}.")
    if cfg.precision not in ("fp32", "bf16", "fp16"):
        raise ConfigError(f"precision must be fp32, bf16 or fp16, not {cfg.precision!r}.")
    if cfg.data.scale not in (2, 4):
        raise ConfigError(f"data.scale must be 2 or 4, not {cfg.data.scale}.")
    if cfg.data.hr_patch % cfg.data.scale:
        raise ConfigError(f"data.hr_patch ({cfg.data.hr_patch}) must be a multiple of the scale.")
    if not 0.0 <= cfg.data.edge_fraction <= 1.0:
        raise ConfigError(f"data.edge_fraction ({cfg.data.edge_fraction}) must be between 0 and 1.")
    if not 0.0 <= cfg.data.seed_protocol_fraction <= 1.0:
        raise ConfigError(f"data.seed_protocol_fraction ({cfg.data.seed_protocol_fraction}) must be between 0 and 1.")
    if not 0.0 <= cfg.data.hard_fraction <= 1.0:
        raise ConfigError(f"data.hard_fraction ({cfg.data.hard_fraction}) must be between 0 and 1.")
    if cfg.data.hard_candidates < 2:
        raise ConfigError(f"data.hard_candidates ({cfg.data.hard_candidates}) must be at least 2.")
    if cfg.data.degradation not in ("bicubic", "realistic"):
        raise ConfigError(f"data.degradation must be 'bicubic' or 'realistic', not {cfg.data.degradation!r}.")
    if not 0.0 <= cfg.data.realistic_fraction <= 1.0:
        raise ConfigError(f"data.realistic_fraction ({cfg.data.realistic_fraction}) must be between 0 and 1.")
    if cfg.data.degradation != "realistic" and (cfg.data.realistic_fraction != 1.0 or cfg.data.realistic):
        raise ConfigError("data.realistic_fraction and data.realistic only apply with data.degradation: realistic (every bicubic patch is x4-native already).")
    if cfg.data.degradation == "realistic" and cfg.data.realistic:
        # SciPy and torch: imported only when asked for
        from training.degradations import RealisticDegradation

        try:
            RealisticDegradation.from_settings(cfg.data.realistic)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"data.realistic: {exc}.") from None
    if cfg.data.degradation == "realistic" and cfg.data.hr_patch < 32:
        raise ConfigError(f"data.hr_patch ({cfg.data.hr_patch}) must be at least 32 for the realistic degradation, whose blur kernels reach 21 pixels.")
    if cfg.model.zero_init_last and not cfg.model.params.get("upsample_residual"):
        raise ConfigError("model.zero_init_last needs model.params.upsample_residual (bicubic or nearest): without it the network would start by outputting zeros.")
    if cfg.steps <= 0 or cfg.data.batch_size <= 0:
        raise ConfigError("steps and data.batch_size must be positive.")
    if cfg.optim.schedule not in ("cosine", "step"):
        raise ConfigError(f"optim.schedule must be 'cosine' or 'step', not {cfg.optim.schedule!r}.")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise ConfigError("ema_decay must be in [0, 1).")
    if cfg.optim.lr <= 0 or cfg.data.workers < 0 or cfg.val_grid < 0:
        raise ConfigError("optim.lr must be positive and data.workers / val_grid not negative.")
    if min(cfg.log_every, cfg.val_every, cfg.ckpt_every) <= 0:
        raise ConfigError("log_every, val_every and ckpt_every must be positive.")
    if cfg.keep_every < 0:
        raise ConfigError("keep_every must be 0 (keep no copies) or a positive number of steps.")
    _validate_protocols(cfg)
    if not (math.isfinite(cfg.select_tolerance) and cfg.select_tolerance >= 0):
        raise ConfigError(f"select_tolerance must be 0 or a positive number of dB, not {cfg.select_tolerance!r}.")
    if cfg.select_by not in SELECT_BY:
        raise ConfigError(f"select_by must be {', '.join(SELECT_BY[:-1])} or {SELECT_BY[-1]}, not {cfg.select_by!r}.")
    if cfg.select_by.endswith("_seed") and "seed-128to512" not in cfg.data.val_protocols:
        raise ConfigError(f"select_by: {cfg.select_by} is measured only with seed-128to512 in data.val_protocols; add it there.")
    if cfg.select_by == "val_psnr_interior" and cfg.data.val_crop_size > 0:
        _check_interior_crops(cfg)
    if cfg.stage == "gan":
        _validate_gan(cfg)


def _validate_protocols(cfg: TrainConfig) -> None:
    protocols = cfg.data.val_protocols
    unknown = [p for p in protocols if p not in VAL_PROTOCOLS]
    if unknown:
        raise ConfigError(f"data.val_protocols: {unknown[0]!r} is not a protocol; use {' and/or '.join(VAL_PROTOCOLS)}.")
    if "x4-native" not in protocols or len(set(protocols)) != len(protocols):
        raise ConfigError("data.val_protocols must list x4-native (the validation every run keeps), each protocol once.")
    if "seed-128to512" in protocols and cfg.data.scale != 4:
        raise ConfigError("data.val_protocols: seed-128to512 is a x4 protocol (128 -> 512); it needs data.scale 4.")


def _check_interior_crops(cfg: TrainConfig) -> None:
    from engine.evaluation import INTERIOR_MARGIN  # skimage and SciPy behind it: only when needed

    if cfg.data.val_crop_size <= 2 * INTERIOR_MARGIN:
        raise ConfigError(f"select_by: val_psnr_interior needs validation crops larger than {2 * INTERIOR_MARGIN} "
                          f"pixels (data.val_crop_size is {cfg.data.val_crop_size}; 0 = whole images).")


def _validate_gan(cfg: TrainConfig) -> None:
    gan = cfg.gan
    if gan.feature_loss not in ("vgg", "discriminator"):
        raise ConfigError(f"gan.feature_loss must be 'vgg' or 'discriminator', not {gan.feature_loss!r}.")
    if min(gan.perceptual_weight, gan.gan_weight, gan.pixel_weight) < 0 or gan.d_lr <= 0 or gan.d_num_feat <= 0:
        raise ConfigError("gan loss weights must not be negative and gan.d_lr / gan.d_num_feat must be positive.")
    patch = cfg.data.hr_patch
    if patch < 32 or patch & (patch - 1):
        raise ConfigError(f"data.hr_patch ({patch}) must be a power of two >= 32 for the discriminator (the paper uses 128).")
    if not cfg.init_from:
        raise ConfigError("The gan stage starts from a PSNR model: set init_from to its weights or run checkpoint (or pass --init-from).")
