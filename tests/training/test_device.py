"""Training on a GPU lent for minutes at a time: pack the data, stop in time, bring the run back."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from engine.fileio import file_sha256
from training.checkpoints import BEST_NAME, load_run_file
from training.cli import main
from training.config import TrainConfig
from training.data import DataError
from training.device import (
    BUNDLE_TAR,
    FILES_BACK,
    MANIFEST,
    bundle_run,
    pack_data,
    unbundle_run,
)
from training.export import export_run
from training.trainer import CHECKPOINT_NAME, Trainer

from .conftest import LUNGS, tiny_values

Make = Callable[..., TrainConfig]
ROOT = Path(__file__).resolve().parents[2]
KIB = 1 / 1024


def _images(folder: Path, names: list[str], side: int = 64) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for name in names:
        path = folder / name
        Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8)).save(path)  # ~4 KiB, incompressible
        paths.append(path)
    return paths


def _log_rows(run: Path) -> list[dict[str, str]]:
    with (run / "log.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


# -- packing ---------------------------------------------------------------------------------------
def test_pack_fills_each_part_under_the_budget_patients_first_and_val_as_the_trainer_takes_it(
        tmp_path: Path) -> None:
    names = [f"{p:08d}_{k:03d}.png" for p in range(1, 7) for k in range(3)]  # 6 patients, 3 images each
    train = _images(tmp_path / "train", names)
    _images(tmp_path / "val", ["00000900_000.png", "00000100_000.png", "00000500_001.png"])
    size = train[0].stat().st_size
    budget_mib = (6.5 * size) / 2**20  # six images a part; part 1 also holds the two val images

    manifest = pack_data(tmp_path / "train", tmp_path / "val", tmp_path / "pack", max_mib=budget_mib,
                         parts=2, val_images=2, seed=3)

    out = tmp_path / "pack"
    assert manifest["val"] == ["00000100_000.png", "00000500_001.png"]  # the first two by name
    parts = manifest["parts"]
    assert [len(p["images"]) for p in parts] == [4, 6]
    for part in parts:
        assert part["bytes"] <= manifest["budget_bytes"]
    assert parts[0]["bytes"] + sum((out / "val" / n).stat().st_size for n in manifest["val"]) <= manifest["budget_bytes"]
    # Six patients before any patient's second image.
    first_six = parts[0]["images"] + parts[1]["images"][:2]
    assert len({n[:8] for n in first_six}) == 6
    # Byte-for-byte copies, listed with their sha256.
    for rel, digest in manifest["sha256"].items():
        assert file_sha256(out / rel) == digest == file_sha256(tmp_path / rel.split("/")[0] / Path(rel).name)
    assert json.loads((out / MANIFEST).read_text()) == manifest
    assert sorted(p.name for p in (out / "train").iterdir()) == ["part-1", "part-2"]

    with pytest.raises(DataError, match="already holds files"):
        pack_data(tmp_path / "train", tmp_path / "val", out, max_mib=budget_mib)
    with pytest.raises(DataError, match="do not fit"):
        pack_data(tmp_path / "train", tmp_path / "val", tmp_path / "p2", max_mib=size / 2**20, val_images=3)


def test_the_default_budget_is_a_call_less_the_tracked_tree(tmp_path: Path) -> None:
    from training.device import CALL_LIMIT, MARGIN, tracked_tree_bytes

    tree = tracked_tree_bytes(ROOT)
    assert 10 * 2**20 < tree < CALL_LIMIT  # the shipped weights alone are 17 MiB
    _images(tmp_path / "train", ["00000001_000.png"])
    _images(tmp_path / "val", ["00000002_000.png"])
    manifest = pack_data(tmp_path / "train", tmp_path / "val", tmp_path / "pack", repo=ROOT)
    assert manifest["budget_bytes"] == CALL_LIMIT - tree - MARGIN
    with pytest.raises(DataError, match="not a git checkout"):
        tracked_tree_bytes(tmp_path)


def test_pack_data_cli_says_what_each_call_carries(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _images(tmp_path / "train", [f"0000000{p}_000.png" for p in range(1, 5)])
    _images(tmp_path / "val", ["00000009_000.png"])
    assert main(["pack-data", "--train", str(tmp_path / "train"), "--val", str(tmp_path / "val"),
                 "--out", str(tmp_path / "pack"), "--max-mib", "1"]) == 0
    out = capsys.readouterr().out
    assert "packed 4 of 4 training images (4 patients) in 1 part(s)" in out
    assert f"{tmp_path}/pack/train/part-1" in out and f"{tmp_path}/pack/val" in out
    assert main(["pack-data", "--train", str(tmp_path / "nowhere"), "--val", str(tmp_path / "val"),
                 "--out", str(tmp_path / "p2"), "--max-mib", "1"]) == 2
    assert "does not exist" in capsys.readouterr().err


# -- stopping in time ------------------------------------------------------------------------------
def test_max_seconds_stops_with_a_validation_and_a_checkpoint_that_resumes(tiny_config: Make, tmp_path: Path) -> None:
    cfg = tiny_config(steps=10, log_every=5, val_every=10, ckpt_every=5)
    run = tmp_path / "run"
    first = Trainer(cfg, run)
    first.fit(progress=False, max_seconds=0.0)  # stops after the first step
    assert first.stopped_early and first.step == 1
    assert torch.load(run / CHECKPOINT_NAME, weights_only=False)["step"] == 1
    rows = _log_rows(run)
    assert [int(r["step"]) for r in rows] == [1] and rows[0]["val_psnr"]  # validated at the stop
    assert load_run_file(run / BEST_NAME)["step"] == 1

    resumed = Trainer(cfg, run)
    resumed.load_checkpoint(run / CHECKPOINT_NAME)
    resumed.fit(progress=False, max_seconds=3600.0)
    assert not resumed.stopped_early and resumed.step == 10
    assert [int(r["step"]) for r in _log_rows(run)] == [1, 5, 10]


def test_max_minutes_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["psnr", "--config", "cpu-fast", "--max-minutes", "0"]) == 2
    assert "--max-minutes takes a positive number" in capsys.readouterr().err


# -- bringing the run back -------------------------------------------------------------------------
@pytest.fixture
def trained_run(tiny_config: Make, tmp_path: Path) -> Path:
    run = tmp_path / "device" / "runs" / "gpu-1"
    Trainer(tiny_config(steps=10), run).fit(progress=False)
    return run


def test_bundle_and_unbundle_rebuild_a_run_that_exports_the_same_weights(trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "OUT"
    paths = bundle_run(trained_run, out, part_bytes=2000)  # the tiny network's fp16 weights: several parts
    assert len(paths) > 2 and len(paths) <= FILES_BACK
    assert all(p.stat().st_size <= 2000 for p in paths[:-1]) and paths[-1].name == BUNDLE_TAR

    here = tmp_path / "here" / "gpu-1"
    info = unbundle_run(out, here)
    assert info["step"] == 10 and set(info["files"]) == {"config.yaml", "run.json", "log.csv"}
    for name in info["files"]:
        assert (here / name).read_bytes() == (trained_run / name).read_bytes()
    there_best, here_best = load_run_file(trained_run / BEST_NAME), load_run_file(here / BEST_NAME)
    assert here_best["step"] == there_best["step"] and here_best["val"] == there_best["val"]
    for key, value in there_best["ema"].items():
        assert torch.equal(here_best["ema"][key], value.half().float())

    card_there = export_run(trained_run, tmp_path / "m1", name="m")
    card_here = export_run(here, tmp_path / "m2", name="m")
    assert card_here.sha256 == card_there.sha256
    assert card_here.metrics == card_there.metrics and card_here.metrics
    assert card_here.training == card_there.training


def test_unbundle_refuses_damaged_or_missing_parts_and_a_used_run_folder(trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "OUT"
    parts = bundle_run(trained_run, out, part_bytes=2000)[:-1]
    used = tmp_path / "used"
    used.mkdir()
    (used / "log.csv").write_text("step\n")
    with pytest.raises(DataError, match="already holds files"):
        unbundle_run(out, used)
    data = bytearray(parts[1].read_bytes())
    data[10] ^= 0xFF
    parts[1].write_bytes(bytes(data))
    with pytest.raises(DataError, match="damaged"):
        unbundle_run(out, tmp_path / "a")
    parts[1].unlink()
    with pytest.raises(DataError, match="missing"):
        unbundle_run(out, tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    with pytest.raises(DataError, match="more than the 8 files"):
        bundle_run(trained_run, tmp_path / "OUT2", part_bytes=100)


# -- the script a call runs ------------------------------------------------------------------------
def test_device_train_runs_two_calls_that_resume_and_bring_back_a_bundle(tmp_path: Path) -> None:
    """The device's command, here on the CPU: pack, call 1 stops in time, call 2 resumes and ends."""
    pack_data(LUNGS, LUNGS, tmp_path / "repo" / "runs" / "devdata", max_mib=1, val_images=2)
    preset = tmp_path / "tiny.yaml"
    values = tiny_values(tmp_path / "unused", steps=6, log_every=2, val_every=6, ckpt_every=2)
    preset.write_text(yaml.safe_dump(values))
    repo = tmp_path / "repo"
    env = {**os.environ, "PRESET": str(preset), "PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}

    def call(minutes: str, out: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(ROOT / "training" / "device_train.sh"), "gpu-1", minutes],
                              cwd=repo, env={**env, "OUT": str(out)}, capture_output=True, text=True, timeout=300)

    first = call("0.00001", tmp_path / "out1")
    assert first.returncode == 0, first.stderr
    assert "stopped at step 1 of 6" in first.stdout and "--resume" not in first.stdout.split("+ ")[1].split("\n")[0]
    second = call("60", tmp_path / "out2")
    assert second.returncode == 0, second.stderr
    assert "resumed from" in second.stdout and "done:" in second.stdout
    rebuilt = tmp_path / "here"
    info = unbundle_run(tmp_path / "out2", rebuilt)
    assert info["step"] in (1, 6)  # the best of the validations at steps 1 and 6
    assert [int(r["step"]) for r in _log_rows(rebuilt)] == [1, 2, 4, 6]
    assert len(json.loads((rebuilt / "run.json").read_text())["sessions"]) == 2

    dry = subprocess.run(["bash", str(ROOT / "training" / "device_train.sh"), "gpu-2", "8"], cwd=repo,
                         env={**env, "OUT": str(tmp_path / "o"), "DRY_RUN": "1"}, capture_output=True, text=True)
    assert dry.returncode == 0 and "--max-minutes 8" in dry.stdout and "bundle runs/gpu-2" in dry.stdout
    missing = subprocess.run(["bash", str(ROOT / "training" / "device_train.sh"), "gpu-3", "8"], cwd=tmp_path,
                             env={**env, "OUT": str(tmp_path / "o")}, capture_output=True, text=True)
    assert missing.returncode == 2 and "cxr-train pack-data" in missing.stderr


def test_the_gpu_preset_continues_the_shipped_fidelity_on_the_cpu_runs_validation_images() -> None:
    from training.config import load_config

    gpu, cpu = load_config("gpu-fidelity-continue"), load_config("cpu-fidelity-continue")
    assert gpu.init_from == cpu.init_from and gpu.model == cpu.model
    assert gpu.data.val_crops == cpu.data.val_crops and gpu.data.val_crop_size == cpu.data.val_crop_size
    assert gpu.select_by == cpu.select_by and gpu.data.edge_fraction == cpu.data.edge_fraction
    assert gpu.data.train == "runs/devdata/train" and gpu.data.val == "runs/devdata/val"


def test_planned_steps_use_the_speed_after_the_first_row(tmp_path: Path) -> None:
    from training.device import planned_steps

    (tmp_path / "log.csv").write_text("step,loss,elapsed_s\n100,0.1,30.0\n200,0.1,32.0\n300,0.1,34.0\n")
    assert planned_steps(tmp_path, 10) == int(50 * 600 * 0.85)  # 50 it/s after the start-up row
    (tmp_path / "log.csv").write_text("step,loss,elapsed_s\n100,0.1,30.0\n")
    with pytest.raises(DataError, match="too few rows"):
        planned_steps(tmp_path, 10)


def test_steps_auto_sizes_the_schedule_by_a_probe(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    pack_data(LUNGS, LUNGS, repo / "runs" / "devdata", max_mib=1, val_images=2)
    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump(tiny_values(tmp_path / "unused", log_every=2, val_every=1000)))
    env = {**os.environ, "PRESET": str(preset), "PYTHON": sys.executable, "PYTHONPATH": str(ROOT),
           "OUT": str(tmp_path / "out"), "STEPS": "auto"}
    done = subprocess.run(["bash", str(ROOT / "training" / "device_train.sh"), "gpu-1", "0.01"], cwd=repo,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    probe = yaml.safe_load((repo / "runs" / "gpu-1-probe" / "config.yaml").read_text())
    run = yaml.safe_load((repo / "runs" / "gpu-1" / "config.yaml").read_text())
    from training.device import planned_steps

    assert run["steps"] == planned_steps(repo / "runs" / "gpu-1-probe", 0.01) != probe["steps"]
    assert (tmp_path / "out" / BUNDLE_TAR).is_file()


def test_a_gan_preset_trains_the_gan_stage_never_l1_by_its_command(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The command used to override the preset's stage: `cxr-train psnr --config gan-fidelity` (as
    # device_train.sh once hard-coded) trained plain L1 with no discriminator and no error.
    assert main(["psnr", "--config", "gan-fidelity", "--run-dir", str(tmp_path / "r")]) == 2
    assert "gan-stage config: run it with `cxr-train gan`" in capsys.readouterr().err
    assert main(["psnr", "--config", "gan", "--set", "stage=gan", "--run-dir", str(tmp_path / "r")]) == 2
    assert "--set stage=gan does not match `cxr-train psnr`" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    (tmp_path / "devdata" / "train").mkdir(parents=True)
    (tmp_path / "devdata" / "val").mkdir()
    env = {**os.environ, "OUT": str(tmp_path / "o"), "DRY_RUN": "1", "PRESET": "gan-fidelity",
           "DATA": str(tmp_path / "devdata"), "STEPS": "auto", "PYTHONPATH": str(ROOT),
           "PYTHON": sys.executable}
    dry = subprocess.run(["bash", str(ROOT / "training" / "device_train.sh"), "sharp-1", "7"],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    commands = [line for line in dry.stdout.splitlines() if "training.cli" in line]
    assert len(commands) == 3 and all(" gan " in c for c in commands[:2]), commands
    assert "training.cli psnr" not in dry.stdout
