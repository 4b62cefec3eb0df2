"""`cxr-enhance bench`: the JSON has what the report needs (tiny configurations, no timing checks)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.cli import main
from engine.sr import bench
from tests.engine.test_cli import TINY, install_tiny_model


@pytest.fixture
def tiny_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    folder = tmp_path / "models"
    folder.mkdir()
    install_tiny_model(folder)
    monkeypatch.setenv("CXR_ENHANCE_MODELS_DIR", str(folder))  # children inherit it
    return TINY


def test_speed_json_has_every_configuration(tiny_model: str, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    code = main(["bench", "--json", "--out", str(out), "--arch", tiny_model, "--size", "16",
                 "--repeats", "1", "--device", "cpu", "--tile", "8", "--overlap", "2", "-q",
                 "--matmul-size", "128", "--in-process"])
    assert code == 0
    report = json.loads(out.read_text())
    for key in ("arch", "size", "output_size", "params", "macs_per_input_pixel", "matmul",
                "matmul_after", "runs", "speedups", "machine", "load_average_start"):
        assert key in report, key
    assert report["output_size"] == 64 and report["matmul"]["gflops"] > 0
    labels = {(r["precision"], r["tile"]) for r in report["runs"]}
    assert labels == {("fp32", None), ("fp32", 8), ("bf16", None), ("bf16", 8)}
    for run in report["runs"]:
        assert run["output_shape"] == [64, 64]
        assert run["peak_rss_mb"] > 0 and run["output_mpix_per_s"] > 0 and run["gflops"] > 0
        assert run["tiles"] == (1 if run["tile"] is None else 4)
        assert run["matmul_gflops_after"] > 0 and run["fraction_of_matmul"] > 0
    assert {"bf16_speedup_untiled", "bf16_speedup_tiled", "tiling_cost_fp32"} <= set(
        report["speedups"])


def test_speed_update_card_writes_the_untiled_table(tiny_model: str, tmp_path: Path) -> None:
    from engine.sr.card import ModelCard
    from engine.sr.registry import find_model

    out = tmp_path / "bench.json"
    assert main(["bench", "--out", str(out), "--arch", tiny_model, "--size", "16", "--repeats", "1",
                 "--device", "cpu", "--tile", "8", "--overlap", "2", "-q", "--matmul-size", "128",
                 "--in-process", "--update-card"]) == 0
    report = json.loads(out.read_text())
    speed = ModelCard.load(find_model(tiny_model).card_path).extra["speed"]
    untiled = {r["resolved_precision"]: r for r in report["runs"] if r["tile"] is None}
    assert set(speed["input_16_output_64_s"]) == set(untiled) == {"fp32", "bf16"}
    assert speed["input_16_output_64_s"]["fp32"] == round(untiled["fp32"]["seconds_median"], 3)
    assert speed["macs_per_input_pixel"] == report["macs_per_input_pixel"]
    assert "--update-card" in speed["measured_with"] and str(out) in speed["measured_with"]


def test_update_card_needs_an_installed_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--arch", "compact", "--size", "16", "--repeats", "1", "--device", "cpu",
                 "-q", "--matmul-size", "128", "--in-process", "--update-card"]) == 2
    assert "needs --arch to name an installed model" in capsys.readouterr().err


def test_memory_json(tiny_model: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--memory", "--json", "--arch", tiny_model, "--size", "16",
                 "--device", "cpu", "--precision", "fp32"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "memory" and report["output_size"] == 64
    assert report["run"]["peak_rss_mb"] > 0 and report["within_target"] in (True, False)


def test_bf16_fidelity_json(tiny_model: str, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40), dtype=np.uint8)).save(image)
    assert main(["bench", "--bf16-fidelity", str(image), "--crop", "16", "--arch", tiny_model,
                 "--device", "cpu", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "fidelity" and report["crop"] == 16 and report["precision"] == "bf16"
    assert report["psnr_vs_fp32_db"] is None or report["psnr_vs_fp32_db"] > 30
    assert report["max_abs_diff"] < 0.05
    assert "raw_output_snr_db" in report and 0 <= report["clamped_fraction"] <= 1
    assert main(["bench", "--bf16-fidelity", str(image), "--crop", "16", "--arch", tiny_model,
                 "--device", "cpu"]) == 0
    assert "bf16 vs fp32" in capsys.readouterr().out


def test_display_bench_json(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("engine.display.bench")
    assert main(["bench", "--display", "--size", "64", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "display" and report["size"] == 64


def test_rates_and_speedups_arithmetic() -> None:
    run = {"size": 100, "seconds_median": 2.0}
    bench.add_rates(run, macs_per_pixel=1000.0, scale=4, matmul=10.0)
    assert run["output_mpix_per_s"] == pytest.approx(400 * 400 / 2.0 / 1e6)
    assert run["gflops"] == pytest.approx(2 * 1000 * 100 * 100 / 2.0 / 1e9)
    runs = [{"precision": "fp32", "tile": None, "seconds_median": 4.0},
            {"precision": "fp32", "tile": 64, "seconds_median": 6.0},
            {"precision": "bf16", "tile": None, "seconds_median": 2.0}]
    assert bench._speedups(runs) == {"tiling_cost_fp32": 1.5, "bf16_speedup_untiled": 2.0}


def test_random_architectures_build() -> None:
    assert bench.network_cost("compact")["scale"] == 4
