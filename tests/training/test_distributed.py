"""Two Gloo processes under torchrun: different patches per rank, identical weights at the end
(PSNR stage, then a GAN stage started from it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .conftest import LUNGS

ROOT = Path(__file__).resolve().parents[2]
CONFIG = f"""\
name: ddp
model: {{arch: SRVGGNetCompact, params: {{num_feat: 4, num_conv: 1, upsample_residual: bicubic}}}}
data: {{train: {LUNGS}, val: {LUNGS}, hr_patch: 32, batch_size: 2, val_crops: 1, val_crop_size: 0}}
steps: 6
log_every: 3
val_every: 6
ckpt_every: 3
precision: fp32
threads: 1
val_grid: 0
device: cpu
"""


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
def test_two_gloo_ranks_end_with_identical_weights_in_both_stages(tmp_path: Path) -> None:
    config = tmp_path / "ddp.yaml"
    config.write_text(CONFIG)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "tests" / "training" / "ddp_worker.py"), str(config), str(tmp_path)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [dict((line.split()[0], line.split()[1:]) for line in (tmp_path / f"rank{r}.txt").read_text().splitlines())
             for r in (0, 1)]
    (hash0, step0, sampler0), (hash1, step1, sampler1) = ranks[0]["psnr"], ranks[1]["psnr"]
    assert step0 == step1 == "6"
    assert hash0 == hash1  # DDP averaged the gradients; the EMA follows identical weights
    assert sampler0 != sampler1  # each rank drew its own patches (seed + rank)
    assert ranks[0]["gan"][0] == ranks[1]["gan"][0]  # generator, EMA and discriminator
    state = torch.load(tmp_path / "psnr" / "last.ckpt", weights_only=False)
    assert state["world_size"] == 2 and len(state["rng"]["sampler_ranks"]) == 2
    rows = (tmp_path / "psnr" / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["3", "6"]  # only rank 0 logs
