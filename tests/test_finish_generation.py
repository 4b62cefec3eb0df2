"""training/finish_generation.sh: the committed measurement of a new Fidelity generation or Robust."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "training" / "finish_generation.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})


def test_the_script_parses_and_says_what_is_missing() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    missing = _run("987654", DRY_RUN="1")  # no such run folder: one sentence, exit 2, nothing run
    assert missing.returncode == 2 and "runs/cpu-fidelity-987654 does not exist; train it first" in missing.stderr
    usage = _run()
    assert usage.returncode != 0 and "usage: training/finish_generation.sh N" in usage.stderr
    for wrong in (["sharp"], ["robust"]):  # neither a generation number nor robust with its run
        bad = _run(*wrong, DRY_RUN="1")
        assert bad.returncode != 0 and "training/finish_generation.sh robust RUN_DIR" in bad.stderr
    elsewhere = _run("987654", DRY_RUN="1", RUN_DIR="runs/gpu-fidelity-987654/")  # a run brought back from a GPU
    assert elsewhere.returncode == 2 and "runs/gpu-fidelity-987654 does not exist" in elsewhere.stderr
    missing = _run("robust", "runs/no-such-robust-run", DRY_RUN="1")
    assert missing.returncode == 2 and "runs/no-such-robust-run does not exist; train it first" in missing.stderr


def test_a_dry_run_names_every_output_of_the_generation(tmp_path: Path) -> None:
    run = ROOT / "runs" / "cpu-fidelity-987655"
    run.mkdir(parents=True)
    try:
        dry = _run("987655", DRY_RUN="1", OUT=str(tmp_path))
    finally:
        run.rmdir()
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[0].startswith("cxr-train export runs/cpu-fidelity-987655 --name cxr-fidelity-x4 --title Fidelity --default")
    assert any("--update-card --crops docs/screenshots/crops_models.png" in line for line in lines)
    assert any("--protocol seed-128to512" in line and "--crops docs/screenshots/crops_models_seed.png" in line
               for line in lines)
    assert any(f"compare {tmp_path}/before.json" in line and "compare_fidelity_gen987654_to_gen987655_fp32.txt" in line
               for line in lines)
    assert sum("--precision bf16 --update-card" in line for line in lines) == 2
    assert sum("eval-chain" in line for line in lines) == 4  # two chains: Robust and Fast fp32, Fidelity bf16
    assert any("training_fidelity_lineage.png" in line for line in lines)
    assert (tmp_path / "before.json").stat().st_size > 0  # the report of the generation it replaces, from HEAD
    assert (tmp_path / "chains_before.txt").read_text().startswith("#")  # whose header the new chain file keeps


def test_a_dry_run_for_robust_replaces_robust_and_leaves_fidelity_alone(tmp_path: Path) -> None:
    run = ROOT / "runs" / "robust-987656"
    run.mkdir(parents=True)
    try:
        dry = _run("robust", "runs/robust-987656/", DRY_RUN="1", OUT=str(tmp_path))
    finally:
        run.rmdir()
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[0] == f"cxr-train export runs/robust-987656 --name cxr-robust-x4 --title Robust > {tmp_path}/export.txt"
    assert "--default" not in lines[0]  # Fidelity stays the default model
    assert any("--update-card --crops docs/screenshots/crops_models.png" in line for line in lines)
    assert any(f"compare {tmp_path}/before.json" in line and f"{tmp_path}/compare_robust_replaced_to_new_fp32.txt" in line
               for line in lines)
    bf16 = [line for line in lines if "--precision bf16 --update-card" in line]
    assert len(bf16) == 1 and "--model cxr-robust-x4" in bf16[0]
    assert sum("eval-chain" in line for line in lines) == 4
    assert not any("lineage" in line for line in lines)
