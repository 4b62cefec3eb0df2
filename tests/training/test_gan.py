"""The GAN stage: discriminator, RaGAN, VGG19 key layout, and a couple of real steps."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from training.cli import main
from training.config import ConfigError, TrainConfig
from training.discriminator import VGGStyleDiscriminator
from training.export import export_run
from training.gan import GanTrainer
from training.losses import feature_matching_loss, ragan_discriminator_loss, ragan_generator_loss
from training.trainer import CHECKPOINT_NAME, Trainer
from training.vgg import CONV5_4, VGG19_FILE, load_vgg19

Make = Callable[..., TrainConfig]

# torchvision's vgg19().features: conv indices and channels (the pooling layers sit between).
TORCHVISION_VGG19_CONVS = [(0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256),
                           (14, 256, 256), (16, 256, 256), (19, 256, 512), (21, 512, 512), (23, 512, 512),
                           (25, 512, 512), (28, 512, 512), (30, 512, 512), (32, 512, 512), (34, 512, 512)]


@pytest.fixture
def psnr_run(tiny_config: Make, tmp_path: Path) -> Path:
    Trainer(tiny_config(steps=2), tmp_path / "psnr").fit(progress=False)
    return tmp_path / "psnr"


def test_discriminator_is_basicsr_vgg_style_at_128() -> None:
    d = VGGStyleDiscriminator(num_in_ch=1, num_feat=8, input_size=128)
    names = set(d.state_dict())
    assert {"conv0_0.bias", "conv4_1.weight", "bn4_1.running_mean", "linear1.weight", "linear2.bias"} <= names
    assert "conv0_1.bias" not in names and "bn0_0.weight" not in names and "conv5_0.weight" not in names
    assert d.linear1.in_features == 8 * 8 * 4 * 4 and d.linear1.out_features == 100
    logits, feats = d(torch.rand(2, 1, 128, 128), return_features=True)
    assert logits.shape == (2, 1) and [f.shape[-1] for f in feats] == [64, 32, 16, 8, 4]
    with pytest.raises(ValueError, match="128x128"):
        d(torch.rand(1, 1, 64, 64))


def test_relativistic_losses_prefer_the_right_side() -> None:
    real, fake = torch.full((4, 1), 3.0), torch.full((4, 1), -3.0)
    assert ragan_discriminator_loss(real, fake) < ragan_discriminator_loss(fake, real)
    assert ragan_generator_loss(real, fake) > ragan_generator_loss(fake, real)
    feats = [torch.ones(1, 2, 4, 4)]
    assert feature_matching_loss(feats, feats) == 0


def test_vgg19_loads_a_torchvision_format_file(tmp_path: Path) -> None:
    state = {}
    for index, cin, cout in TORCHVISION_VGG19_CONVS:
        state[f"features.{index}.weight"] = torch.randn(cout, cin, 3, 3) * 0.01
        state[f"features.{index}.bias"] = torch.randn(cout) * 0.01
    state["classifier.0.weight"] = torch.zeros(8, 8)  # the classifier is ignored
    path = tmp_path / VGG19_FILE
    torch.save(state, path)
    vgg = load_vgg19(str(path))
    assert torch.equal(vgg.features[CONV5_4].weight, state["features.34.weight"])
    assert len(vgg.features) == CONV5_4 + 1  # ends at conv5_4, before its ReLU
    out = vgg(torch.rand(1, 1, 32, 32))
    assert out.shape == (1, 512, 2, 2) and (out < 0).any()  # pre-activation features
    assert not any(p.requires_grad for p in vgg.parameters())
    state.pop("features.34.bias")
    torch.save(state, path)
    with pytest.raises(ConfigError, match="is not torchvision's VGG19"):
        load_vgg19(str(path))


def test_missing_vgg_says_where_to_get_it(tiny_config: Make, psnr_run: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tiny_config(stage="gan", init_from=str(psnr_run), gan__vgg_weights=str(tmp_path / "nope.pth"))
    with pytest.raises(ConfigError) as err:
        GanTrainer(cfg)
    text = str(err.value)
    assert VGG19_FILE in text and "gan.vgg_weights" in text and "gan.feature_loss: discriminator" in text
    assert text.count(". ") == 0 and text.endswith(".")
    yaml = tmp_path / "gan.yaml"
    yaml.write_text(f"stage: gan\ninit_from: {psnr_run}\ndata: {{train: {tmp_path}}}\n")
    assert main(["gan", "--config", str(yaml)]) == 2
    assert "vgg19-dcbb9e9d.pth" in capsys.readouterr().err


def test_gan_steps_with_feature_matching_change_weights_and_resume(tiny_config: Make, psnr_run: Path,
                                                                    tmp_path: Path) -> None:
    def cfg() -> TrainConfig:
        return tiny_config(stage="gan", init_from=str(psnr_run), steps=4, log_every=2, ckpt_every=2, val_every=4,
                           gan__feature_loss="discriminator", gan__d_num_feat=4, precision="bf16",
                           data__degradation="realistic", data__realistic_fraction=0.5, data__realistic={"aliased_prob": 0.5, "sigma_range": [0.2, 1.5]},
                           optim__schedule="step", optim__milestones=[2])

    straight = GanTrainer(cfg(), tmp_path / "a")
    start = {k: v.clone() for k, v in straight.model.state_dict().items()}
    d_start = {k: v.clone() for k, v in straight.discriminator.state_dict().items()}
    row = straight.fit(progress=False)
    assert all(k in row for k in ("l_pix", "l_feat", "l_gan", "l_d", "val_psnr"))
    assert any(not torch.equal(start[k], v) for k, v in straight.model.state_dict().items())
    assert any(not torch.equal(d_start[k], v) for k, v in straight.discriminator.state_dict().items())
    assert straight.scheduler.get_last_lr()[0] == pytest.approx(5e-4)  # halved at the milestone
    assert not (tmp_path / "a" / "best_ema.pt").exists()  # GAN models are not picked by PSNR
    card = export_run(tmp_path / "a", tmp_path / "models", name="gan-tiny")
    assert card.training["stage"] == "gan" and card.training["steps"] == 4 and "val_psnr" in card.metrics["during_training"]
    assert card.training["realistic_fraction"] == 0.5
    assert card.training["realistic"] == {"aliased_prob": 0.5, "sigma_range": [0.2, 1.5]}
    assert 'with {"aliased_prob": 0.5, "sigma_range": [0.2, 1.5]} over its defaults' in card.training["degradation"]
    assert card.training["degradation"].startswith("realistic on 50% of the patches") and "rest bicubic" in card.training["degradation"]

    first = GanTrainer(cfg(), tmp_path / "b")
    first.fit(2, progress=False)
    resumed = GanTrainer(cfg(), tmp_path / "b")
    resumed.load_checkpoint(tmp_path / "b" / CHECKPOINT_NAME)
    resumed.fit(progress=False)
    for a, b in ((straight.model, resumed.model), (straight.discriminator, resumed.discriminator)):
        assert all(torch.allclose(a.state_dict()[k].float(), v.float(), atol=1e-6) for k, v in b.state_dict().items())
