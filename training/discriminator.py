"""The ESRGAN discriminator: BasicSR's VGGStyleDiscriminator, generalised to any 2^k input size.

Stage i halves the resolution with conv3x3 + BN + LeakyReLU, conv4x4/2 + BN + LeakyReLU (stage 0
has no BN on its first conv); widths double up to 8x. For 128x128 input this is exactly BasicSR's
network (conv0_0 ... conv4_1, bn0_1 ... bn4_1, linear1 100 units, linear2 1 output), the same
parameter names included; 256 adds conv5_*, as BasicSR does; smaller inputs (tests) drop stages.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


class VGGStyleDiscriminator(nn.Module):
    def __init__(self, num_in_ch: int = 1, num_feat: int = 64, input_size: int = 128) -> None:
        super().__init__()
        if input_size < 16 or input_size & (input_size - 1):
            raise ValueError(f"The discriminator needs a power-of-two input of at least 16, not {input_size}.")
        self.input_size = input_size
        self.stages = int(math.log2(input_size // 4))  # down to 4x4
        in_ch = num_in_ch
        for i in range(self.stages):
            out_ch = num_feat * min(2**i, 8)
            setattr(self, f"conv{i}_0", nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=i == 0))
            if i:
                setattr(self, f"bn{i}_0", nn.BatchNorm2d(out_ch, affine=True))
            setattr(self, f"conv{i}_1", nn.Conv2d(out_ch, out_ch, 4, 2, 1, bias=False))
            setattr(self, f"bn{i}_1", nn.BatchNorm2d(out_ch, affine=True))
            in_ch = out_ch
        self.linear1 = nn.Linear(in_ch * 4 * 4, 100)
        self.linear2 = nn.Linear(100, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> Any:
        """Logits (B, 1); with `return_features`, also each stage's output (feature matching)."""
        if x.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(f"The discriminator takes {self.input_size}x{self.input_size} patches, not {tuple(x.shape[-2:])}.")
        feats = []
        feat = x
        for i in range(self.stages):
            feat = getattr(self, f"conv{i}_0")(feat)
            if i:
                feat = getattr(self, f"bn{i}_0")(feat)
            feat = self.lrelu(feat)
            feat = self.lrelu(getattr(self, f"bn{i}_1")(getattr(self, f"conv{i}_1")(feat)))
            feats.append(feat)
        out = self.linear2(self.lrelu(self.linear1(feat.flatten(1))))
        return (out, feats) if return_features else out
