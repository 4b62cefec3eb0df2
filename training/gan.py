"""The GAN stage (ESRGAN section 3): start from the PSNR model, add a discriminator.

Generator loss = perceptual (VGG19 conv5_4 before ReLU, L1) + 5e-3 x relativistic average GAN
+ 1e-2 x L1, as in the paper. Without the ImageNet VGG19 file, `gan.feature_loss: discriminator`
replaces the perceptual term by feature matching: L1 between the discriminator's stage outputs on
real and generated patches (Salimans et al. 2016), which needs no outside weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from training import distributed
from training.config import TrainConfig
from training.discriminator import VGGStyleDiscriminator
from training.losses import feature_matching_loss, ragan_discriminator_loss, ragan_generator_loss
from training.trainer import Trainer, lr_lambda
from training.vgg import check_vgg_weights, load_vgg19


def _set_requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


class GanTrainer(Trainer):
    loss_keys = ("loss", "l_pix", "l_feat", "l_gan", "l_d")
    select_best = False  # PSNR falls as a GAN learns texture: judge GAN models by eye and by card

    def __init__(self, cfg: TrainConfig, run_dir: str | Path | None = None) -> None:
        uses_vgg = cfg.gan.feature_loss == "vgg"
        if uses_vgg:
            check_vgg_weights(cfg.gan.vgg_weights)  # before minutes of data loading
        super().__init__(cfg, run_dir)
        self.discriminator = VGGStyleDiscriminator(1, cfg.gan.d_num_feat, cfg.data.hr_patch)
        self.discriminator.to(self.device, memory_format=self.memory_format)
        self.d_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.gan.d_lr, betas=cfg.optim.betas)
        self.d_scheduler = torch.optim.lr_scheduler.LambdaLR(self.d_optimizer, lr_lambda(cfg))
        # BN statistics of D are never used in eval mode: no need to broadcast them every forward
        # (and broadcasting in-place between two forwards breaks autograd).
        self.train_d = self._wrap(self.discriminator, **distributed.no_forward_buffer_sync())
        self.vgg = load_vgg19(cfg.gan.vgg_weights).to(self.device) if uses_vgg else None

    # -- one step -----------------------------------------------------------------------------
    def _feature_loss(self, sr: torch.Tensor, hr: torch.Tensor, fake_feats: list[torch.Tensor],
                      real_feats: list[torch.Tensor]) -> torch.Tensor:
        if self.vgg is None:
            return feature_matching_loss(fake_feats, real_feats)
        with torch.no_grad():
            target = self.vgg(hr)
        return F.l1_loss(self.vgg(sr).float(), target.float())

    def _generator_step(self, lr: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        gan = self.cfg.gan
        _set_requires_grad(self.discriminator, False)
        with self.autocast():
            sr = self.train_model(lr)
            with torch.no_grad():
                real_logits, real_feats = self.discriminator(hr, return_features=True)
            fake_logits, fake_feats = self.discriminator(sr, return_features=True)
            l_feat = gan.perceptual_weight * self._feature_loss(sr, hr, fake_feats, real_feats)
        l_pix = gan.pixel_weight * F.l1_loss(sr.float(), hr)
        l_gan = gan.gan_weight * ragan_generator_loss(real_logits.float(), fake_logits.float())
        loss = l_pix + l_feat + l_gan
        self.optimizer_step(loss, self.optimizer, self.model)
        return sr.detach(), {"loss": float(loss.detach()), "l_pix": float(l_pix.detach()),
                             "l_feat": float(l_feat.detach()), "l_gan": float(l_gan.detach())}

    def _discriminator_step(self, sr: torch.Tensor, hr: torch.Tensor) -> float:
        _set_requires_grad(self.discriminator, True)
        with self.autocast():
            real_logits = self.train_d(hr)
            fake_logits = self.train_d(sr)
        l_d = ragan_discriminator_loss(real_logits.float(), fake_logits.float())
        self.optimizer_step(l_d, self.d_optimizer, self.discriminator)
        return float(l_d.detach())

    def train_step(self) -> dict[str, float]:
        lr, hr = self.next_batch()
        self.train_model.train()
        self.train_d.train()
        sr, losses = self._generator_step(lr, hr)
        losses["l_d"] = self._discriminator_step(sr, hr)
        self.scaler.update()
        self.scheduler.step()
        self.d_scheduler.step()
        self.ema.update(self.model)
        self.step += 1
        return losses

    def _loss_text(self, row: dict[str, float]) -> str:
        return (f"loss {row['loss']:.5f} (pix {row['l_pix']:.5f} feat {row['l_feat']:.4f} "
                f"gan {row['l_gan']:.5f}) D {row['l_d']:.4f}")

    # -- checkpoints --------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        state = super().state()
        state["discriminator"] = self.discriminator.state_dict()
        state["d_optimizer"] = self.d_optimizer.state_dict()
        state["d_scheduler"] = self.d_scheduler.state_dict()
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        if "discriminator" in state:  # a GAN checkpoint (not a PSNR one)
            self.discriminator.load_state_dict(state["discriminator"])
            self.d_optimizer.load_state_dict(state["d_optimizer"])
            self.d_scheduler.load_state_dict(state["d_scheduler"])
