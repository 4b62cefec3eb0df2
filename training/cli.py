"""`cxr-train`: reproduce the CXR Enhance models.

  cxr-train psnr --config cpu-fast [--resume] [--steps N] [--max-minutes M] [--set data.workers=2]
  cxr-train gan --config gan --init-from runs/gpu-full [--resume]
  cxr-train interpolate --psnr runs/gpu-full --gan runs/gan --alpha 0.8 --out resources/models/x.safetensors
  cxr-train export runs/cpu-fast [--out DIR] [--name NAME] [--default] [--note TEXT]
  cxr-train report runs/cpu-fast
  cxr-train lineage runs/cpu-fidelity runs/cpu-fidelity-2 [--reference cxr-fast-x4] [--out curve.png]
  cxr-train lineage cxr-fidelity-x4 [runs/unexported-run] ...   (the runs its card lists)
  cxr-train eval-chain ../shared/data/cxr14/val --model cxr-robust-x4 [--chain mild|default] [--json-out F]
  cxr-train pack-data [--parts N]; cxr-train bundle RUN --out DIR; cxr-train unbundle DIR --run-dir RUN
                (a GPU lent for minutes at a time: training/device_train.sh, training/README.md)

Several processes (GPUs or CPU nodes): torchrun --nproc_per_node N -m training.cli psnr ...
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any


def _parse_set(items: list[str]) -> dict[str, Any]:
    import yaml

    from training.config import ConfigError

    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set takes key=value (e.g. data.workers=2), not {item!r}.")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def _train_parser(sub: Any, name: str, help_text: str, preset: str) -> None:
    p = sub.add_parser(name, help=help_text)
    p.add_argument("--config", default=preset, help=f"YAML file or preset name (default {preset})")
    p.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    p.add_argument("--steps", type=int, default=None, help="stop at this total step count")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set data.workers=2 (repeatable)")
    p.add_argument("--run-dir", default=None, help="run folder (default out_dir/name)")
    p.add_argument("--max-minutes", type=float, default=None, metavar="M",
                   help="stop after M minutes of training with a validation and a checkpoint; "
                        "--resume goes on (for machines lent by the call)")
    if name == "gan":
        p.add_argument("--init-from", default=None, help="PSNR model: run folder, checkpoint or weights file")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cxr-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub, "psnr", "PSNR-oriented stage (L1)", "cpu-fast")
    _train_parser(sub, "gan", "GAN stage (perceptual + RaGAN + L1), from a PSNR model", "gan")

    p = sub.add_parser("interpolate", help="blend a PSNR and a GAN model (ESRGAN network interpolation)")
    p.add_argument("--psnr", required=True, help="PSNR model: run folder, checkpoint or weights file")
    p.add_argument("--gan", required=True, help="GAN model: run folder, checkpoint or weights file")
    p.add_argument("--alpha", type=float, required=True, help="0 = PSNR model, 1 = GAN model")
    p.add_argument("--out", required=True, help="output .safetensors file (or a folder)")
    _card_options(p)

    p = sub.add_parser("export", help="run's best EMA weights -> safetensors + model card")
    p.add_argument("run_dir", help="the run folder, e.g. runs/cpu-fast")
    p.add_argument("--out", default=None, help="folder for the model (default resources/models)")
    p.add_argument("--config", default=None, help="config, when the run folder has no config.yaml")
    p.add_argument("--note", default="", help="text added to the card's notes (why these weights ship)")
    p.add_argument("--train-command", default=None,
                   help="the training command, for runs whose run.json does not record it")
    p.add_argument("--checkpoint", default=None,
                   help="export this run file instead of best_ema.pt: last.ckpt, a step-NNNNNN.ckpt kept by keep_every, "
                        "or another saved copy")
    _card_options(p)

    p = sub.add_parser("pack-data", help="a training subset in parts that each fit one call of a lent GPU machine")
    p.add_argument("--train", default="../shared/data/cxr14/train")
    p.add_argument("--val", default="../shared/data/cxr14/val")
    p.add_argument("--out", default="runs/devdata", help="folder to create (an ignored path, carried by the call)")
    p.add_argument("--max-mib", type=float, default=None,
                   help="MiB one call may carry (default: 64 less the tracked tree and 2 MiB)")
    p.add_argument("--parts", type=int, default=1, help="parts, one per call (default 1)")
    p.add_argument("--val-images", type=int, default=8, help="the first N val images, as data.val_crops takes them")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("bundle", help="a run's best EMA weights (fp16 parts) and small files, to bring back")
    p.add_argument("run_dir")
    p.add_argument("--out", required=True, help="folder for at most 8 files of at most 16 MiB (the device's $OUT)")

    p = sub.add_parser("unbundle", help="rebuild a run folder here from a bundle, checking every sha256")
    p.add_argument("src", help="the folder the device call brought back")
    p.add_argument("--run-dir", required=True, help="new run folder, e.g. runs/gpu-fidelity-1")

    p = sub.add_parser("report", help="write progress.png and val_grid.png for a run")
    p.add_argument("run_dir")
    p.add_argument("--config", default=None, help="config, when the run folder has no config.yaml")

    p = sub.add_parser("eval-chain", help="models against bicubic on val images degraded by the realistic chain")
    p.add_argument("inputs", nargs="+", help="images or folders, e.g. ../shared/data/cxr14/val")
    p.add_argument("--model", action="append", default=[], help="installed model name or weights file (repeatable)")
    p.add_argument("--chain", choices=("mild", "default"), default="mild",
                   help="mild: the chain cpu-robust trains on (default); default: Real-ESRGAN's ranges")
    p.add_argument("--seed", type=int, default=0, help="seeds each image's chain with its name (default 0)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto")
    p.add_argument("--device", default="auto")
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    p.add_argument("--json-out", default=None, help="write per-image results (readable by cxr-enhance compare)")

    p = sub.add_parser("lineage", help="a model's validation gain over all the runs that trained it, end to end")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_OR_MODEL",
                   help="run folders in training order; a model (name or card) stands for all the runs its card lists")
    p.add_argument("--reference", action="append", default=[], metavar="MODEL",
                   help="also measure this model on the same validation images (repeatable)")
    p.add_argument("--out", default=None, help="write the plot to this PNG")
    p.add_argument("--title", default="", help="the plot's title")
    return parser


def _card_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", default=None, help="model name (file stem)")
    p.add_argument("--title", default="", help="title shown in the viewer")
    p.add_argument("--default", action="store_true", help="mark as the default model of its folder")
    p.add_argument("--dtype", choices=("fp16", "fp32"), default="fp16")


def _train(args: argparse.Namespace) -> int:
    from training.config import ConfigError, load_config
    from training.trainer import CHECKPOINT_NAME

    if args.max_minutes is not None and not args.max_minutes > 0:
        raise ConfigError(f"--max-minutes takes a positive number of minutes, not {args.max_minutes:g}.")
    overrides = _parse_set(args.set)
    if getattr(args, "init_from", None):
        overrides["init_from"] = args.init_from
    cfg = load_config(args.config, overrides)
    if cfg.stage != args.command:  # the trainer follows the command, so they must agree
        # The command used to override the config's stage: a gan preset run by `cxr-train psnr`
        # (as a script hard-coding the command would) became L1 training without a word.
        if "stage" in overrides:
            raise ConfigError(f"--set stage={cfg.stage} does not match `cxr-train {args.command}`: "
                              f"run `cxr-train {cfg.stage}` for the {cfg.stage} stage.")
        raise ConfigError(f"{args.config} is a {cfg.stage}-stage config: run it with `cxr-train "
                          f"{cfg.stage}`, or add --set stage={args.command} to train it as the "
                          f"{args.command} stage.")
    if args.command == "gan":
        from training.gan import GanTrainer as TrainerClass
    else:
        from training.trainer import Trainer as TrainerClass
    trainer = TrainerClass(cfg, args.run_dir)
    trainer.command = args.command_line
    try:
        ckpt = trainer.run_dir / CHECKPOINT_NAME
        if args.resume and ckpt.exists():
            trainer.load_checkpoint(ckpt)
            trainer.say(f"resumed from {ckpt} at step {trainer.step}")
        trainer.fit(args.steps, max_seconds=None if args.max_minutes is None else args.max_minutes * 60)
        if not trainer.stopped_early:
            trainer.say(f"done: {Path(trainer.run_dir)}")
    finally:
        trainer.close()
    return 0


def _export(args: argparse.Namespace) -> int:
    from training.export import export_run

    card = export_run(args.run_dir, args.out, name=args.name, title=args.title, default=args.default,
                      dtype=args.dtype, config=args.config, note=args.note, command=args.train_command,
                      export_command=args.command_line, checkpoint=args.checkpoint)
    print(f"wrote {card.path} and {card.weights_file} (sha256 {card.sha256[:12]})")
    return 0


def _interpolate(args: argparse.Namespace) -> int:
    from training.export import interpolate

    card = interpolate(args.psnr, args.gan, args.alpha, args.out, name=args.name, title=args.title,
                       default=args.default, dtype=args.dtype)
    print(f"wrote {card.path} and {card.weights_file} (alpha {args.alpha:g})")
    return 0


def _report(args: argparse.Namespace) -> int:
    from training.report import report_run

    for path in report_run(Path(args.run_dir), args.config):
        print(f"wrote {path}")
    return 0


def _lineage(args: argparse.Namespace) -> int:
    from training.lineage import lineage

    print(lineage(list(args.run_dirs), Path(args.out) if args.out else None, args.reference,
                  args.title))
    if args.out:
        print(f"wrote {args.out}")
    return 0


def _eval_chain(args: argparse.Namespace) -> int:
    from training.chain_eval import eval_chain

    eval_chain(args.inputs, args.model, args.chain, seed=args.seed, precision=args.precision,
               device=args.device, limit=args.limit, json_out=args.json_out)
    return 0


def _pack_data(args: argparse.Namespace) -> int:
    from training.device import describe_pack, pack_data

    manifest = pack_data(args.train, args.val, args.out, max_mib=args.max_mib, parts=args.parts,
                         val_images=args.val_images, seed=args.seed)
    print(describe_pack(manifest, Path(args.out)))
    return 0


def _bundle(args: argparse.Namespace) -> int:
    from training.device import bundle_run

    paths = bundle_run(args.run_dir, args.out)
    print(f"wrote {len(paths)} files to {args.out}: " + ", ".join(f"{p.name} ({p.stat().st_size / 2**20:.1f} MiB)"
                                                          for p in paths))
    return 0


def _unbundle(args: argparse.Namespace) -> int:
    from training.device import unbundle_run

    info = unbundle_run(args.src, args.run_dir)
    print(f"rebuilt {args.run_dir}: best EMA of run {info['run']} at step {info['step']} "
          f"(weights sha256 {info['sha256'][:12]} checked), with {', '.join(info['files'])}")
    return 0


COMMANDS = {"psnr": _train, "gan": _train, "export": _export, "interpolate": _interpolate, "report": _report,
            "lineage": _lineage, "eval-chain": _eval_chain, "pack-data": _pack_data, "bundle": _bundle,
            "unbundle": _unbundle}


def _without_note(argv: list[str]) -> list[str]:
    """The command line as a card records it: the --note text is in the card's notes already."""
    out, skip = [], False
    for item in argv:
        if skip:
            out.append("...")
        elif item.startswith("--note="):
            out.append("--note=...")
        else:
            out.append(item)
        skip = item == "--note" and not skip
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.command_line = "cxr-train " + shlex.join(_without_note(argv))  # for run.json and the card

    from engine.sr.weights import WeightsError
    from training.config import ConfigError
    from training.data import DataError

    try:
        return COMMANDS[args.command](args)
    except (ConfigError, DataError, WeightsError) as exc:
        print(f"cxr-train: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
