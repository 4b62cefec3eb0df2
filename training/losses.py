"""Losses of the GAN stage: relativistic average GAN (ESRGAN eq. 1-2) and feature matching."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def ragan_generator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator wants fakes to look more real than the average real, and vice versa.

    D_Ra(a, b) = sigmoid(C(a) - mean C(b)); both real and fake terms carry gradients to G through
    `fake_logits` (`real_logits` should be detached).
    """
    real_term = _bce(real_logits - fake_logits.mean(), 0.0)
    fake_term = _bce(fake_logits - real_logits.mean(), 1.0)
    return (real_term + fake_term) / 2


def ragan_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """BasicSR's form: each half is relative to the other side's detached mean."""
    real_term = _bce(real_logits - fake_logits.detach().mean(), 1.0)
    fake_term = _bce(fake_logits - real_logits.detach().mean(), 0.0)
    return (real_term + fake_term) / 2


def feature_matching_loss(fake_feats: list[torch.Tensor], real_feats: list[torch.Tensor]) -> torch.Tensor:
    """Mean L1 between the discriminator's stage outputs on fakes and (detached) reals."""
    losses = [F.l1_loss(f.float(), r.detach().float()) for f, r in zip(fake_feats, real_feats, strict=True)]
    return torch.stack(losses).mean()
