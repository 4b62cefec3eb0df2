"""`cxr-train`: reproduce the CXR Enhance models (PSNR stage for now)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cxr-train", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("psnr", help="PSNR-oriented stage (L1)")
    p.add_argument("--config", default="cpu-fast", help="YAML file or preset name")
    p.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    p.add_argument("--steps", type=int, default=None)
    args = parser.parse_args(argv)

    from training.config import ConfigError, load_config
    from training.data import DataError
    from training.trainer import CHECKPOINT_NAME, Trainer

    try:
        cfg = load_config(args.config)
        trainer = Trainer(cfg)
        ckpt = trainer.run_dir / CHECKPOINT_NAME
        if args.resume and ckpt.exists():
            trainer.load_checkpoint(ckpt)
            print(f"resumed from {ckpt} at step {trainer.step}", flush=True)
        trainer.fit(args.steps)
    except (ConfigError, DataError) as exc:
        print(f"cxr-train: {exc}", file=sys.stderr)
        return 2
    print(f"done: {Path(trainer.run_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
