"""`cxr-train lineage`: runs laid end to end, refused when they validated other images, and a
reference model measured on the same validation images by the trainer's own code."""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training.cli import main
from training.config import ConfigError, TrainConfig
from training.export import export_run
from training.lineage import format_lineage, lineage, read_lineage, reference_gains
from training.trainer import Trainer

Make = Callable[..., TrainConfig]


@pytest.fixture
def two_runs(tiny_config: Make, tmp_path: Path) -> list[Path]:
    """A first run of 4 steps and a second of 6 from its weights, validated every 2 steps."""
    first, second = tmp_path / "first", tmp_path / "second"
    Trainer(tiny_config(steps=4, log_every=2, val_every=2), first).fit(progress=False)
    export_run(first, tmp_path / "models", name="gen1", dtype="fp32")
    Trainer(tiny_config(steps=6, log_every=2, val_every=2,
                        init_from=str(tmp_path / "models" / "gen1.safetensors")), second).fit(progress=False)
    return [first, second]


def _log_rows(run: Path) -> list[dict[str, str]]:
    with (run / "log.csv").open(newline="") as fh:
        return [row for row in csv.DictReader(fh) if row["gain_db"]]


def test_runs_are_laid_end_to_end_with_their_logged_gains(two_runs: list[Path]) -> None:
    first, second = read_lineage(two_runs)
    assert (first.offset, first.steps, first.end) == (0, 4, 4)
    assert (second.offset, second.steps, second.end) == (4, 6, 10)
    assert [s for s, _ in first.whole] == [2, 4] and [s for s, _ in second.whole] == [6, 8, 10]
    logged = _log_rows(two_runs[1])
    assert [g for _, g in second.whole] == pytest.approx([float(r["gain_db"]) for r in logged])
    assert [g for _, g in second.interior] == pytest.approx([float(r["gain_interior_db"]) for r in logged])
    assert second.bicubic_psnr == pytest.approx(float(logged[-1]["bicubic_psnr"]))
    table = format_lineage([first, second])
    assert "first" in table and "4-10" in table and f"{second.whole[-1][1]:+.3f}" in table


def test_runs_validated_on_other_images_are_refused(two_runs: list[Path]) -> None:
    log = two_runs[1] / "log.csv"
    rows = list(csv.DictReader(log.open(newline="")))
    for row in rows:
        if row["bicubic_psnr"]:
            row["bicubic_psnr"] = f"{float(row['bicubic_psnr']) + 0.5:.4f}"
    with log.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(ConfigError, match="validated on other images than first"):
        read_lineage(two_runs)


def test_reference_is_measured_as_the_trainer_validates(tiny_config: Make, tmp_path: Path) -> None:
    run = tmp_path / "run"
    Trainer(tiny_config(steps=4, log_every=2, val_every=2), run).fit(progress=False)
    best = torch.load(run / "best_ema.pt", weights_only=False)["val"]
    card = export_run(run, tmp_path / "models", name="ref", dtype="fp32")
    name, gains = reference_gains(str(card.weights_path), tiny_config())
    assert name == "ref"
    assert gains["bicubic_psnr"] == pytest.approx(best["bicubic_psnr"], abs=1e-6)
    assert gains["gain_db"] == pytest.approx(best["gain_db"], abs=1e-3)
    assert gains["gain_interior_db"] == pytest.approx(best["gain_interior_db"], abs=1e-3)


def test_cli_prints_the_table_and_writes_the_plot(two_runs: list[Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plot" / "lineage.png"
    gen1 = tmp_path / "models" / "gen1.safetensors"
    code = main(["lineage", *map(str, two_runs), "--reference", str(gen1), "--out", str(out), "--title", "t"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "reference gen1" in printed and "same images" in printed and f"wrote {out}" in printed
    with Image.open(out) as im:
        assert im.size[0] > 800 and im.size[1] > 300
        assert np.asarray(im.convert("L")).std() > 10  # drawn, not blank


def test_cli_bad_input_is_one_sentence(two_runs: list[Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lineage", str(tmp_path / "nothing")]) == 2
    assert "has no log.csv" in capsys.readouterr().err
    assert main(["lineage", *map(str, two_runs), "--reference", "no-such-model"]) == 2
    err = capsys.readouterr().err
    assert "--reference" in err and "Traceback" not in err


def test_lineage_without_out_writes_nothing(two_runs: list[Path], tmp_path: Path) -> None:
    before = sorted(p.name for p in tmp_path.iterdir())
    assert "first" in lineage(two_runs, None, [])
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_both_panels_label_the_model_when_the_first_run_lacks_interior(two_runs: list[Path], tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Early runs logged no interior gain; the interior panel's legend still names the model's line."""
    from matplotlib.figure import Figure

    from training.lineage import write_lineage_plot

    first, second = read_lineage(two_runs)
    first = dataclasses.replace(first, interior=[])
    legends: list[list[str]] = []
    save = Figure.savefig

    def spy(fig: Figure, *args: object, **kwargs: object) -> None:
        legends.extend([t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes)
        save(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    write_lineage_plot([first, second], tmp_path / "l.png", {"ref": {"gain_db": 1.0, "gain_interior_db": 0.5}})
    assert legends == [["model (EMA)", "ref (+1.00)"], ["model (EMA)", "ref (+0.50)"]]
