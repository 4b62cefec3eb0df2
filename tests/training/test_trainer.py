"""The PSNR stage: beats bicubic on real lung crops, resumes exactly, writes its pictures."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from training.checkpoints import read_generator
from training.cli import main
from training.config import ConfigError, TrainConfig
from training.report import read_log, steps_per_second, wall_time_s
from training.trainer import CHECKPOINT_NAME, Trainer, keeps

Make = Callable[..., TrainConfig]


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_tiny_net_beats_bicubic_on_real_lung_crops(tiny_config: Make) -> None:
    cfg = tiny_config(steps=300, log_every=100, val_every=300, ckpt_every=300, ema_decay=0.0,
                      optim__lr=3e-3, data__batch_size=8)
    result = Trainer(cfg).fit(progress=False)
    # validation is the x4-native protocol on the two whole 64x64 crops
    assert result["val_psnr"] > result["bicubic_psnr"] + 0.05, result


def test_zero_init_last_starts_exactly_at_bicubic(tiny_config: Make) -> None:
    import numpy as np

    cfg = tiny_config(model__zero_init_last=True, model__arch="RRDBNet",
                      model__params={"num_feat": 8, "num_block": 1, "num_grow_ch": 4, "upsample_residual": "bicubic"})
    trainer = Trainer(cfg)
    lr = np.random.default_rng(0).random((16, 16), dtype=np.float32)
    with torch.no_grad():
        out = trainer.model(torch.from_numpy(lr)[None, None])[0, 0].numpy()
    # the network's own bicubic (torch, align_corners=False) without clipping: the residual is 0
    base = torch.nn.functional.interpolate(torch.from_numpy(lr)[None, None], scale_factor=4, mode="bicubic",
                                           align_corners=False)[0, 0].numpy()
    assert np.array_equal(out, base)


def test_resume_gives_the_same_weights_as_one_run(tiny_config: Make, tmp_path: Path) -> None:
    straight = Trainer(tiny_config(steps=8), tmp_path / "a")
    straight.fit(progress=False)

    first = Trainer(tiny_config(steps=8), tmp_path / "b")
    first.fit(4, progress=False)
    resumed = Trainer(tiny_config(steps=8), tmp_path / "b")
    resumed.load_checkpoint(tmp_path / "b" / CHECKPOINT_NAME)
    assert resumed.step == 4
    resumed.fit(progress=False)
    assert _same_weights(straight.model, resumed.model)
    assert _same_weights(straight.ema.model, resumed.ema.model)
    assert straight.optimizer.state_dict()["state"][0]["exp_avg"].equal(resumed.optimizer.state_dict()["state"][0]["exp_avg"])


def test_checkpoints_without_the_newer_keys_still_load(tiny_config: Make, tmp_path: Path) -> None:
    trainer = Trainer(tiny_config(steps=4), tmp_path / "a")
    trainer.fit(progress=False)
    state = trainer.state()
    for key in ("stage", "scaler", "world_size", "select_by"):  # added after the first checkpoints were written
        state.pop(key)
    other = Trainer(tiny_config(steps=4), tmp_path / "b")
    other.load_state(state)
    assert other.step == 4 and _same_weights(trainer.model, other.model)


def test_keep_every_keeps_a_copy_of_the_checkpoint_at_each_multiple(tiny_config: Make, tmp_path: Path) -> None:
    run = tmp_path / "run"
    trainer = Trainer(tiny_config(steps=6, log_every=2, val_every=6, ckpt_every=5, keep_every=2, val_grid=0), run)
    trainer.fit(progress=False)
    assert sorted(p.name for p in run.glob("*.ckpt")) == [
        "last.ckpt", "step-000002.ckpt", "step-000004.ckpt", "step-000006.ckpt"]
    # each copy is the run at that step: resuming from step 4 and going on gives the same weights
    assert read_generator(run / "step-000004.ckpt").step == 4
    again = Trainer(tiny_config(steps=6, log_every=2, val_every=6, ckpt_every=5, val_grid=0), tmp_path / "again")
    again.load_checkpoint(run / "step-000004.ckpt")
    again.fit(progress=False)
    assert _same_weights(trainer.model, again.model) and _same_weights(trainer.ema.model, again.ema.model)
    # off by default; a negative value is refused in one sentence
    plain = Trainer(tiny_config(steps=4, ckpt_every=2, val_grid=0), tmp_path / "plain")
    plain.fit(progress=False)
    assert [p.name for p in (tmp_path / "plain").glob("*.ckpt")] == ["last.ckpt"]
    with pytest.raises(ConfigError, match="keep_every must be 0"):
        tiny_config(keep_every=-1)


def test_run_folder_holds_log_plots_and_config(tiny_config: Make, tmp_path: Path) -> None:
    cfg = tiny_config(steps=6, log_every=3, val_every=3, val_grid=2)
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.fit(progress=False)
    run = tmp_path / "run"
    for name in ("log.csv", "progress.png", "val_grid.png", "config.yaml", "run.json", "best_ema.pt", CHECKPOINT_NAME):
        assert (run / name).is_file(), name
    series = read_log(run)
    assert [s for s, _ in series["val_psnr"]] == [3, 6] and len(series["loss"]) == 2
    # the interior (INTERIOR_MARGIN px left out on every side, as `cxr-enhance eval`) beside the whole image
    (_, model_in), (_, bicubic_in), (_, gain_in) = (series[k][-1] for k in
                                                    ("val_psnr_interior", "bicubic_psnr_interior", "gain_interior_db"))
    assert gain_in == pytest.approx(model_in - bicubic_in, abs=2e-4) and bicubic_in != series["bicubic_psnr"][-1][1]
    assert wall_time_s(run) > 0
    weights = read_generator(run)
    assert weights.source.name == "best_ema.pt" and weights.arch == "SRVGGNetCompact" and weights.step in (3, 6)
    (run / "val_grid.png").unlink()
    assert main(["report", str(run)]) == 0
    assert (run / "val_grid.png").is_file()


def test_a_log_from_an_older_version_keeps_its_columns_on_resume(tiny_config: Make, tmp_path: Path) -> None:
    first = Trainer(tiny_config(steps=8, log_every=2, val_every=4), tmp_path / "run")
    first.fit(4, progress=False)
    log = tmp_path / "run" / "log.csv"
    old = "step,loss,lr,val_psnr,val_ssim,bicubic_psnr,bicubic_ssim,gain_db,elapsed_s"  # before the interior columns
    log.write_text(old + "\n")
    resumed = Trainer(tiny_config(steps=8, log_every=2, val_every=4), tmp_path / "run")
    resumed.load_checkpoint(tmp_path / "run" / CHECKPOINT_NAME)
    resumed.fit(progress=False)
    lines = log.read_text().splitlines()
    assert lines[0] == old and len(lines) == 3 and all(len(line.split(",")) == 9 for line in lines)
    series = read_log(tmp_path / "run")
    assert [s for s, _ in series["val_psnr"]] == [8] and "val_psnr_interior" not in series


def test_init_from_a_run_and_mismatches_are_config_errors(tiny_config: Make, tmp_path: Path) -> None:
    source = Trainer(tiny_config(steps=2), tmp_path / "src")
    source.fit(progress=False)
    started = Trainer(tiny_config(init_from=str(tmp_path / "src" / CHECKPOINT_NAME)), tmp_path / "dst")
    assert _same_weights(started.model, source.ema.model)
    with pytest.raises(ConfigError, match="do not fit model.params"):
        Trainer(tiny_config(init_from=str(tmp_path / "src"), model__params__num_feat=4), tmp_path / "x")
    with pytest.raises(ConfigError, match="init_from: The weights file"):
        Trainer(tiny_config(init_from=str(tmp_path / "none.pth")), tmp_path / "y")


def test_bf16_and_clipping_and_the_auto_device(tiny_config: Make) -> None:
    trainer = Trainer(tiny_config(steps=2, precision="bf16", device="auto", optim__grad_clip=0.1, channels_last=True))
    assert trainer.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.fit(progress=False)
    assert any(not torch.equal(a, p) for a, p in zip(before, trainer.model.parameters(), strict=True))
    assert np.isfinite(trainer.validate()["val_psnr"])


def test_init_from_a_basicsr_rgb_file_converts_to_gray(tiny_config: Make, tmp_path: Path) -> None:
    from engine.sr.archs import build_model

    rgb = build_model("SRVGGNetCompact", {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_conv": 2,
                                          "upsample_residual": "nearest"})
    path = tmp_path / "RealESRGAN_tiny.pth"
    torch.save({"params_ema": {f"module.{k}": v for k, v in rgb.state_dict().items()}}, path)
    trainer = Trainer(tiny_config(init_from=str(path), model__params__upsample_residual="nearest"))
    first = trainer.model.state_dict()["body.0.weight"]
    assert first.shape[1] == 1 and torch.allclose(first[:, 0], rgb.state_dict()["body.0.weight"].sum(1))


def test_speed_and_wall_time_are_read_per_session_from_the_log(tmp_path: Path) -> None:
    header = "step,loss,lr,val_psnr,val_ssim,bicubic_psnr,bicubic_ssim,gain_db,elapsed_s\n"
    rows = ["50,0.1,1e-4,,,,,,100.0", "100,0.1,1e-4,,,,,,200.0", "150,0.1,1e-4,1,1,1,1,0,400.0",  # validated
            "100,0.1,1e-4,,,,,,60.0", "150,0.1,1e-4,,,,,,110.0"]  # resumed at 50 after a stop at 150
    (tmp_path / "log.csv").write_text(header + "\n".join(rows) + "\n")
    assert steps_per_second(tmp_path) == {"min": 0.25, "median": 0.5, "max": 1.0}
    assert wall_time_s(tmp_path) == 400.0 + 110.0
    assert steps_per_second(tmp_path / "missing") == {}


@pytest.mark.parametrize("select_by, best_step, best_value", [("val_psnr", 2, 30.0), ("val_psnr_interior", 4, 21.0)])
def test_best_ema_is_chosen_by_the_configured_column(tiny_config: Make, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch, select_by: str,
                                                     best_step: int, best_value: float) -> None:
    """Whole-image PSNR peaks at step 2 and the interior at step 4: select_by decides which is kept."""
    scripted = iter([{"val_psnr": 30.0, "val_psnr_interior": 20.0}, {"val_psnr": 29.0, "val_psnr_interior": 21.0},
                     {"val_psnr": 28.0, "val_psnr_interior": 19.0}])

    def validate(self: Trainer) -> dict[str, float]:
        row = next(scripted)
        return {**row, "val_ssim": 0.9, "bicubic_psnr": 25.0, "bicubic_ssim": 0.8, "gain_db": row["val_psnr"] - 25.0}

    monkeypatch.setattr(Trainer, "validate", validate)
    Trainer(tiny_config(steps=6, log_every=2, val_every=2, val_grid=0, select_by=select_by),
            tmp_path / "run").fit(progress=False)
    best = torch.load(tmp_path / "run" / "best_ema.pt", weights_only=False)
    assert best["step"] == best_step and best["val"][select_by] == best_value



def test_with_a_tolerance_the_latest_step_near_the_best_is_kept() -> None:
    """Session 19's Robust: seed-128to512 +0.614 at 15k, then +0.608, +0.595, +0.612 (x4-native
    rising all the while); without a tolerance step 15k is kept, with 0.005 dB the last."""
    curve = [(14, 0.603), (15, 0.614), (16, 0.608), (19, 0.595), (24, 0.612)]

    def kept(tolerance: float) -> int:
        best, step = -math.inf, 0
        for at, value in curve:
            keep, best = keeps(value, best, tolerance)
            step = at if keep else step
        assert best == 0.614  # the best so far is the maximum either way
        return step

    assert kept(0.0) == 15 and kept(0.005) == 24 and kept(0.01) == 24
    assert kept(0.001) == 15  # 0.612 is 0.002 below
    assert keeps(0.5, 0.6, 0.2) == (True, 0.6) and keeps(0.3, 0.6, 0.2) == (False, 0.6)
    assert keeps(0.6, 0.6, 0.0) == (False, 0.6)  # a tie keeps the earlier step, as before


def test_select_tolerance_keeps_a_later_step_in_a_run(tiny_config: Make, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    scripted = iter([{"val_psnr": 30.0}, {"val_psnr": 29.95}, {"val_psnr": 29.0}])

    def validate(self: Trainer) -> dict[str, float]:
        row = next(scripted)
        return {**row, "val_ssim": 0.9, "bicubic_psnr": 25.0, "bicubic_ssim": 0.8, "gain_db": row["val_psnr"] - 25.0}

    monkeypatch.setattr(Trainer, "validate", validate)
    trainer = Trainer(tiny_config(steps=6, log_every=2, val_every=2, val_grid=0, select_tolerance=0.1), tmp_path / "run")
    trainer.fit(progress=False)
    best = torch.load(tmp_path / "run" / "best_ema.pt", weights_only=False)
    assert best["step"] == 4 and best["val"]["val_psnr"] == 29.95  # within 0.1 dB of step 2's 30.0; step 6 is not
    assert trainer.best_psnr == 30.0
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="select_tolerance must be 0 or a positive number of dB"):
            tiny_config(select_tolerance=bad)

def test_select_by_is_checked(tiny_config: Make) -> None:
    with pytest.raises(ConfigError, match="select_by must be val_psnr, val_psnr_interior, .* or val_psnr_interior_seed"):
        tiny_config(select_by="ssim")
    with pytest.raises(ConfigError, match="add it there"):  # a seed column without the seed validation
        tiny_config(select_by="val_psnr_seed")
    with pytest.raises(ConfigError, match="larger than 32 pixels"):
        tiny_config(select_by="val_psnr_interior", data__val_crop_size=32)


def test_resuming_under_another_select_by_starts_the_choice_again(tiny_config: Make, tmp_path: Path) -> None:
    trainer = Trainer(tiny_config(steps=4, val_every=2, val_grid=0), tmp_path / "a")
    trainer.fit(progress=False)
    state = trainer.state()
    assert state["select_by"] == "val_psnr" and state["best_psnr"] > 0
    same = Trainer(tiny_config(steps=4, val_every=2, val_grid=0), tmp_path / "b")
    same.load_state(state)
    other = Trainer(tiny_config(steps=4, val_every=2, val_grid=0, select_by="val_psnr_interior"), tmp_path / "c")
    other.load_state(state)
    assert same.best_psnr == state["best_psnr"] and other.best_psnr == float("-inf")


SEED = ["x4-native", "seed-128to512"]


@pytest.mark.parametrize(("protocols", "words"), [
    (["x4-native", "128to512"], "'128to512' is not a protocol"),
    (["seed-128to512"], "must list x4-native"),
    (["x4-native", "x4-native"], "each protocol once"),
])
def test_val_protocols_are_checked(tiny_config: Make, protocols: list[str], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        tiny_config(data__val_protocols=protocols)
    with pytest.raises(ConfigError, match="needs data.scale 4"):
        tiny_config(data__val_protocols=SEED, data__scale=2, model__params={"num_feat": 8, "num_conv": 2, "upscale": 2})


def test_the_config_knows_the_evaluation_protocols() -> None:
    from engine.evaluation import PROTOCOLS
    from training.config import VAL_PROTOCOLS

    assert VAL_PROTOCOLS == PROTOCOLS  # kept apart so a config check needs no skimage


def test_seed_validation_equals_cxr_enhance_eval_on_the_same_images(tiny_config: Make, tmp_path: Path) -> None:
    """The _seed columns are `cxr-enhance eval`'s seed-128to512 numbers for the EMA weights on the
    validation images (same pairs, same noise, same bicubic), beside unchanged x4-native columns."""
    from engine.evaluation import Method, baseline_methods, evaluate
    from training.data import train_val_files
    from training.report import run_model
    from training.trainer import SEED_COLUMNS, VAL_COLUMNS

    cfg = tiny_config(data__val_protocols=SEED, data__val_crops=2)
    trainer = Trainer(cfg, tmp_path / "seed")
    row = trainer.validate()
    plain = Trainer(tiny_config(data__val_crops=2), tmp_path / "plain").validate()
    assert set(row) == set(VAL_COLUMNS) | set(SEED_COLUMNS) and set(plain) == set(VAL_COLUMNS)
    assert all(row[k] == plain[k] for k in VAL_COLUMNS)

    val_dir = Path(cfg.data.val)
    images = train_val_files(cfg.data.train, cfg.data.val)[1][:2]
    ema = Method("ema", "model", lambda lr: run_model(trainer.ema.model, lr))
    result = evaluate(images, "seed-128to512", [*baseline_methods(), ema], root=val_dir)
    assert row["val_psnr_seed"] == pytest.approx(result.by_name("ema").mean("psnr"), abs=1e-9)
    assert row["val_ssim_seed"] == pytest.approx(result.by_name("ema").mean("ssim"), abs=1e-9)
    assert row["bicubic_psnr_seed"] == pytest.approx(result.by_name("bicubic").mean("psnr"), abs=1e-9)
    assert row["val_psnr_interior_seed"] == pytest.approx(result.by_name("ema").mean("psnr_interior"), abs=1e-9)
    assert row["gain_db_seed"] == pytest.approx(row["val_psnr_seed"] - row["bicubic_psnr_seed"])
    # 64x64 originals: seed-128to512 enlarges them to 512 and 128, unlike x4-native's 64 / 16
    assert trainer.seed_val_set[0][1].shape == (512, 512) and trainer.seed_val_set[0][0].shape == (128, 128)


def test_best_ema_can_be_chosen_under_seed_128to512_and_the_card_says_so(tiny_config: Make, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """x4-native peaks at step 2, seed-128to512 at step 4: select_by val_psnr_seed keeps step 4, the
    log and the card's training record carry both protocols."""
    from training.export import export_run

    scripted = iter([(30.0, 20.0), (29.0, 21.0), (28.0, 19.0)])

    def validate(self: Trainer) -> dict[str, float]:
        x4, seed = next(scripted)
        base = {"val_ssim": 0.9, "bicubic_psnr": 25.0, "bicubic_ssim": 0.8, "val_psnr_interior": x4,
                "bicubic_psnr_interior": 25.0, "gain_interior_db": x4 - 25.0}
        return {"val_psnr": x4, "gain_db": x4 - 25.0, **base,
                "val_psnr_seed": seed, "gain_db_seed": seed - 20.5, **{k + "_seed": v for k, v in base.items()}}

    monkeypatch.setattr(Trainer, "validate", validate)
    run = tmp_path / "run"
    Trainer(tiny_config(steps=6, log_every=2, val_every=2, data__val_protocols=SEED, select_by="val_psnr_seed"),
            run).fit(progress=False)
    best = torch.load(run / "best_ema.pt", weights_only=False)
    assert best["step"] == 4 and best["val"]["val_psnr_seed"] == 21.0
    log = read_log(run)
    assert [v for _, v in log["gain_db_seed"]] == [-0.5, 0.5, -1.5] and [v for _, v in log["gain_db"]] == [5, 4, 3]
    assert (run / "progress.png").is_file()

    card = export_run(run, tmp_path / "models", name="seedy")
    during = card.metrics["during_training"]
    assert during["protocol"] == "x4-native" and during["val_psnr"] == 29.0 and "val_psnr_seed" not in during
    assert during["seed-128to512"]["protocol"] == "seed-128to512"
    assert during["seed-128to512"]["val_psnr"] == 21.0 and during["seed-128to512"]["gain_db"] == 0.5
    history = card.training["validation"]
    assert "gain_db_seed" in history["columns"] and len(history["rows"]) == 3
