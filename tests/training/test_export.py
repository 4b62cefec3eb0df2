"""Export to safetensors + model card, and network interpolation between PSNR and GAN models."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from engine.sr.card import ModelCard
from engine.sr.weights import WeightsError, load_model
from training.cli import main
from training.config import TrainConfig
from training.export import NIH_ATTRIBUTION, export_run, interpolate
from training.trainer import Trainer

Make = Callable[..., TrainConfig]


@pytest.fixture
def two_runs(tiny_config: Make, tmp_path: Path) -> tuple[Path, Path]:
    """A PSNR run and a second run standing in for the GAN model (same architecture)."""
    Trainer(tiny_config(steps=2, log_every=2, val_every=2), tmp_path / "psnr").fit(progress=False)
    Trainer(tiny_config(steps=2, seed=7, optim__lr=1e-2), tmp_path / "gan").fit(progress=False)
    return tmp_path / "psnr", tmp_path / "gan"


def _state(path: Path) -> dict[str, torch.Tensor]:
    model, _ = load_model(path)
    return model.state_dict()


def test_interpolation_endpoints_are_the_two_models(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    psnr, gan = two_runs
    ends = {}
    for alpha in (0.0, 0.5, 1.0):
        card = interpolate(psnr, gan, alpha, tmp_path / "out" / f"a{alpha}.safetensors", dtype="fp32")
        assert card.training["alpha"] == alpha and card.sha256
        ends[alpha] = _state(tmp_path / "out" / f"a{alpha}.safetensors")
    psnr_ema = torch.load(psnr / "best_ema.pt", weights_only=True)["ema"]
    gan_ema = torch.load(gan / "best_ema.pt", weights_only=True)["ema"]
    for key in psnr_ema:
        assert torch.equal(ends[0.0][key], psnr_ema[key]) and torch.equal(ends[1.0][key], gan_ema[key])
        assert torch.allclose(ends[0.5][key], (psnr_ema[key] + gan_ema[key]) / 2, atol=1e-6)


def test_interpolation_refuses_other_architectures(two_runs: tuple[Path, Path], tiny_config: Make,
                                                   tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Trainer(tiny_config(steps=1, model__params__num_feat=4), tmp_path / "small").fit(progress=False)
    with pytest.raises(WeightsError, match="one architecture"):
        interpolate(two_runs[0], tmp_path / "small", 0.5, tmp_path / "x.safetensors")
    assert main(["interpolate", "--psnr", str(two_runs[0]), "--gan", str(two_runs[1]), "--alpha", "1.5",
                 "--out", str(tmp_path / "y.safetensors")]) == 2
    assert "alpha must be between 0" in capsys.readouterr().err


def test_export_writes_fp16_safetensors_and_a_full_card(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    psnr, _ = two_runs
    out = tmp_path / "models"
    assert main(["export", str(psnr), "--out", str(out), "--name", "cxr-tiny-x4", "--default"]) == 0
    model, card = load_model(out / "cxr-tiny-x4.safetensors")
    assert card.dtype == "fp16" and card.default and card.architecture == "SRVGGNetCompact"
    assert card.params["num_feat"] == 8 and card.scale == 4 and card.input_convention.startswith("gray")
    training = card.training
    assert training["attribution"] == NIH_ATTRIBUTION and "nihcc.app.box.com" in training["attribution"]
    assert training["degradation"].startswith("bicubic") and training["steps"] == 2
    assert training["commit"] and training["wall_time_s"] >= 0 and "cpu" in training["compute"]
    assert "steps_per_second" in training  # read from log.csv (tests/training/test_trainer.py)
    during = card.metrics["during_training"]
    assert during["protocol"] == "x4-native" and "val_psnr" in during and "bicubic_psnr" in during
    ema = torch.load(psnr / "best_ema.pt", weights_only=True)["ema"]
    for key, value in model.state_dict().items():
        assert torch.allclose(value, ema[key].half().float())
    # a second default takes the mark from the first
    export_run(psnr, out, name="second", default=True)
    assert not ModelCard.load(out / "cxr-tiny-x4.json").default and ModelCard.load(out / "second.json").default
    assert json.loads((out / "second.json").read_text())["weights_file"] == "second.safetensors"


def test_a_run_from_shipped_weights_carries_their_lineage_into_its_card(two_runs: tuple[Path, Path],
                                                                         tiny_config: Make, tmp_path: Path) -> None:
    out = tmp_path / "models"
    export_run(two_runs[0], out, name="cxr-tiny-x4", dtype="fp32")
    shipped = out / "cxr-tiny-x4.json"
    parent = json.loads(shipped.read_text())
    parent["speed"] = {"cpu": {"s_per_mpx": 1.5}}  # as bench --update-card writes it
    shipped.write_text(json.dumps(parent))
    weights = str(out / "cxr-tiny-x4.safetensors")
    Trainer(tiny_config(steps=3, log_every=3, val_every=3, init_from=weights, data__edge_fraction=0.5,
                        data__hard_fraction=0.25),
            tmp_path / "more").fit(progress=False)
    card = export_run(tmp_path / "more", out, name="cxr-tiny-x4")  # replaces the parent, as shipping does
    training = card.training
    assert [r["model"] for r in training["lineage"]] == ["cxr-tiny-x4"]
    assert training["lineage"][0]["sha256"] == parent["sha256"] and training["lineage"][0]["steps"] == 2
    assert training["steps_total"] == 2 + 3 and training["init_from"] == weights
    assert training["edge_fraction"] == 0.5
    assert (training["hard_fraction"], training["hard_candidates"]) == (0.25, 8)
    assert "hard_fraction" not in parent["training"]  # runs that never used it keep their cards as they were
    assert training["wall_time_total_s"] >= training["wall_time_s"]
    assert card.extra["speed"] == parent["speed"]  # same network, same speed
    # resuming after the export keeps the card the run started from, so a re-export is the same
    Trainer(tiny_config(steps=4, log_every=4, val_every=4, init_from=weights), tmp_path / "more").fit(progress=False)
    again = export_run(tmp_path / "more", out, name="cxr-tiny-x4")
    assert [r["sha256"] for r in again.training["lineage"]] == [parent["sha256"]]
    # a third generation lists both ancestors, oldest first
    Trainer(tiny_config(steps=1, log_every=1, val_every=1, init_from=weights), tmp_path / "third").fit(progress=False)
    third = export_run(tmp_path / "third", out, name="cxr-tiny-x4")
    assert [r["sha256"] for r in third.training["lineage"]] == [parent["sha256"], again.sha256]
    assert third.training["steps_total"] == 2 + 4 + 1


def test_export_of_a_missing_run_is_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(tmp_path / "nothing"), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"cxr-train: The run folder {tmp_path / 'nothing'} does not exist; name a folder under runs/."


def test_export_can_take_another_checkpoint_of_the_run(two_runs: tuple[Path, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    psnr, _ = two_runs
    # a copy of last.ckpt kept at some step, standing in with other weights
    kept = torch.load(psnr / "last.ckpt", weights_only=False)
    kept["ema"] = {k: v * 0.5 if v.is_floating_point() else v for k, v in kept["ema"].items()}
    torch.save(kept, tmp_path / "step_2.ckpt")
    out = tmp_path / "models"
    assert main(["export", str(psnr), "--out", str(out), "--name", "kept", "--checkpoint", str(tmp_path / "step_2.ckpt")]) == 0
    model, card = load_model(out / "kept.safetensors")
    for key, value in model.state_dict().items():
        assert torch.allclose(value, kept["ema"][key].half().float())
    assert card.notes.startswith("EMA weights from step_2.ckpt of run psnr.") and card.training["steps"] == 2
    assert card.metrics["during_training"]["val_psnr"]  # the logged validation of that step
    # a name inside the run folder works too, and differs from the default best_ema.pt only by its file
    last = export_run(psnr, out, name="last", checkpoint="last.ckpt")
    assert last.notes.startswith("EMA weights from last.ckpt") and last.sha256 != card.sha256
    assert main(["export", str(psnr), "--out", str(out), "--checkpoint", "step_9.ckpt"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"cxr-train: The checkpoint step_9.ckpt is neither a file nor in {psnr}; "
        "name last.ckpt, best_ema.pt, a step-NNNNNN.ckpt that keep_every kept, or the path of a saved copy.")


def test_the_card_says_how_the_weights_were_made_without_hand_edits(tmp_path: Path) -> None:
    """run.json keeps each session's command line; export joins them with its own, derives the
    speed into `compute` and adds --note to the notes."""
    import yaml

    from tests.training.conftest import tiny_values

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_values(tmp_path / "runs", steps=4, log_every=2, val_every=4)))
    run = tmp_path / "run"
    assert main(["psnr", "--config", str(config), "--run-dir", str(run), "--steps", "2"]) == 0
    assert main(["psnr", "--config", str(config), "--run-dir", str(run), "--resume"]) == 0
    sessions = json.loads((run / "run.json").read_text())["sessions"]
    train = f"cxr-train psnr --config {config} --run-dir {run}"
    assert [s["command"] for s in sessions] == [f"{train} --steps 2", f"{train} --resume"]
    log = run / "log.csv"  # tiny steps log elapsed_s 0.0: give the first session 4 s for its 2 steps
    rows = log.read_text().splitlines()
    log.write_text("\n".join([rows[0], rows[1].rsplit(",", 1)[0] + ",4.0", rows[2].rsplit(",", 1)[0] + ",1.0"]) + "\n")
    out = tmp_path / "models"
    assert main(["export", str(run), "--out", str(out), "--name", "m", "--note", "Better on 41 of 41."]) == 0
    card = json.loads((out / "m.json").read_text())
    training = card["training"]
    assert training["command"] == (f"{train} --steps 2; then {train} --resume; then cxr-train export {run} "
                                   f"--out {out} --name m --note ...")
    assert training["steps_per_second"] == {"min": 0.5, "median": 0.5, "max": 0.5}
    assert training["compute"].endswith("; 0.50 it/s median (0.50-0.50) at batch 4 x 32^2 HR patches")
    assert card["notes"] == "EMA weights from best_ema.pt of run run. Better on 41 of 41."
    # a run older than the recorded command line names it on the export command line
    legacy = export_run(run, out, name="m", command="cxr-train psnr --config old")
    assert legacy.training["command"] == "cxr-train psnr --config old"


def test_re_exporting_the_same_weights_keeps_what_was_measured_on_them(two_runs: tuple[Path, Path],
                                                                        tmp_path: Path) -> None:
    psnr, gan = two_runs
    out = tmp_path / "models"
    card = export_run(psnr, out, name="m")
    data = json.loads(card.path.read_text())
    data["metrics"]["x4-native"] = {"model": {"psnr": 40.0}}  # as eval --update-card writes them
    data["speed"] = {"cpu": {"s_per_mpx": 1.5}}  # as bench --update-card does
    card.path.write_text(json.dumps(data))
    again = export_run(psnr, out, name="m", title="M", note="Ships because it is better.", default=True)
    assert again.sha256 == card.sha256 and again.title == "M" and again.default
    assert again.metrics["x4-native"] == {"model": {"psnr": 40.0}} and "during_training" in again.metrics
    assert again.extra["speed"] == {"cpu": {"s_per_mpx": 1.5}} and again.notes.endswith("better.")
    assert ModelCard.load(out / "m.json") == again
    other = export_run(gan, out, name="m")  # other weights: nothing measured on the old ones carries over
    assert other.sha256 != card.sha256 and "x4-native" not in other.metrics and "speed" not in other.extra


def test_the_card_names_each_share_of_the_training_degradations() -> None:
    from training.config import load_config
    from training.export import _describe_degradation

    mixed = load_config("cpu-robust")
    text = _describe_degradation(mixed)
    assert text.startswith("seed-protocol on 25% of the patches: as seed-128to512 makes its pairs")
    plain = load_config("cpu-robust", {"data.seed_protocol_fraction": 0.0})
    assert _describe_degradation(plain).startswith("realistic on 50% of the patches: ")
    assert text.endswith("of the others, " + _describe_degradation(plain))
    assert _describe_degradation(load_config("cpu-fast")).startswith("bicubic: x4-native")
