"""Configs: presets load, bad settings and missing data give one clear sentence (CLI exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.cli import main
from training.config import ConfigError, config_from_dict, load_config, to_dict

from .conftest import tiny_values


def _one_sentence(text: str) -> bool:
    return text.endswith(".") and text.count(". ") == 0 and "\n" not in text


def test_presets_load_and_cpu_fast_keeps_its_meaning() -> None:
    fast = load_config("cpu-fast")
    assert (fast.model.arch, fast.model.params["num_feat"], fast.model.params["num_conv"]) == ("SRVGGNetCompact", 64, 12)
    assert (fast.data.hr_patch, fast.data.batch_size, fast.data.degradation) == (128, 16, "bicubic")
    assert (fast.optim.lr, fast.optim.schedule, fast.steps, fast.precision) == (5e-4, "cosine", 24000, "bf16")
    full = load_config("gpu-full")
    assert full.model.params["num_block"] == 23 and full.optim.milestones[0] == 200000
    rrdb = load_config("cpu-rrdb")
    assert rrdb.model.params["num_feat"] == 32 and rrdb.model.params["upsample_residual"] == "bicubic"
    gan = load_config("gan")
    assert (gan.stage, gan.optim.lr, gan.gan.gan_weight, gan.gan.pixel_weight) == ("gan", 1e-4, 5e-3, 1e-2)
    assert gan.optim.milestones == [50000, 100000, 200000, 300000]
    fidelity = load_config("cpu-fidelity")
    assert (fidelity.model.params["num_feat"], fidelity.model.params["num_block"]) == (64, 11)
    assert fidelity.model.zero_init_last and fidelity.data.batch_size == 8
    sharp = load_config("gan-fidelity")
    assert sharp.stage == "gan" and sharp.model.params == fidelity.model.params  # interpolable pair
    more = load_config("cpu-fidelity-continue")  # the next generation of the shipped Fidelity
    assert more.model.params == fidelity.model.params and 0 < more.data.edge_fraction < 0.5
    assert more.init_from == "resources/models/cxr-fidelity-x4.safetensors"
    assert more.optim.lr < fidelity.optim.lr  # a gentler restart than from scratch (preset comment)
    assert fast.data.edge_fraction == fidelity.data.edge_fraction == 0.0
    robust = load_config("cpu-robust")  # Fast's network on mostly realistic inputs, a copy kept per 1k steps
    assert robust.model.params == fast.model.params and robust.init_from == "resources/models/cxr-fast-x4.safetensors"
    assert (robust.data.degradation, robust.data.realistic_fraction, robust.keep_every) == ("realistic", 0.5, 1000)
    assert robust.data.seed_protocol_fraction == 0.25  # a quarter made as seed-128to512 makes its pairs
    assert robust.data.val_protocols == ["x4-native", "seed-128to512"] and robust.select_by == "val_psnr_seed"
    assert robust.data.realistic["sigma_range"] == [0.2, 1.5] and robust.data.realistic["aliased_prob"] == 0.5
    robust_rrdb = load_config("cpu-robust-rrdb")  # the same recipe on Fidelity's network
    assert robust_rrdb.model.params == fidelity.model.params
    assert robust_rrdb.init_from == "resources/models/cxr-fidelity-x4.safetensors"
    assert robust_rrdb.data.realistic == robust.data.realistic and robust_rrdb.keep_every == 1000
    assert robust_rrdb.data.realistic_fraction == 0.75 and robust_rrdb.data.seed_protocol_fraction == 0.0  # session 14's run
    assert robust_rrdb.data.val_protocols == ["x4-native", "seed-128to512"] and robust_rrdb.select_by == "val_psnr_seed"



def test_the_training_readme_preset_table_says_what_each_preset_does() -> None:
    """Each row's steps, peak learning rate and batch are the preset's: a row left at 3k when the
    preset went to 12k steps is a wrong instruction to whoever reproduces the model."""
    import re

    readme = (Path(__file__).resolve().parents[2] / "training" / "README.md").read_text()
    rows = re.findall(r"^\| `([a-z0-9-]+)` \|.*\| ([^|]+) \|$", readme, flags=re.M)
    presets = Path(__file__).resolve().parents[2] / "training" / "presets"
    assert sorted(name for name, _ in rows) == sorted(p.stem for p in presets.glob("*.yaml"))  # a row each
    for name, schedule in rows:
        config = load_config(name)
        steps = re.search(r"([\d.]+)(k|M) steps", schedule)
        if steps is None:  # "as `gan`"
            assert schedule.startswith("as `"), name
            continue
        factor = {"k": 1_000, "M": 1_000_000}[steps.group(2)]
        assert round(float(steps.group(1)) * factor) == config.steps, name
        lr = re.search(r"Adam ([\d.e-]+)", schedule)
        assert lr is not None and float(lr.group(1)) == config.optim.lr, name
        batch = re.search(r"batch (\d+)", schedule)
        assert (int(batch.group(1)) if batch else 16) == config.data.batch_size, name

def test_config_round_trips_through_plain_values(tmp_path: Path) -> None:
    cfg = config_from_dict(tiny_values(tmp_path))
    assert config_from_dict(to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"data__hr_patch": 30}, "multiple of the scale"),
        ({"precision": "fp8"}, "precision"),
        ({"optim__lr": "fast"}, "optim.lr must be a float"),
        ({"data__degradation": "jpeg"}, "degradation"),
        ({"stage": "gan"}, "init_from"),
        ({"stage": "gan", "init_from": "x", "data__hr_patch": 48}, "power of two"),
        ({"stage": "gan", "init_from": "x", "gan__feature_loss": "lpips"}, "feature_loss"),
        ({"data__workers": -1}, "workers"),
        ({"data__edge_fraction": 1.5}, "edge_fraction"),
        ({"data__hard_fraction": -0.1}, "hard_fraction"),
        ({"data__seed_protocol_fraction": 1.5}, "seed_protocol_fraction"),
        ({"data__hard_candidates": 1}, "hard_candidates"),
        ({"data__degradation": "realistic", "data__realistic_fraction": 1.5}, "realistic_fraction"),
        ({"data__realistic_fraction": 0.5}, "only apply with data.degradation: realistic"),
        ({"data__realistic": {"aliased_prob": 0.5}}, "only apply with data.degradation: realistic"),
        ({"data__degradation": "realistic", "data__realistic": {"aliased_prob": -1}}, "aliased_prob (-1) must be"),
        ({"data__degradation": "realistic", "data__realistic": {"blur": 1}}, "unknown setting 'blur'"),
        ({"data__degradation": "realistic", "data__realistic": {"sigma_range": [2, 1]}}, "sigma_range ([2, 1])"),
        ({"data__degradation": "realistic", "data__realistic": {"jpeg_quality": [30, 120]}}, "within 1-100"),
        ({"data__degradation": "realistic", "data__realistic": {"kernel_sizes": [4]}}, "odd integers"),
        ({"data__degradation": "realistic", "data__realistic": {"aliased_kernels": ["area"]}}, "bicubic, bilinear"),
        ({"model__zero_init_last": True, "model__params": {"num_feat": 8, "num_conv": 2, "upsample_residual": None}},
         "upsample_residual"),
    ],
)
def test_bad_values_raise_one_sentence(tmp_path: Path, overrides: dict, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict(tiny_values(tmp_path, **overrides))
    assert words in str(err.value) and _one_sentence(str(err.value))


def test_unknown_key_and_yaml_float_spellings(tmp_path: Path) -> None:
    values = tiny_values(tmp_path)
    values["data"]["patch"] = 64
    with pytest.raises(ConfigError, match="Unknown setting data.'patch'"):
        config_from_dict(values)
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 1e-4\n")  # YAML 1.1 reads this as a string
    assert load_config(path).optim.lr == 1e-4


def test_cli_bad_config_and_missing_data_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["psnr", "--config", "no-such-preset"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cxr-train: No config file or preset named 'no-such-preset'") and "\n" not in err
    missing = tmp_path / "nowhere"
    assert main(["psnr", "--config", "cpu-fast", "--set", f"data.train={missing}", "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"cxr-train: Data folder {missing} does not exist; point data.train / data.val at a folder of PNG or DICOM images."
    assert main(["psnr", "--set", "nonsense"]) == 2
    assert "key=value" in capsys.readouterr().err
