"""Run by `torchrun` from test_distributed.py: a tiny PSNR run, then a GAN run from it; each rank
writes the hash of its weights (generator, EMA, discriminator) after each."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from torch import nn

from training.config import load_config
from training.gan import GanTrainer
from training.trainer import Trainer


def weights_hash(*models: nn.Module) -> str:
    digest = hashlib.sha256()
    for model in models:
        for key, tensor in model.state_dict().items():
            if "running_" in key or "num_batches" in key:
                continue  # BN statistics of D stay per rank by design (never used in eval)
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def main() -> None:
    config, out = sys.argv[1], Path(sys.argv[2])
    lines = []
    psnr = Trainer(load_config(config), out / "psnr")
    psnr.fit(progress=False)
    lines.append(f"psnr {weights_hash(psnr.model, psnr.ema.model)} {psnr.step} {psnr.sampler.state()['state']['state']}")
    gan_cfg = load_config(config, {"stage": "gan", "init_from": str(out / "psnr"), "gan.feature_loss": "discriminator",
                                   "gan.d_num_feat": 4, "steps": 2})
    gan = GanTrainer(gan_cfg, out / "gan")
    try:
        gan.fit(progress=False)
        lines.append(f"gan {weights_hash(gan.model, gan.ema.model, gan.discriminator)} {gan.step} -")
    finally:
        gan.close()
    (out / f"rank{os.environ.get('RANK', '0')}.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
