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


# -- the history a model card keeps: runs/ is not in git and can be lost with a machine ------------

@pytest.fixture
def gen2_card(two_runs: list[Path], tmp_path: Path) -> Path:
    """The second run exported: its card lists the first run in training.lineage."""
    return export_run(two_runs[1], tmp_path / "models", name="gen2", dtype="fp32").path


def test_export_keeps_every_validation_row_in_the_card(two_runs: list[Path], gen2_card: Path) -> None:
    import json

    training = json.loads(gen2_card.read_text())["training"]
    for record, run in ((training["lineage"][0], two_runs[0]), (training, two_runs[1])):
        history = record["validation"]
        assert history["complete"] is True
        assert history["columns"][:2] == ["step", "val_psnr"] and "gain_interior_db" in history["columns"]
        logged = _log_rows(run)
        assert [r[0] for r in history["rows"]] == [int(r["step"]) for r in logged]
        gain = history["columns"].index("gain_db")
        assert [r[gain] for r in history["rows"]] == pytest.approx([float(r["gain_db"]) for r in logged], abs=1e-4)
        assert history["images"]["val_crops"] == 2 and history["images"]["scale"] == 4


def test_a_model_card_alone_draws_the_runs_that_trained_it(two_runs: list[Path], gen2_card: Path) -> None:
    from_runs = read_lineage(two_runs)
    from_card = read_lineage([str(gen2_card)])
    assert [(s.name, s.offset, s.steps) for s in from_card] == [(s.name, s.offset, s.steps) for s in from_runs]
    for a, b in zip(from_card, from_runs, strict=True):
        assert [s for s, _ in a.whole] == [s for s, _ in b.whole]
        assert [g for _, g in a.whole] == pytest.approx([g for _, g in b.whole], abs=1e-4)
        assert [g for _, g in a.interior] == pytest.approx([g for _, g in b.interior], abs=1e-4)
        assert a.bicubic_psnr == pytest.approx(b.bicubic_psnr, abs=1e-4)
        assert a.wall_s == pytest.approx(b.wall_s, abs=0.1) and a.complete
    # a run not yet exported goes after the model's own runs; one already in the card is refused
    with pytest.raises(ConfigError, match="second appears twice"):
        read_lineage([str(gen2_card), two_runs[1]])


def test_reference_from_a_card_alone_uses_the_validation_images_it_names(two_runs: list[Path], gen2_card: Path,
                                                                        tmp_path: Path) -> None:
    gen1 = str(tmp_path / "models" / "gen1.safetensors")
    from_runs = lineage(two_runs, None, [gen1])
    from_card = lineage([str(gen2_card)], None, [gen1])
    assert from_card == from_runs and "reference gen1" in from_card


def test_runs_with_lost_validation_rows_are_marked(gen2_card: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A record that keeps only some rows (its log was lost) is starred in the table and dashed."""
    import json

    from matplotlib.figure import Figure

    from training.lineage import write_lineage_plot

    card = json.loads(gen2_card.read_text())
    first = card["training"]["lineage"][0]["validation"]
    first.update(rows=[first["rows"][0], first["rows"][-1]], complete=False)
    first.pop("images")
    gen2_card.write_text(json.dumps(card))
    segments = read_lineage([gen2_card])
    assert [s.complete for s in segments] == [False, True] and len(segments[0].whole) == 2
    table = format_lineage(segments)
    assert "first *" in table and "dashed" in table and "second *" not in table
    styles: list[tuple[str, str]] = []
    titles: list[str] = []
    save = Figure.savefig

    def spy(fig: Figure, *args: object, **kwargs: object) -> None:
        styles.extend((line.get_linestyle(), line.get_label()) for line in fig.axes[0].get_lines())
        titles.extend(ax.get_title() for ax in fig.axes)
        save(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    write_lineage_plot(segments, tmp_path / "l.png")
    assert styles[0] == ("--", "model (EMA), some validation rows lost") and styles[1] == ("-", "model (EMA)")
    assert titles == ["validation gain, whole image (x4-native)", "validation gain, interior (x4-native)"]


def test_a_card_without_its_validation_images_cannot_take_a_reference(gen2_card: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import json

    card = json.loads(gen2_card.read_text())
    card["training"]["validation"].pop("images")
    gen2_card.write_text(json.dumps(card))
    assert main(["lineage", str(gen2_card), "--reference", str(tmp_path / "models" / "gen1.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "leave out --reference" in err and "Traceback" not in err
