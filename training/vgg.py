"""VGG19 features for the perceptual loss, as plain torch modules (torchvision is not needed).

Layer numbering and parameter names match torchvision's `vgg19().features` (`features.N.weight`),
so torchvision's ImageNet file `vgg19-dcbb9e9d.pth` loads as is. ESRGAN compares features of
conv5_4 *before* its ReLU (layer 34): sharper textures than after the activation.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from training.config import ConfigError

VGG19_LAYOUT: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                                       512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
CONV5_4 = 34  # index of conv5_4 in torchvision's vgg19().features
VGG19_FILE = "vgg19-dcbb9e9d.pth"
VGG19_URL = f"https://download.pytorch.org/models/{VGG19_FILE}"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg19_layers(last: int = CONV5_4) -> nn.Sequential:
    layers: list[nn.Module] = []
    in_ch = 3
    for item in VGG19_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(in_ch, int(item), 3, padding=1), nn.ReLU(inplace=True)]
            in_ch = int(item)
    return nn.Sequential(*layers[: last + 1])


class VGG19Features(nn.Module):
    """Gray or RGB images in [0, 1] -> VGG19 features at layer `last` (frozen, ImageNet-normalised)."""

    def __init__(self, last: int = CONV5_4) -> None:
        super().__init__()
        self.features = vgg19_layers(last)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)  # a radiograph is what an RGB net sees as R = G = B
        return self.features((x - self.mean) / self.std)


def missing_vgg_message(path: str | None) -> str:
    where = f"{path} does not exist" if path else "gan.vgg_weights is not set"
    return (f"The perceptual loss needs torchvision's ImageNet VGG19 weights but {where}: download "
            f"{VGG19_FILE} from {VGG19_URL} and set gan.vgg_weights to its path, or set "
            "gan.feature_loss: discriminator to train without VGG.")


def check_vgg_weights(path: str | None) -> Path:
    """The VGG19 file, or a ConfigError that says where to get it."""
    if not path or not Path(path).expanduser().is_file():
        raise ConfigError(missing_vgg_message(path))
    return Path(path).expanduser()


def load_vgg19(path: str | None, last: int = CONV5_4) -> VGG19Features:
    """A VGG19 feature extractor with torchvision-format ImageNet weights from a local file."""
    file = check_vgg_weights(path)
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"{file} cannot be read as a PyTorch weights file ({type(exc).__name__}); download {VGG19_FILE} again.") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    net = VGG19Features(last)
    wanted = {k: v for k, v in state.items() if _layer_index(k) is not None and _layer_index(k) <= last}
    try:
        net.load_state_dict(wanted, strict=True)
    except RuntimeError:
        raise ConfigError(f"{file} is not torchvision's VGG19 (its features.N.weight keys or shapes differ); use {VGG19_FILE}.") from None
    return net


def _layer_index(key: str) -> int | None:
    parts = key.split(".")
    if len(parts) == 3 and parts[0] == "features" and parts[1].isdigit():
        return int(parts[1])
    return None
