"""`cxr-train eval-chain`: models against bicubic on images degraded by the realistic chain."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine import evaluation as ev
from engine.cli import main as enhance_main
from training.chain_eval import chain_settings, pair_maker
from training.cli import main
from training.data import read_gray_uint8
from training.degradations import RealisticDegradation

from .conftest import LUNGS


def test_the_chains_pairs_are_seeded_by_the_image_name() -> None:
    image = read_gray_uint8(sorted(LUNGS.glob("*.png"))[0])
    mild = chain_settings("mild")
    assert mild["sigma_range"] == [0.2, 1.5] and mild["aliased_prob"] == 0.5  # cpu-robust's chain
    make = pair_maker(mild, 0)
    lr, hr = make(image, "a.png")
    h, w = image.shape[0] // 4 * 4, image.shape[1] // 4 * 4
    assert lr.shape == (h // 4, w // 4) and hr.shape == (h, w) and lr.dtype == hr.dtype == np.float32
    np.testing.assert_array_equal(hr, image[:h, :w] / np.float32(255))
    np.testing.assert_array_equal(lr * 255, np.rint(lr * 255))  # 8-bit, as the chain hands it out
    np.testing.assert_array_equal(lr, make(image, "a.png")[0])  # the same LR on every run
    assert not np.array_equal(lr, make(image, "b.png")[0])  # another image, other draws
    expected = RealisticDegradation.from_settings(mild)(np.ascontiguousarray(image[:h, :w]), 4, ev.image_rng(0, "a.png"))
    np.testing.assert_array_equal(lr, expected / np.float32(255))
    assert chain_settings("default") == {}
    with pytest.raises(ValueError, match="Unknown protocol"):
        ev.evaluate([], "realistic-mild", [])  # an engine protocol needs no maker; this one does


def test_eval_chain_reports_models_next_to_bicubic_for_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "chain.json"
    assert main(["eval-chain", str(LUNGS), "--model", "cxr-fast-x4", "--precision", "fp32", "--chain", "default",
                 "--json-out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "protocol realistic-default (2 images, seed 0)" in printed
    report = json.loads(out.read_text())
    protocol = report["protocols"][0]
    assert protocol["protocol"] == "realistic-default" and "RealisticDegradation at its defaults" in protocol["definition"]
    assert [m["method"] for m in protocol["methods"]] == ["bicubic", "lanczos", "cxr-fast-x4"]
    fast = protocol["methods"][2]
    assert fast["sha256"] and len(fast["per_image"]) == 2 and fast["mean"]["delta_psnr_vs_bicubic"] is not None
    # bicubic's score is bicubic of the chain's LR against the original
    image = read_gray_uint8(LUNGS / protocol["images"][0])
    lr, hr = pair_maker({}, 0)(image, protocol["images"][0])
    bicubic = ev.metrics(ev.upsample_bicubic(lr), hr)["psnr"]
    assert protocol["methods"][0]["per_image"][0]["psnr"] == pytest.approx(bicubic, abs=1e-9)
    # cxr-enhance compare reads the report
    assert enhance_main(["compare", str(out), "--methods", "bicubic", "cxr-fast-x4"]) == 0
    assert "realistic-default" in capsys.readouterr().out


def test_eval_chain_says_what_is_wrong_in_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval-chain", str(tmp_path / "nowhere")]) == 2
    assert f"{tmp_path / 'nowhere'}: no such file or folder." in capsys.readouterr().err
    assert main(["eval-chain", str(LUNGS), "--model", "no-such-model"]) == 2
    assert "no-such-model" in capsys.readouterr().err
