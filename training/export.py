"""From a run to an installable model: weights as safetensors + a model card (engine.sr.weights).

`export_run` takes a run's best EMA weights (or its last checkpoint's EMA) and writes the card a
reviewer needs: architecture, scale, input convention, training data with the NIH attribution,
degradation, steps, compute, wall time, the git commit and validation metrics against bicubic.
`interpolate` blends a PSNR and a GAN generator (ESRGAN section 3.4) into a third model.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from engine.resources import models_dir
from engine.sr.archs import build_model
from engine.sr.card import ModelCard
from engine.sr.weights import WeightsError, detect, file_sha256, model_hparams, save_model
from training.checkpoints import CHECKPOINT_NAME, GeneratorWeights, load_run_file, read_generator
from training.config import ConfigError, TrainConfig, config_from_dict, load_config
from training.report import read_log, steps_per_second, wall_time_s
from training.trainer import ALL_VAL_COLUMNS, INIT_CARD_NAME, RUN_INFO_NAME, SEED_SUFFIX, git_commit

NIH_ATTRIBUTION = (
    "NIH ChestX-ray14, https://nihcc.app.box.com/v/ChestXray-NIHCC; Wang et al., \"ChestX-ray8: "
    "Hospital-scale Chest X-ray Database and Benchmarks\", CVPR 2017; images provided by the NIH "
    "Clinical Center."
)
DEGRADATIONS = {
    "bicubic": "x4-native: PIL antialiased bicubic reduction of the 8-bit image, LR kept 8-bit",
    "realistic": "random Gaussian blur (isotropic/anisotropic), random resize kernel, Gaussian or "
                 "Poisson noise, JPEG at random quality (training.degradations)",
    "seed-protocol": "as seed-128to512 makes its pairs, at patch size: a crop of the original reduced x2 (HR) "
                     "and x(2 x scale) (LR), torch bicubic without antialiasing, N(0, 0.005) on the float LR",
}


def run_config(run_dir: Path) -> TrainConfig | None:
    """The config a run was trained with (config.yaml, written at the start of each session)."""
    import yaml

    path = run_dir / "config.yaml"
    if not path.is_file():
        return None
    return config_from_dict(yaml.safe_load(path.read_text()) or {})


def _architecture(weights: GeneratorWeights, cfg: TrainConfig | None) -> tuple[str, dict[str, Any]]:
    if weights.arch and weights.params is not None:
        return weights.arch, dict(weights.params)
    if cfg is not None:
        return cfg.model.arch, dict(cfg.model.params)
    return detect(weights.state)  # cannot see upsample_residual: only for foreign files


def _build(arch: str, params: dict[str, Any], state: dict[str, torch.Tensor], source: Path) -> torch.nn.Module:
    model = build_model(arch, params)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError:
        raise WeightsError(f"The weights in {source} do not fit {arch} with {params}.") from None
    return model.eval()


def _training_info(run_dir: Path, cfg: TrainConfig | None, weights: GeneratorWeights,
                   parent: dict[str, Any] | None, command: str | None = None,
                   export_command: str | None = None) -> dict[str, Any]:
    """The card's `training` record. `command` (the training command line) defaults to the ones
    run.json recorded for the run's sessions; `export_command` is appended after them."""
    info_path = run_dir / RUN_INFO_NAME
    sessions = json.loads(info_path.read_text()).get("sessions", []) if info_path.is_file() else []
    last = load_run_file(run_dir / CHECKPOINT_NAME) if (run_dir / CHECKPOINT_NAME).is_file() else {}
    data: dict[str, Any] = {"source": "NIH ChestX-ray14 chest radiographs (8-bit PNG, 1024x1024)"}
    if cfg is not None:
        data.update(train=cfg.data.train, val=cfg.data.val, max_images=cfg.data.max_images,
                    hr_patch=cfg.data.hr_patch, batch_size=cfg.data.batch_size)
    wall = wall_time_s(run_dir)
    speed = steps_per_second(run_dir)
    compute = sorted({f"{s['processes']} x {s['device_name'] or s['device']} ({s['device']}, "
                      f"{s['threads']} thread{'' if s['threads'] == 1 else 's'}), {s['precision']}, torch {s['torch']}" for s in sessions})
    if speed:
        batch = f" at batch {cfg.data.batch_size} x {cfg.data.hr_patch}^2 HR patches" if cfg is not None else ""
        compute.append(f"{speed['median']:.2f} it/s median ({speed['min']:.2f}-{speed['max']:.2f}){batch}")
    info = {
        "stage": cfg.stage if cfg is not None else last.get("stage", "psnr"),
        "run": run_dir.name,
        "data": data,
        "attribution": NIH_ATTRIBUTION,
        "degradation": _describe_degradation(cfg),
        "steps": weights.step if weights.step is not None else last.get("step"),
        # Without last.ckpt (a run brought back by `cxr-train unbundle`), the log's last step.
        "steps_trained": last.get("step", max((s for series in read_log(run_dir).values() for s, _ in series),
                                              default=None)),
        "compute": "; ".join(compute) or "unknown (run.json missing)",
        "wall_time": f"{wall / 3600:.2f} h",
        "wall_time_s": round(wall, 1),
        "steps_per_second": speed,
        "commit": git_commit(),
        "trained_at_commits": sorted({s["commit"] for s in sessions}),
        "init_from": cfg.init_from if cfg is not None else None,
    }
    commands = [command] if command else list(dict.fromkeys(s["command"] for s in sessions if s.get("command")))
    if export_command:
        commands.append(export_command)
    if commands:
        info["command"] = "; then ".join(commands)
    history = validation_history(run_dir, cfg)
    if history:
        info["validation"] = history
    if cfg is not None:
        info["edge_fraction"] = cfg.data.edge_fraction
        if cfg.data.hard_fraction:  # absent on cards of runs that never used it
            info["hard_fraction"] = cfg.data.hard_fraction
            info["hard_candidates"] = cfg.data.hard_candidates
        if cfg.data.seed_protocol_fraction:  # absent on cards of runs that never used it
            info["seed_protocol_fraction"] = cfg.data.seed_protocol_fraction
        if cfg.data.degradation == "realistic":
            info["realistic_fraction"] = cfg.data.realistic_fraction
            info["realistic"] = cfg.data.realistic
    return _with_lineage(info, parent)


def _describe_degradation(cfg: TrainConfig | None) -> str:
    """The card's one-line account of how the LR of each training patch was made."""
    text = _describe_lr(cfg)
    if cfg is None or not cfg.data.seed_protocol_fraction:
        return text
    return (f"seed-protocol on {cfg.data.seed_protocol_fraction:.0%} of the patches: {DEGRADATIONS['seed-protocol']}; "
            f"of the others, {text}")


def _describe_lr(cfg: TrainConfig | None) -> str:
    if cfg is None or cfg.data.degradation != "realistic":
        return f"bicubic: {DEGRADATIONS['bicubic']}"
    chain = DEGRADATIONS["realistic"]
    if cfg.data.realistic:
        chain += f", with {json.dumps(cfg.data.realistic, sort_keys=True)} over its defaults"
    if cfg.data.realistic_fraction >= 1.0:
        return f"realistic: {chain}"
    return (f"realistic on {cfg.data.realistic_fraction:.0%} of the patches: {chain}; "
            f"the rest bicubic: {DEGRADATIONS['bicubic']}")


def _parent_card(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / INIT_CARD_NAME
    return json.loads(path.read_text()) if path.is_file() else None


def _with_lineage(info: dict[str, Any], parent: dict[str, Any] | None) -> dict[str, Any]:
    """Add the runs the weights descend from (oldest first) and the totals over all of them.

    A run that starts from shipped weights (init_from) keeps their card; its training record,
    with the parent's own lineage, becomes this card's `lineage`, so one card says everything that
    went into the weights.
    """
    if parent is None:
        return info
    record = dict(parent.get("training", {}))
    lineage = record.pop("lineage", [])
    for key in ("steps_total", "wall_time_total", "wall_time_total_s"):
        record.pop(key, None)
    record.update(model=parent.get("name"), sha256=parent.get("sha256"))
    lineage = [*lineage, record]
    steps = [r.get("steps_trained") or r.get("steps") or 0 for r in lineage]
    walls = [r.get("wall_time_s") or 0.0 for r in lineage]
    total_wall = sum(walls) + (info.get("wall_time_s") or 0.0)
    return {**info, "lineage": lineage,
            "steps_total": sum(steps) + (info.get("steps_trained") or 0),
            "wall_time_total": f"{total_wall / 3600:.2f} h", "wall_time_total_s": round(total_wall, 1)}


def _logged_rows(run_dir: Path) -> dict[int, dict[str, float]]:
    """log.csv's validation rows by step."""
    rows: dict[int, dict[str, float]] = {}
    for key, points in read_log(run_dir).items():
        if key.startswith(("val_", "bicubic_", "gain_")):
            for s, value in points:
                rows.setdefault(s, {})[key] = value
    return rows


def _logged_val(run_dir: Path, step: int | None) -> dict[str, float]:
    """Validation of the exported step from log.csv (last.ckpt carries no metrics of its own)."""
    return _logged_rows(run_dir).get(step, {}) if step is not None else {}


def validation_history(run_dir: Path, cfg: TrainConfig | None) -> dict[str, Any] | None:
    """Every validation row of the run's log.csv, for the card's `training.validation`.

    The card outlives the run folder (runs/ is not kept in git, and a machine can be lost with
    it), and each later export carries this record on in `training.lineage`, so `cxr-train
    lineage MODEL` can draw the whole training history from the card alone. With the config, the
    record also names the validation images, so a reference model can be measured on them.
    """
    rows = _logged_rows(run_dir)
    if not rows:
        return None
    columns = [c for c in ALL_VAL_COLUMNS if any(c in r for r in rows.values())]
    history: dict[str, Any] = {
        "columns": ["step", *columns],
        "rows": [[step, *(round(r[c], 4) if c in r else None for c in columns)] for step, r in sorted(rows.items())],
        "complete": True,
    }
    if cfg is not None:
        history["images"] = validation_images(cfg)
    return history


def validation_images(cfg: TrainConfig) -> dict[str, Any]:
    """The settings that pick a run's validation images (`training.lineage.validation_config` reads them)."""
    return {"train": cfg.data.train, "val": cfg.data.val, "scale": cfg.data.scale,
            "val_crops": cfg.data.val_crops, "val_crop_size": cfg.data.val_crop_size, "seed": cfg.seed}


def _metrics(weights: GeneratorWeights, cfg: TrainConfig | None, run_dir: Path) -> dict[str, Any]:
    val = weights.val or _logged_val(run_dir, weights.step)
    if not val:
        return {}
    where: dict[str, Any] = {"protocol": "x4-native"}
    if cfg is not None:
        crop = cfg.data.val_crop_size
        where.update(val=cfg.data.val or "held-out patients of data.train", images=cfg.data.val_crops,
                     crop=f"{crop}x{crop} HR centre crops" if crop else "whole images")
    # Validation during training (a few images, crops or whole): `cxr-enhance eval --update-card`
    # adds the full protocols beside it. Columns measured under seed-128to512 (data.val_protocols)
    # go in their own entry, under their protocol's column names.
    during = {**where, **{k: round(v, 4) for k, v in val.items() if k != "loss" and not k.endswith(SEED_SUFFIX)}}
    seed = {k[: -len(SEED_SUFFIX)]: round(v, 4) for k, v in val.items() if k.endswith(SEED_SUFFIX)}
    if seed:
        images = {"images": where["images"]} if "images" in where else {}
        during["seed-128to512"] = {"protocol": "seed-128to512", **images, "crop": "whole images", **seed}
    return {"during_training": during}


def export_run(run_dir: str | Path, out_dir: str | Path | None = None, *, name: str | None = None,
               title: str = "", default: bool = False, dtype: str = "fp16", config: str | None = None,
               note: str = "", command: str | None = None, export_command: str | None = None,
               checkpoint: str | Path | None = None) -> ModelCard:
    """Write `<name>.safetensors` + `<name>.json` for the run's best EMA generator.

    `config` (file or preset) describes runs older than the config.yaml each run now keeps; `note`
    is added to the card's notes (why these weights ship); `command` names the training command of
    runs whose run.json predates recording it. `checkpoint` exports another of the run's files
    instead of best_ema.pt: `last.ckpt`, or a copy of it kept at some step (a path, or a name in
    the run folder), e.g. to compare two runs at an equal step.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"The run folder {run_dir} does not exist; name a folder under runs/.")
    weights = read_generator(_checkpoint_path(run_dir, checkpoint) if checkpoint else run_dir)
    cfg = load_config(config) if config else run_config(run_dir)
    arch, params = _architecture(weights, cfg)
    model = _build(arch, params, weights.state, weights.source)
    parent = _parent_card(run_dir)
    name = name or run_dir.name
    card = ModelCard(
        name=name, title=title or name, architecture=arch, params=params,
        training=_training_info(run_dir, cfg, weights, parent, command, export_command),
        metrics=_metrics(weights, cfg, run_dir),
        licence="Apache-2.0 (weights); training images: NIH Clinical Center, no restriction on use, attribution required",
        notes=" ".join(filter(None, [f"EMA weights from {weights.source.name} of run {run_dir.name}.", note.strip()])),
        default=default,
        extra=_inherited_speed(parent, *model_hparams(model)),
    )
    return _save(model, Path(out_dir or models_dir()) / f"{name}.safetensors", card, dtype)


def _checkpoint_path(run_dir: Path, checkpoint: str | Path) -> Path:
    path = Path(checkpoint).expanduser()
    if not path.is_file() and (run_dir / path).is_file():
        path = run_dir / path
    if not path.is_file():
        raise ConfigError(f"The checkpoint {checkpoint} is neither a file nor in {run_dir}; "
                          "name last.ckpt, best_ema.pt, a step-NNNNNN.ckpt that keep_every kept, or the path of a saved copy.")
    return path


def _inherited_speed(parent: dict[str, Any] | None, arch: str, params: dict[str, Any]) -> dict[str, Any]:
    """The parent card's speed table when the network is the same one (speed does not depend on
    the weights); `cxr-enhance bench --update-card` re-measures it."""
    if parent is None or "speed" not in parent:
        return {}
    if (parent.get("architecture"), parent.get("params")) != (arch, params):
        return {}
    return {"speed": parent["speed"]}


def _save(model: torch.nn.Module, path: Path, card: ModelCard, dtype: str) -> ModelCard:
    before = _existing_card(path)
    card = save_model(model, path, card, dtype=dtype, write_card=False)
    if before is not None and before.sha256 == card.sha256:
        card = _keep_measurements(card, before)
    card.save(path.with_suffix(".json"))
    if card.default:
        _clear_other_defaults(path.parent, card.name)
    return card


def _existing_card(weights: Path) -> ModelCard | None:
    try:
        return ModelCard.load(weights.with_suffix(".json"))
    except (OSError, ValueError):
        return None


def _keep_measurements(card: ModelCard, before: ModelCard) -> ModelCard:
    """Exporting the same weights again (to change the title, notes or default mark) keeps what
    `cxr-enhance eval` and `bench --update-card` measured on them: same sha256, same numbers."""
    metrics = {**{k: v for k, v in before.metrics.items() if k != "during_training"}, **card.metrics}
    extra = {**card.extra, **({"speed": before.extra["speed"]} if "speed" in before.extra else {})}
    return replace(card, metrics=metrics, extra=extra)


def _clear_other_defaults(folder: Path, keep: str) -> None:
    """One default per folder: the registry picks the card that says `"default": true`."""
    for other in folder.glob("*.json"):
        try:
            card = ModelCard.load(other)
        except ValueError:
            continue
        if card.default and card.name != keep:
            replace(card, default=False).save(other)


def blend(psnr: dict[str, torch.Tensor], gan: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """theta = (1 - alpha) * theta_PSNR + alpha * theta_GAN, key by key (same architecture)."""
    if psnr.keys() != gan.keys():
        missing = sorted(psnr.keys() ^ gan.keys())[0]
        raise WeightsError(f"The two models have different layers (e.g. {missing!r}); interpolate only models of one architecture.")
    out = {}
    for key, a in psnr.items():
        b = gan[key]
        if a.shape != b.shape:
            raise WeightsError(f"{key} is {tuple(a.shape)} in the PSNR model but {tuple(b.shape)} in the GAN model; use models of one architecture.")
        if a.dtype.is_floating_point:
            out[key] = ((1.0 - alpha) * a.double() + alpha * b.double()).to(torch.float32)
        else:
            out[key] = b.clone()
    return out


def interpolate(psnr_path: str | Path, gan_path: str | Path, alpha: float, out: str | Path, *,
                name: str | None = None, title: str = "", default: bool = False, dtype: str = "fp16") -> ModelCard:
    """Network interpolation (ESRGAN 3.4): a fidelity/realism dial without retraining."""
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha must be between 0 (the PSNR model) and 1 (the GAN model), not {alpha}.")
    psnr, gan = read_generator(psnr_path), read_generator(gan_path)
    arch, params = _canonical(*_architecture(gan, None))
    if psnr.arch and _canonical(psnr.arch, psnr.params or {}) != (arch, params):
        raise WeightsError(f"{psnr_path} is {psnr.arch} {psnr.params} but {gan_path} is {arch} {params}; interpolate models of one architecture.")
    model = _build(arch, params, blend(psnr.state, gan.state, alpha), Path(gan_path))
    out = Path(out)
    if out.suffix != ".safetensors":
        out = out / f"{name or 'interpolated'}.safetensors"
    name = name or out.stem
    card = ModelCard(
        name=name, title=title or f"{name} (alpha {alpha:g})", architecture=arch, params=params,
        training={"method": "network interpolation (ESRGAN section 3.4): (1 - alpha) PSNR + alpha GAN",
                  "alpha": alpha, "psnr_model": _describe(psnr), "gan_model": _describe(gan),
                  "attribution": _attribution(psnr, gan), "commit": git_commit()},
        licence=_licence(psnr, gan), notes=f"alpha {alpha:g}: 0 = the PSNR model, 1 = the GAN model.", default=default,
    )
    return _save(model, out, card, dtype)


def _canonical(arch: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Every hyper-parameter spelled out, so two spellings of one network compare equal."""
    return model_hparams(build_model(arch, params))


def _describe(weights: GeneratorWeights) -> dict[str, Any]:
    desc: dict[str, Any] = {"file": str(weights.source), "sha256": file_sha256(weights.source)}
    if weights.card is not None:
        desc["name"] = weights.card.name
    if weights.step is not None:
        desc["step"] = weights.step
    return desc


def _attribution(*sources: GeneratorWeights) -> str:
    """Our run files were trained on NIH images; model files say so (or not) in their cards."""
    texts = {NIH_ATTRIBUTION if s.card is None else s.card.training.get("attribution") or
             f"see the model card of {s.source.name}" for s in sources}
    return " ".join(sorted(texts))


def _licence(*sources: GeneratorWeights) -> str:
    licences = {s.card.licence for s in sources if s.card is not None and s.card.licence}
    return "; ".join(sorted(licences)) or "Apache-2.0 (weights); training images: NIH Clinical Center, attribution required"
