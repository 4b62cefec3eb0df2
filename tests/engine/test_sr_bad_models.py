"""Bad models beside good ones: a pickle that carries code, cards with fields of the wrong type,
hyper-parameters that no network can have. Each gets one sentence and a way on (the card is
skipped, another model is picked), never a traceback; the good model in the same folder still
lists and enhances; a pickle's code never runs.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from engine.cli import main
from engine.sr.archs import build_model
from engine.sr.card import CardError, ModelCard
from engine.sr.weights import WeightsError, load_state_dict
from tests.engine.test_cli import RUN, TINY, install_tiny_model

BAD = "bad-model"


class Evil:
    """Unpickling this runs `touch <marker>`: the file appears only if a loader executes code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def models_dir(models_dir: Path) -> Path:
    """conftest's private models folder, with the tiny default model installed."""
    install_tiny_model(models_dir)
    return models_dir


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "a.png"
    path.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (12, 12), dtype=np.uint8)).save(path)
    return path


def install_bad(folder: Path, **changes: Any) -> Path:
    """A second, working tiny model whose card then gets `changes` (a value of None: JSON null)."""
    install_tiny_model(folder, BAD, offset=0.5)
    card_path = folder / f"{BAD}.json"
    card = json.loads(card_path.read_text())
    for key, value in changes.items():
        if key == "params":
            card["params"] = {**card["params"], **value} if isinstance(value, dict) else value
        else:
            card[key] = value
    card_path.write_text(json.dumps(card))
    return card_path


def no_traceback(text: str) -> None:
    assert "Traceback" not in text and "Error:" not in text


def good_model_still_works(image: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["enhance", str(image), "-o", str(out), "-q", *RUN]) == 0
    assert (out / "a_x4.png").is_file()
    capsys.readouterr()


def write_evil(path: Path, marker: Path, how: str) -> None:
    if how == "torch.save":
        torch.save({"params_ema": Evil(marker)}, path)
    else:
        with path.open("wb") as handle:
            pickle.dump({"params_ema": Evil(marker)}, handle, protocol=2)


# ------------------------------------------------------------------ 1. a pickle that carries code


@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_pickle_with_code_is_refused_and_never_run(tmp_path: Path, models_dir: Path, image: Path,
                                                    capsys: pytest.CaptureFixture[str], how: str) -> None:
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pth"
    write_evil(evil, marker, how)

    with pytest.raises(WeightsError) as exc:
        load_state_dict(evil)
    message = str(exc.value)
    assert message == ("The file evil.pth needs program code to load, which is refused for safety; "
                       "convert it to .safetensors with a tool you trust, then open that file.")
    assert not marker.exists()

    out = tmp_path / "out"
    assert main(["enhance", str(image), "-o", str(out), "--model", str(evil), *RUN]) == 1
    err = capsys.readouterr().err
    assert "needs program code to load, which is refused for safety" in err
    assert "truncated or damaged" not in err
    no_traceback(err)
    assert not marker.exists() and not (out / "a_x4.png").exists()
    good_model_still_works(image, out, capsys)
    assert not marker.exists()


def test_pickle_with_code_in_the_models_folder(tmp_path: Path, models_dir: Path, image: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "PWNED"
    card_path = install_bad(models_dir, weights_file="evil.pth", sha256="")
    write_evil(models_dir / "evil.pth", marker, "pickle")
    assert card_path.is_file()
    assert main(["models"]) == 0  # listing reads cards only
    assert BAD in capsys.readouterr().out
    out = tmp_path / "out"
    assert main(["enhance", str(image), "-o", str(out), "--model", BAD, *RUN]) == 1
    err = capsys.readouterr().err
    assert "evil.pth needs program code to load, which is refused for safety" in err
    no_traceback(err)
    good_model_still_works(image, out, capsys)
    assert not marker.exists()


def test_random_bytes_are_still_damaged_not_code(tmp_path: Path) -> None:
    # torch prefixes every weights-only failure with "Weights only load failed", garbage too
    # ("Unsupported operand 251"): that is a damaged file, not one that needs code.
    path = tmp_path / "junk.pth"
    path.write_bytes(b"\xfb" + bytes(range(256)) * 2)
    with pytest.raises(WeightsError, match="truncated or damaged.*copy or download it again"):
        load_state_dict(path)


# ------------------------------------------------------------------ 2. card fields of the wrong type

BAD_FIELDS = [
    ({"scale": "abc"}, 'scale is "abc", but it must be a whole number from 1 to 8'),
    ({"scale": None}, "scale is null, but it must be a whole number from 1 to 8"),
    ({"scale": 0}, "scale is 0, but it must be a whole number from 1 to 8"),
    ({"name": 123}, "name is 123, but it must be text"),
    ({"name": " "}, "name is empty, but it must name the model"),
    ({"title": 5}, "title is 5, but it must be text"),
    ({"weights_file": 5}, "weights_file is 5, but it must be text"),
    ({"metrics": [1, 2]}, "metrics is [1, 2], but it must be a JSON object"),
    ({"training": "lots"}, 'training is "lots", but it must be a JSON object'),
    ({"params": [64]}, "params is [64], but it must be a JSON object"),
    ({"default": "yes"}, 'default is "yes", but it must be true or false'),
    ({"params": {"num_feat": -1}}, "params.num_feat is -1, but it must be a whole number from 1 to 1024"),
    ({"params": {"num_feat": 0}}, "params.num_feat is 0, but it must be a whole number from 1 to 1024"),
    ({"params": {"num_conv": "2"}}, 'params.num_conv is "2", but it must be a whole number from 0 to 256'),
    ({"params": {"upscale": True}}, "params.upscale is true, but it must be a whole number from 1 to 8"),
]


@pytest.mark.parametrize("changes, reason", BAD_FIELDS)
def test_bad_card_is_skipped_and_the_good_model_works(
    tmp_path: Path, models_dir: Path, image: Path, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str], changes: dict[str, Any], reason: str,
) -> None:
    card_path = install_bad(models_dir, **changes)
    sentence = f"The model card {card_path} is unusable: {reason}; fix the card or pick another model."
    with pytest.raises(CardError) as exc:
        ModelCard.load(card_path)
    assert str(exc.value) == sentence

    with caplog.at_level(logging.WARNING, logger="engine.sr.registry"):
        assert main(["models"]) == 0
    out = capsys.readouterr()
    assert out.out.startswith(f"{TINY} (default)") and BAD not in out.out
    no_traceback(out.out + out.err)
    assert f"Skipping {card_path}: {sentence}" in caplog.text
    assert main(["models", "--json"]) == 0
    assert [m["name"] for m in json.loads(capsys.readouterr().out)["models"]] == [TINY]

    good_model_still_works(image, tmp_path / "out", capsys)
    # asked for by name it is not installed; by path, its card says what is wrong
    assert main(["enhance", str(image), "-o", str(tmp_path / "o2"), "--model", BAD, *RUN]) == 2
    err = capsys.readouterr().err
    assert f"No model is called '{BAD}'; installed models: {TINY}." in err
    assert main(["enhance", str(image), "-o", str(tmp_path / "o3"), "--model", str(card_path), *RUN]) == 2
    err = capsys.readouterr().err
    assert sentence in err
    no_traceback(err)


def test_scale_as_digits_text_is_still_read(models_dir: Path) -> None:
    card = ModelCard.load(install_bad(models_dir, scale="4"))
    assert card.scale == 4


# ------------------------------------------------------------------ 3. hyper-parameters


@pytest.mark.parametrize("arch, params, reason", [
    ("SRVGGNetCompact", {"num_feat": -1}, "num_feat is -1, but it must be a whole number from 1 to 1024"),
    ("SRVGGNetCompact", {"num_feat": 0}, "num_feat is 0, but it must be a whole number from 1 to 1024"),
    ("SRVGGNetCompact", {"num_feat": 8.0}, "num_feat is 8.0, but it must be a whole number from 1 to 1024"),
    ("SRVGGNetCompact", {"num_conv": -1}, "num_conv is -1, but it must be a whole number from 0 to 256"),
    ("SRVGGNetCompact", {"upscale": 0}, "upscale is 0, but it must be a whole number from 1 to 8"),
    ("RRDBNet", {"num_block": -2}, "num_block is -2, but it must be a whole number from 0 to 256"),
    ("RRDBNet", {"num_grow_ch": 0}, "num_grow_ch is 0, but it must be a whole number from 1 to 1024"),
    ("RRDBNet", {"num_in_ch": 10**6}, "num_in_ch is 1000000, but it must be a whole number from 1 to 64"),
])
def test_build_model_refuses_impossible_sizes(arch: str, params: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError) as exc:
        build_model(arch, params)
    assert str(exc.value) == f"Bad hyper-parameters for {arch}: {reason}."


def test_build_model_unknown_name_is_a_sentence() -> None:
    with pytest.raises(ValueError, match=r"^Bad hyper-parameters for RRDBNet: .*bogus.*\.$") as exc:
        build_model("RRDBNet", {"bogus": 1})
    assert "\n" not in str(exc.value)


def test_card_that_builds_no_network_is_listed_with_its_problem(
    tmp_path: Path, models_dir: Path, image: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    # Names this version does not know pass the card check (a newer card), so the model is
    # listed, with the reason it cannot run, and refused in a sentence when asked for.
    install_bad(models_dir, params={"bogus": 1})
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert f"{BAD}: Tiny test net {BAD}" in out and "problem       Bad hyper-parameters for " \
        "SRVGGNetCompact: " in out and "bogus" in out
    assert main(["enhance", str(image), "-o", str(tmp_path / "o"), "--model", BAD, *RUN]) == 1
    err = capsys.readouterr().err
    assert "Bad hyper-parameters for SRVGGNetCompact" in err and "pick another model." in err
    no_traceback(err)
    good_model_still_works(image, tmp_path / "out", capsys)


def _bare_safetensors(path: Path, params: str) -> None:
    """Weights without a card whose metadata carries `params` (as save_model writes them)."""
    install_tiny_model(path.parent, "donor")
    tensors = load_state_dict(path.parent / "donor.safetensors")
    for name in ("donor.safetensors", "donor.json"):
        (path.parent / name).unlink()
    save_file(tensors, str(path), metadata={"format": "pt", "architecture": "SRVGGNetCompact",
                                             "params": params})


def test_bare_weights_with_impossible_metadata(tmp_path: Path, models_dir: Path, image: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    bare = tmp_path / "bare" / "net.safetensors"
    bare.parent.mkdir()
    _bare_safetensors(bare, json.dumps({"num_feat": -1, "num_conv": 1, "upscale": 4}))
    assert main(["enhance", str(image), "-o", str(tmp_path / "o"), "--model", str(bare), *RUN]) == 1
    err = capsys.readouterr().err
    assert ("The file net.safetensors describes a network this version cannot build (num_feat is "
            "-1, but it must be a whole number from 1 to 1024); add a model card or pick another "
            "model.") in err
    no_traceback(err)
    good_model_still_works(image, tmp_path / "out", capsys)


def test_bare_weights_with_unreadable_metadata_are_detected(tmp_path: Path, models_dir: Path,
                                                            image: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    bare = tmp_path / "bare" / "net.safetensors"
    bare.parent.mkdir()
    _bare_safetensors(bare, "{not json")
    out = tmp_path / "o"
    assert main(["enhance", str(image), "-o", str(out), "-q", "--model", str(bare), *RUN]) == 0
    assert (out / "a_x4.png").is_file()
