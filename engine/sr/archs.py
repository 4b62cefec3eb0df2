"""Super-resolution generator architectures: RRDBNet (ESRGAN) and a compact fast network.

Parameter names follow BasicSR / Real-ESRGAN (`conv_first`, `body.N.rdb1.conv1`, `conv_body`,
`conv_up1`, `conv_up2`, `conv_hr`, `conv_last`; compact: `body.N`) so that published weights load
after key translation in `engine.sr.weights`. Networks are built from a model card by name through
`build_model`, never guessed from a file name.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from engine.sr.card import check_params

RESIDUAL_MODES = (None, "nearest", "bicubic")


def _upsampled_input(x: torch.Tensor, scale: int, mode: str | None) -> torch.Tensor | None:
    """The input enlarged to the output size, added to the output so the net learns the detail."""
    if mode is None:
        return None
    if mode == "nearest":
        return F.interpolate(x, scale_factor=scale, mode="nearest")
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convs with dense connections; output scaled by 0.2 and added (ESRGAN Fig. 4)."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5):
            # ESRGAN initialises with Kaiming scaled by 0.1: keeps the deep residual stack stable.
            nn.init.kaiming_normal_(conv.weight)
            conv.weight.data *= 0.1
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks and a scaled skip."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.rdb3(self.rdb2(self.rdb1(x)))
        return out * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN generator (Wang et al. 2018). x4 and x2/x1 (BasicSR pixel-unshuffles for x2/x1).

    `upsample_residual` adds the bicubic (or nearest) enlarged input to the output: not in the
    paper, it adds no parameters and makes training from scratch converge much faster.
    """

    def __init__(
        self,
        num_in_ch: int = 1,
        num_out_ch: int = 1,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
        scale: int = 4,
        upsample_residual: str | None = None,
    ) -> None:
        super().__init__()
        if scale not in (1, 2, 4):
            raise ValueError(f"RRDBNet supports scale 1, 2 or 4, not {scale}.")
        if upsample_residual not in RESIDUAL_MODES:
            raise ValueError(f"upsample_residual must be one of {RESIDUAL_MODES}.")
        if upsample_residual is not None and num_in_ch != num_out_ch:
            raise ValueError("An upsampled-input residual needs as many input as output channels.")
        self.scale = scale
        self.upsample_residual = upsample_residual
        self.num_in_ch = num_in_ch
        unshuffle = {4: 1, 2: 4, 1: 16}[scale]
        self.conv_first = nn.Conv2d(num_in_ch * unshuffle, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 2:
            feat = F.pixel_unshuffle(x, 2)
        elif self.scale == 1:
            feat = F.pixel_unshuffle(x, 4)
        else:
            feat = x
        feat = self.conv_first(feat)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        out = self.conv_last(self.lrelu(self.conv_hr(feat)))
        base = _upsampled_input(x, self.scale, self.upsample_residual)
        return out if base is None else out + base


class SRVGGNetCompact(nn.Module):
    """A plain conv stack at low resolution + PixelShuffle (Real-ESRGAN's compact network).

    Tens of times cheaper per pixel than RRDB-23. `body` holds conv, act, conv, act, ..., conv
    exactly as Real-ESRGAN's `realesr-general-x4v3` so its weights load unchanged.
    """

    def __init__(
        self,
        num_in_ch: int = 1,
        num_out_ch: int = 1,
        num_feat: int = 64,
        num_conv: int = 16,
        upscale: int = 4,
        act_type: str = "prelu",
        upsample_residual: str | None = "nearest",
    ) -> None:
        super().__init__()
        if act_type not in ("relu", "prelu", "leakyrelu"):
            raise ValueError(f"act_type must be relu, prelu or leakyrelu, not {act_type!r}.")
        if upsample_residual not in RESIDUAL_MODES:
            raise ValueError(f"upsample_residual must be one of {RESIDUAL_MODES}.")
        self.scale = upscale
        self.upsample_residual = upsample_residual
        self.num_in_ch = num_in_ch
        layers: list[nn.Module] = [nn.Conv2d(num_in_ch, num_feat, 3, 1, 1), _activation(act_type, num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), _activation(act_type, num_feat)]
        layers.append(nn.Conv2d(num_feat, num_out_ch * upscale * upscale, 3, 1, 1))
        self.body = nn.Sequential(*layers)
        self.upsampler = nn.PixelShuffle(upscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.upsampler(self.body(x))
        base = _upsampled_input(x, self.scale, self.upsample_residual)
        return out if base is None else out + base


def _activation(act_type: str, num_feat: int) -> nn.Module:
    if act_type == "relu":
        return nn.ReLU(inplace=True)
    if act_type == "prelu":
        return nn.PReLU(num_parameters=num_feat)
    return nn.LeakyReLU(negative_slope=0.1, inplace=True)


ARCHITECTURES: dict[str, type[nn.Module]] = {
    "RRDBNet": RRDBNet,
    "SRVGGNetCompact": SRVGGNetCompact,
}


def build_model(arch: str, params: dict[str, Any] | None = None) -> nn.Module:
    """Build a network from a model card's `architecture` name and hyper-parameters."""
    try:
        cls = ARCHITECTURES[arch]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ValueError(f"Unknown architecture {arch!r}; this version knows {known}.") from None
    params = params or {}
    try:
        check_params(params)
    except ValueError as exc:
        raise ValueError(f"Bad hyper-parameters for {arch}: {exc}.") from None
    try:
        return cls(**params)
    except (TypeError, RuntimeError) as exc:  # an unknown name, or a value torch cannot build
        detail = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"Bad hyper-parameters for {arch}: {detail.rstrip('.')}.") from None


def model_scale(model: nn.Module) -> int:
    return int(model.scale)


def macs_per_input_pixel(model: nn.Module, probe: int = 16) -> float:
    """Multiply-adds per low-resolution input pixel, counted over every convolution.

    Counted by running a small probe input through the network with forward hooks, so any
    architecture is covered. Interpolation, activations and additions are not counted (they are
    a fraction of a percent of the total for these networks).
    """
    total = 0

    def hook(module: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        conv = module  # type: ignore[assignment]
        k = conv.kernel_size[0] * conv.kernel_size[1]
        total += out.numel() * (conv.in_channels // conv.groups) * k

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        in_ch = getattr(model, "num_in_ch", 1)
        param = next(model.parameters())
        with torch.inference_mode():
            model(torch.zeros(1, in_ch, probe, probe, dtype=param.dtype, device=param.device))
    finally:
        for h in handles:
            h.remove()
    return total / (probe * probe)
