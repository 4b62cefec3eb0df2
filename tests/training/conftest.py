"""Tiny training set-ups: 4-8 feature networks on two real 64x64 lung crops, a few steps.

`data/lungs/lung_a.png` and `lung_b.png` are 64x64 crops of the right lung field (40 % down,
28 % across) of NIH ChestX-ray14 images 00000404_000.png and 00000468_040.png (train split),
made once for these tests. NIH Clinical Center, https://nihcc.app.box.com/v/ChestXray-NIHCC;
Wang et al., "ChestX-ray8", CVPR 2017.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from training.config import TrainConfig, config_from_dict

LUNGS = Path(__file__).resolve().parent / "data" / "lungs"


def tiny_values(out_dir: Path, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": "tiny",
        "out_dir": str(out_dir),
        "model": {"arch": "SRVGGNetCompact",
                  "params": {"num_feat": 8, "num_conv": 2, "upsample_residual": "bicubic"}},
        "data": {"train": str(LUNGS), "val": str(LUNGS), "hr_patch": 32, "batch_size": 4,
                 "val_crops": 2, "val_crop_size": 0},
        "optim": {"lr": 1e-3, "warmup_steps": 0},
        "steps": 10, "log_every": 5, "val_every": 10, "ckpt_every": 5,
        "precision": "fp32", "threads": 1, "val_grid": 0, "device": "cpu",
    }
    for dotted, value in overrides.items():
        node = values
        *parents, leaf = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return copy.deepcopy(values)


@pytest.fixture
def tiny_config(tmp_path: Path) -> Callable[..., TrainConfig]:
    """`tiny_config(steps=20, data__batch_size=2)`: nested keys joined by double underscores."""

    def make(**overrides: Any) -> TrainConfig:
        return config_from_dict(tiny_values(tmp_path / "runs", **overrides))

    return make


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    """Trainers set torch's thread count (threads: 1); give other tests back what they had."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
