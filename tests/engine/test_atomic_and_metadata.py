"""Atomic writes keep normal permissions; checkpoints that name their architecture load as named."""

from __future__ import annotations

import os
import stat

import torch

from engine.fileio import atomic_write
from engine.sr.archs import SRVGGNetCompact
from engine.sr.weights import describe_file, load_model


def test_atomic_write_applies_the_umask_not_owner_only(tmp_path):
    old = os.umask(0o022)
    try:
        out = atomic_write(tmp_path / "x.bin", b"abc")
    finally:
        os.umask(old)
    assert out.read_bytes() == b"abc"
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]  # no temporary left behind


def test_checkpoint_with_arch_and_params_keeps_its_bicubic_residual(tmp_path):
    params = {"num_feat": 4, "num_conv": 1, "upsample_residual": "bicubic"}
    net = SRVGGNetCompact(**params).eval()
    path = tmp_path / "best_ema.pt"
    torch.save({"ema": net.state_dict(), "step": 10, "arch": "SRVGGNetCompact", "params": params}, path)
    card = describe_file(path)
    assert card.params["upsample_residual"] == "bicubic"
    model, _ = load_model(path)
    x = torch.rand(1, 1, 8, 8)
    with torch.inference_mode():
        assert torch.allclose(model(x), net(x), atol=1e-6)
