"""A model's training history across runs: its validation gain over bicubic as one curve.

A shipped model is often trained in several runs, each starting from the weights the one before it
exported (`cpu-fidelity`, then `cpu-fidelity-continue` again and again). Each run's `log.csv`
counts its own steps; `cxr-train lineage` lays the runs end to end, draws the whole-image and
interior gain over bicubic on the runs' validation images, and, with `--reference MODEL`, the
same two numbers for another model measured on the same images by the same code, so the plot
answers "how far is this model from that one, and how fast is it closing".

  cxr-train lineage runs/cpu-fidelity runs/cpu-fidelity-2 ... --reference cxr-fast-x4 --out curve.png
  cxr-train lineage cxr-fidelity-x4 --reference cxr-fast-x4 --out curve.png

Run folders are not kept in git and can be lost with a machine, so export copies each run's
validation rows into the model card (`training.validation`), and later exports carry them on in
`training.lineage`: a model's name is enough to draw every run that trained it. Runs exported
before that keep only what was recorded of them, drawn dashed.

Runs validated on different images cannot share a curve: their bicubic PSNR differs, and that is
refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from training.config import ConfigError, config_from_dict
from training.report import read_log, wall_time_s

# Two runs validated the same images when their bicubic PSNR agrees to this (log.csv keeps 4 decimals).
SAME_BICUBIC_DB = 1e-3


@dataclass
class Segment:
    """One run, placed on the lineage's step axis."""

    name: str
    offset: int  # lineage step at which the run started
    steps: int  # the run's last logged step
    wall_s: float
    bicubic_psnr: float | None
    whole: list[tuple[int, float]] = field(default_factory=list)  # (lineage step, gain dB)
    interior: list[tuple[int, float]] = field(default_factory=list)
    complete: bool = True  # False: only some validation rows survive (a card record saying so)
    images: dict[str, Any] | None = None  # the validation images, when a card record names them

    @property
    def end(self) -> int:
        return self.offset + self.steps


def read_lineage(sources: list[Path | str]) -> list[Segment]:
    """The runs in training order, end to end; ConfigError for a missing log or another val set.

    A source is a run folder (its log.csv) or a model card (a card file, weights file or installed
    model name), which stands for every run in its `training.lineage` and then its own run, read
    from the validation rows export keeps in each record (`training.validation`).
    """
    segments: list[Segment] = []
    offset = 0
    for source in sources:
        for run in _runs_of(source):
            if any(s.name == run.name for s in segments):
                raise ConfigError(f"The run {run.name} appears twice (a model card already holds the runs "
                                  "it descends from); name it once.")
            segment = replace(run, offset=offset, whole=[(offset + s, v) for s, v in run.whole],
                              interior=[(offset + s, v) for s, v in run.interior])
            _check_same_images(segments, segment)
            segments.append(segment)
            offset += run.steps
    return segments


def _segment(name: str, steps: int, wall_s: float, series: dict[str, list[tuple[int, float]]],
             complete: bool, images: dict[str, Any] | None) -> Segment:
    """One run at offset 0, from its validation series {column: [(run step, value)]}."""
    bicubic = series.get("bicubic_psnr", [])
    return Segment(name=name, offset=0, steps=steps, wall_s=wall_s, bicubic_psnr=bicubic[-1][1] if bicubic else None,
                   whole=series.get("gain_db", []), interior=series.get("gain_interior_db", []),
                   complete=complete, images=images)


def _runs_of(source: Path | str) -> list[Segment]:
    from training.export import run_config, validation_images

    path = Path(source)
    if path.is_dir():
        series = read_log(path)
        if not series:
            raise ConfigError(f"{path} has no log.csv; name the run folders the model was trained in.")
        steps = max(step for points in series.values() for step, _ in points)
        cfg = run_config(path)
        return [_segment(path.name, steps, wall_time_s(path), series, True,
                         validation_images(cfg) if cfg is not None else None)]
    from engine.sr.registry import ModelNotFound, find_model

    try:
        card = find_model(source).card
    except (ModelNotFound, ValueError):
        card = None
    if card is None:
        raise ConfigError(f"{source} has no log.csv and is no model card; name the run folders the model "
                          "was trained in, or its model.")
    training = card.training
    return [_card_run(record, card.name) for record in [*training.get("lineage", []), training]]


def _card_run(record: dict[str, Any], model: str) -> Segment:
    """One run from a card's training record and the validation rows it keeps."""
    name = record.get("run") or model
    steps = int(record.get("steps_trained") or record.get("steps") or 0)
    history = record.get("validation") or {}
    columns = history.get("columns", [])
    series: dict[str, list[tuple[int, float]]] = {}
    for row in history.get("rows", []):
        values = dict(zip(columns, row, strict=False))
        for key, value in values.items():
            if key != "step" and value is not None:
                series.setdefault(key, []).append((int(values["step"]), float(value)))
    if steps <= 0:
        raise ConfigError(f"The card of {model} does not say how many steps its run {name} trained.")
    return _segment(name, steps, float(record.get("wall_time_s") or 0.0), series,
                    bool(history.get("complete", False)), history.get("images"))


def _check_same_images(before: list[Segment], segment: Segment) -> None:
    known = [s for s in before if s.bicubic_psnr is not None]
    if not known or segment.bicubic_psnr is None:
        return
    first = known[0]
    if abs(first.bicubic_psnr - segment.bicubic_psnr) > SAME_BICUBIC_DB:
        raise ConfigError(
            f"{segment.name} was validated on other images than {first.name} (bicubic "
            f"{segment.bicubic_psnr:.4f} dB against {first.bicubic_psnr:.4f}); their gains cannot "
            "share a curve: leave one of them out."
        )


def reference_gains(model: str | Path, cfg: Any) -> tuple[str, dict[str, float]]:
    """(model name, its gain over bicubic on a run's validation images, computed as the trainer does)."""
    from engine.sr.registry import ModelNotFound, find_model
    from engine.sr.weights import load_model
    from training.data import load_pairs, train_val_files, val_crops
    from training.report import run_model
    from training.trainer import bicubic_upsample, quality, validation_summary

    try:
        info = find_model(model)
    except ModelNotFound as exc:
        raise ConfigError(f"{exc} (the --reference model)") from None
    network, _ = load_model(info.weights_path, card=info.card)
    data = cfg.data
    files = train_val_files(data.train, data.val, cfg.seed)[1]
    pairs = val_crops(load_pairs(files, data.scale, data.val_crops), data.scale, data.val_crop_size,
                      data.val_crops)
    if not pairs:
        raise ConfigError(f"The run's validation folder {data.val} has no images.")
    rows = [(quality(run_model(network, p.lr), p.hr / 255.0),
             quality(bicubic_upsample(p.lr, data.scale), p.hr / 255.0)) for p in pairs]
    return info.name, validation_summary(rows)


def format_lineage(segments: list[Segment], references: dict[str, dict[str, float]] | None = None) -> str:
    """One line per run: its steps and hours, and the gains it started and ended at."""

    def span(points: list[tuple[int, float]]) -> str:
        if not points:
            return "-"
        return f"{points[0][1]:+.3f} -> {points[-1][1]:+.3f}"

    lines = [f"{'run':<24} {'steps':>11} {'hours':>6}  {'whole gain dB':<18} interior gain dB"]
    for s in segments:
        name = s.name if s.complete else f"{s.name} *"
        lines.append(f"{name:<24} {s.offset:>5}-{s.end:<5} {s.wall_s / 3600:>6.2f}  "
                     f"{span(s.whole):<18} {span(s.interior)}")
    total_h = sum(s.wall_s for s in segments) / 3600
    lines.append(f"{'all':<24} {segments[-1].end if segments else 0:>11} {total_h:>6.2f}")
    if not all(s.complete for s in segments):
        lines.append("* its model card keeps only some (or none) of this run's validation rows; the plot "
                     "joins those it has with a dashed line")
    for name, gains in (references or {}).items():
        interior = gains.get("gain_interior_db")
        lines.append(f"reference {name}: whole {gains['gain_db']:+.3f} dB"
                     + (f", interior {interior:+.3f} dB" if interior is not None else "")
                     + f" (same images, bicubic {gains['bicubic_psnr']:.4f} dB)")
    return "\n".join(lines)


def write_lineage_plot(segments: list[Segment], out: Path, references: dict[str, dict[str, float]] | None = None,
                       title: str = "") -> Path:
    """Whole-image and interior gain over bicubic against the lineage step, runs marked."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, (ax_whole, ax_inner) = plt.subplots(1, 2, figsize=(12, 4.2), sharex=True)
    for ax, key, label in ((ax_whole, "whole", "whole image"), (ax_inner, "interior", "interior")):
        labelled: set[bool] = set()  # one legend entry per line style, on the first run drawn with it
        for i, s in enumerate(segments):
            points = getattr(s, key)
            if points:
                steps, gains = zip(*points, strict=True)
                name = "model (EMA)" if s.complete else "model (EMA), some validation rows lost"
                ax.plot(steps, gains, "-o" if s.complete else "--o", color="C0", markersize=3,
                        alpha=1.0 if s.complete else 0.6, label=None if s.complete in labelled else name)
                labelled.add(s.complete)
            if i:
                ax.axvline(s.offset, color="0.8", linewidth=0.8, zorder=0)
        for j, (name, gains) in enumerate((references or {}).items()):
            value = gains.get("gain_db" if key == "whole" else "gain_interior_db")
            if value is not None:
                ax.axhline(value, linestyle="--", color=f"C{j + 1}", label=f"{name} ({value:+.2f})")
        ax.set(xlabel="step, all runs end to end (grey lines: a new run)", ylabel="dB over bicubic",
               title=f"validation gain, {label} (x4-native)")
        ax.legend(loc="best")  # the curves rise from the lower left; let matplotlib find the empty corner
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def lineage(sources: list[Path | str], out: Path | None, references: list[str], title: str = "") -> str:
    """`cxr-train lineage`: the table (returned) and, with `out`, the plot."""
    segments = read_lineage(sources)
    measured: dict[str, dict[str, float]] = {}
    if references:
        cfg = _validation_config(segments[-1])
        for name in references:
            name, gains = reference_gains(name, cfg)
            last = segments[-1].bicubic_psnr
            if last is not None and abs(gains["bicubic_psnr"] - last) > SAME_BICUBIC_DB:
                raise ConfigError(f"The reference was measured on other images than {segments[-1].name} "
                                  f"(bicubic {gains['bicubic_psnr']:.4f} against {last:.4f} dB).")
            measured[name] = gains
    if out is not None:
        write_lineage_plot(segments, out, measured, title)
    return format_lineage(segments, measured)


def _validation_config(last: Segment) -> Any:
    """The last run's validation images, from its folder's config.yaml or its card record."""
    if last.images is None:
        raise ConfigError(f"Neither a config.yaml nor the model card says which images {last.name} was validated "
                          "on; leave out --reference, or name that run's folder last.")
    images = dict(last.images)
    return config_from_dict({"seed": images.pop("seed", 0), "data": images})
