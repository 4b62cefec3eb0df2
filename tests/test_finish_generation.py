"""training/finish_generation.sh: the committed measurement of a new Fidelity generation."""

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
    assert (tmp_path / "before.json").stat().st_size > 0  # the report of the generation it replaces, from HEAD
