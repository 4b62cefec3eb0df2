"""Quality protocols and metrics (engine.evaluation): small synthetic images, no network."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from engine import evaluation as ev


def _radiograph_like(size: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = 120 + 80 * np.sin(5 * x) * np.cos(3 * y) + rng.normal(0, 6, (size, size))
    return np.clip(base, 0, 255).astype(np.uint8)


def test_degrade_x4_native_is_pil_bicubic_and_stays_8bit() -> None:
    hr = _radiograph_like(64)
    lr = ev.degrade_x4_native(hr)
    expected = np.asarray(Image.fromarray(hr).resize((16, 16), Image.Resampling.BICUBIC))
    assert lr.dtype == np.uint8 and lr.shape == (16, 16)
    np.testing.assert_array_equal(lr, expected)


def test_upsamplers_are_float_x4_and_clipped() -> None:
    lr = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    for up in (ev.upsample_bicubic, ev.upsample_lanczos):
        out = up(lr, 4)
        assert out.shape == (8, 8) and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert up(lr, 4, clip=False).min() < 0.0  # the kernels overshoot; clipping is ours


def test_metrics_match_skimage_and_identity_is_infinite() -> None:
    rng = np.random.default_rng(1)
    hr = rng.random((32, 32)).astype(np.float32)
    sr = np.clip(hr + rng.normal(0, 0.05, hr.shape), 0, 1).astype(np.float32)
    m = ev.metrics(sr, hr)
    hr64, sr64 = hr.astype(np.float64), sr.astype(np.float64)
    assert m["psnr"] == pytest.approx(peak_signal_noise_ratio(hr64, sr64, data_range=1.0))
    assert m["ssim"] == pytest.approx(structural_similarity(hr64, sr64, data_range=1.0))
    assert m["mse"] == pytest.approx(np.mean((sr64 - hr64) ** 2))
    assert ev.metrics(hr, hr)["psnr"] == float("inf")
    with pytest.raises(ValueError):
        ev.metrics(hr[:8], hr)


def test_interior_metrics_leave_out_the_margin() -> None:
    rng = np.random.default_rng(2)
    hr = rng.random((64, 64)).astype(np.float32)
    sr = hr.copy()
    sr[:ev.INTERIOR_MARGIN] = 0.0  # damage only the top strip
    inner = ev.interior_metrics(sr, hr)
    assert inner["psnr_interior"] == float("inf") and inner["ssim_interior"] == pytest.approx(1.0)
    assert ev.metrics(sr, hr)["psnr"] < 15
    sr[ev.INTERIOR_MARGIN + 3, 30] += 0.5  # one interior pixel
    expected = ev.metrics(sr[16:-16, 16:-16], hr[16:-16, 16:-16])
    assert ev.interior_metrics(sr, hr)["psnr_interior"] == pytest.approx(expected["psnr"])
    assert np.isnan(ev.interior_metrics(hr[:32, :32], hr[:32, :32])["psnr_interior"])


def test_interior_from_one_ssim_map_equals_the_cropped_image() -> None:
    # evaluate() computes SSIM once per image and method: the interior numbers come from the whole
    # image's maps and must equal what the cropped image scores on its own.
    rng = np.random.default_rng(4)
    hr = rng.random((96, 80)).astype(np.float32)
    sr = np.clip(hr + rng.normal(0, 0.05, hr.shape), 0, 1).astype(np.float32)
    m = ev.metrics(sr, hr, margin=ev.INTERIOR_MARGIN)
    hr64, sr64 = hr.astype(np.float64)[16:-16, 16:-16], sr.astype(np.float64)[16:-16, 16:-16]
    assert m["ssim_interior"] == pytest.approx(structural_similarity(hr64, sr64, data_range=1.0), abs=1e-12)
    assert m["psnr_interior"] == pytest.approx(peak_signal_noise_ratio(hr64, sr64, data_range=1.0), abs=1e-10)
    assert m["ssim"] == ev.metrics(sr, hr)["ssim"] and "psnr_interior" not in ev.metrics(sr, hr)
    # the smallest image with an interior: 2 margins + one 7-pixel SSIM window
    assert not np.isnan(ev.metrics(sr[:39, :39], hr[:39, :39], margin=16)["ssim_interior"])
    assert np.isnan(ev.metrics(sr[:38, :38], hr[:38, :38], margin=16)["ssim_interior"])


def test_lung_fields_are_two_squares_in_the_lungs_scored_from_the_same_maps() -> None:
    rng = np.random.default_rng(3)
    hr = rng.random((200, 160))
    sr = np.clip(hr + rng.normal(0, 0.05, hr.shape), 0, 1)
    squares = ev.lung_fields(hr.shape)
    # a quarter of the shorter side (40 px), centred 42 % down (84) and 28 % / 72 % across (45, 115)
    assert squares == [(slice(64, 104), slice(25, 65)), (slice(64, 104), slice(95, 135))]
    m = ev.metrics(sr, hr, lungs=True)
    pooled = np.concatenate([(sr[sq] - hr[sq]).ravel() for sq in squares])
    assert m["psnr_lungs"] == pytest.approx(-10 * np.log10(np.mean(pooled ** 2)), abs=1e-10)
    _, ssim_map = structural_similarity(hr, sr, data_range=1.0, full=True)
    assert m["ssim_lungs"] == pytest.approx(np.mean([ssim_map[sq].mean() for sq in squares]), abs=1e-12)
    # an error outside the lung fields leaves them alone; one inside lowers them
    outside, inside = sr.copy(), sr.copy()
    outside[5, 5] = 1 - hr[5, 5]
    inside[80, 40] = 1 - hr[80, 40]
    assert ev.metrics(outside, hr, lungs=True)["psnr_lungs"] == m["psnr_lungs"]
    assert ev.metrics(inside, hr, lungs=True)["psnr_lungs"] < m["psnr_lungs"]
    assert "psnr_lungs" not in ev.metrics(sr, hr)
    assert np.isnan(ev.metrics(sr[:24, :24], hr[:24, :24], lungs=True)["ssim_lungs"])  # 6-px squares


def test_seed_pair_sizes_noise_and_determinism() -> None:
    img = _radiograph_like(256)
    lr1, hr1 = ev.seed_128to512_pair(img, np.random.default_rng(3))
    lr2, hr2 = ev.seed_128to512_pair(img, np.random.default_rng(3))
    assert lr1.shape == (128, 128) and hr1.shape == (512, 512)
    assert lr1.dtype == hr1.dtype == np.float32
    np.testing.assert_array_equal(lr1, lr2)
    np.testing.assert_array_equal(hr1, hr2)
    assert 0.0 <= lr1.min() and lr1.max() <= 1.0
    # the noise is the protocol's 0.005 std (measured away from clipping)
    noiseless = ev.torch_bicubic(img.astype(np.float32) / 255, 128)
    residual = (lr1 - noiseless)[(noiseless > 0.05) & (noiseless < 0.95)]
    assert residual.std() == pytest.approx(ev.SEED_NOISE_STD, rel=0.1)


def test_image_noise_depends_on_name_not_order() -> None:
    a = ev.image_rng(0, "a.png").normal(size=4)
    assert np.array_equal(a, ev.image_rng(0, "a.png").normal(size=4))
    assert not np.array_equal(a, ev.image_rng(0, "b.png").normal(size=4))
    assert not np.array_equal(a, ev.image_rng(1, "a.png").normal(size=4))


def test_rgba_and_16bit_become_gray_uint8() -> None:
    rgba = Image.fromarray(np.full((8, 8, 4), 200, dtype=np.uint8), mode="RGBA")
    assert ev.to_gray_uint8(rgba).dtype == np.uint8
    assert ev.to_gray_uint8(rgba)[0, 0] == 200
    sixteen = Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16))
    assert ev.to_gray_uint8(sixteen)[0, 0] == 255


def _write_images(folder: Path, n: int = 2, size: int = 64) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"img{i}.png"
        Image.fromarray(_radiograph_like(size, seed=i)).save(path)
        paths.append(path)
    return paths


def test_evaluate_x4_native_bicubic_equals_direct_skimage(tmp_path: Path) -> None:
    paths = _write_images(tmp_path)
    result = ev.evaluate(paths, "x4-native", ev.baseline_methods(), root=tmp_path)
    bicubic = result.by_name("bicubic")
    assert bicubic is not None and result.images == ["img0.png", "img1.png"]
    for path, score in zip(paths, bicubic.scores, strict=True):
        hr8 = np.asarray(Image.open(path))
        lr8 = np.asarray(Image.fromarray(hr8).resize((16, 16), Image.Resampling.BICUBIC))
        up = Image.fromarray(lr8.astype(np.float32) / 255).resize((64, 64),
                                                                   Image.Resampling.BICUBIC)
        sr = np.clip(np.asarray(up), 0, 1).astype(np.float64)
        hr = hr8.astype(np.float64) / 255
        assert score.psnr == pytest.approx(peak_signal_noise_ratio(hr, sr, data_range=1.0),
                                           abs=1e-4)
        assert score.ssim == pytest.approx(structural_similarity(hr, sr, data_range=1.0),
                                           abs=1e-5)


def test_report_json_and_table(tmp_path: Path) -> None:
    paths = _write_images(tmp_path)
    result = ev.evaluate(paths, "seed-128to512", ev.baseline_methods(), root=tmp_path)
    data = json.loads(json.dumps(ev.result_to_json(result)))
    assert data["protocol"] == "seed-128to512" and data["images"] == ["img0.png", "img1.png"]
    lanczos = next(m for m in data["methods"] if m["method"] == "lanczos")
    assert len(lanczos["per_image"]) == 2
    assert lanczos["mean"]["delta_psnr_vs_bicubic"] is not None
    assert 0 <= lanczos["mean"]["ssim_wins_vs_bicubic_pct"] <= 100
    assert lanczos["mean"]["delta_psnr_lungs_vs_bicubic"] is not None and "psnr_lungs" in lanczos["per_image"][0]
    assert data["lungs"] == ev.LUNGS_DEFINITION
    table = ev.format_table(result)
    assert "bicubic" in table and "lanczos" in table


def test_difference_from_bicubic_is_what_the_model_added() -> None:
    rng = np.random.default_rng(5)
    lr = rng.random((12, 10)).astype(np.float32) * 1000.0  # any units: modality values
    base = ev.upsample_bicubic(lr, 4, clip=False)
    added = np.zeros_like(base)
    added[10:20, 5:9] = 7.0
    diff = ev.difference_from_bicubic(lr, base + added, 4)
    assert diff.dtype == np.float32 and diff.shape == (48, 40)
    np.testing.assert_allclose(diff, added, atol=1e-3)
    # an output a few pixels short (odd region sizes) gives the common part
    assert ev.difference_from_bicubic(lr, (base + added)[:46, :39], 4).shape == (46, 39)


def _report(methods: dict[str, list[float]], kind: str = "model") -> dict:
    """An eval report with one protocol; each method's per-image PSNR (SSIM = PSNR / 100)."""
    return {"protocols": [{"protocol": "x4-native", "methods": [
        {"method": name, "kind": "baseline" if name == "bicubic" else kind,
         "per_image": [{"image": f"im{i}.png", "psnr": v, "psnr_interior": v + 1, "ssim": v / 100,
                        "ssim_interior": None} for i, v in enumerate(values)]}
        for name, values in methods.items()]}]}


def test_compare_reports_counts_images_better_and_worse() -> None:
    before = _report({"bicubic": [30.0, 30.0, 30.0], "m": [31.0, 32.0, 33.0]})
    after = _report({"bicubic": [30.0, 30.0, 30.0], "m": [31.5, 31.0, 33.0]})
    rows = {r["metric"]: r for r in ev.compare_reports(before, after)}  # models only: m -> m
    assert set(rows) == {"psnr", "psnr_interior", "ssim"}  # no SSIM-interior scores: no row
    psnr = rows["psnr"]
    assert (psnr["before"], psnr["after"], psnr["images"]) == ("m", "m", 3)
    assert psnr["mean"] == pytest.approx(-0.5 / 3) and psnr["median"] == pytest.approx(0.0)
    assert (psnr["better"], psnr["worse"], psnr["equal"]) == (1, 1, 1)
    assert psnr["worst"] == {"image": "im1.png", "diff": -1.0} and psnr["best"] == {"image": "im0.png", "diff": 0.5}
    assert rows["ssim"]["mean"] == pytest.approx(-0.005 / 3)
    # two methods of one report; images missing from one side are left out
    rows = ev.compare_reports(before, _report({"m": [31.0, 35.0]}), [("bicubic", "m")])
    assert rows[0]["images"] == 2 and rows[0]["mean"] == pytest.approx(3.0)
    table = ev.format_comparison(rows)
    assert "bicubic -> m" in table and "+3.000" in table and "2/2" in table


def test_compare_reports_can_leave_out_the_images_a_choice_was_made_on() -> None:
    before = _report({"bicubic": [30.0, 30.0, 30.0]})
    after = _report({"m": [35.0, 29.0, 31.0]})
    rows = ev.compare_reports(before, after, [("bicubic", "m")], skip=1)  # im0 left out
    psnr = next(r for r in rows if r["metric"] == "psnr")
    assert psnr["images"] == 2 and psnr["mean"] == pytest.approx(0.0) and psnr["best"]["image"] == "im2.png"
    with pytest.raises(ValueError, match="leaves none of the 3"):
        ev.compare_reports(before, after, [("bicubic", "m")], skip=3)
    with pytest.raises(ValueError, match="0 or more"):
        ev.compare_reports(before, after, [("bicubic", "m")], skip=-1)


def test_compare_reports_says_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="not a report written by"):
        ev.compare_reports({"protocols": [{}]}, _report({"m": [1.0]}))
    with pytest.raises(ValueError, match="share no model"):
        ev.compare_reports(_report({"a": [1.0]}), _report({"b": [1.0]}))
    same = _report({"a": [1.0]})
    same["protocols"][0]["methods"][0]["sha256"] = "abc"
    assert ev.same_weights(same, same) == ["a"]
    with pytest.raises(ValueError, match="no model with different weights"):
        ev.compare_reports(same, same)
    with pytest.raises(ValueError, match="no protocol has both 'x' \\(before\\) and 'b'"):
        ev.compare_reports(_report({"a": [1.0]}), _report({"b": [1.0]}), [("x", "b")])


def test_write_report_is_atomic_and_makes_its_folder(tmp_path: Path) -> None:
    out = tmp_path / "reports" / "eval.json"  # the folder does not exist yet
    ev.write_report(out, {"protocols": [], "skipped": {}})
    assert json.loads(out.read_text()) == {"protocols": [], "skipped": {}}
    # a report that cannot be written leaves the previous one whole and no temporary file
    with pytest.raises(TypeError):
        ev.write_report(out, {"protocols": object()})
    assert json.loads(out.read_text()) == {"protocols": [], "skipped": {}}
    assert [p.name for p in out.parent.iterdir()] == ["eval.json"]


def test_inputs_root_is_the_one_folder_evaluated(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(b"")
    assert ev.inputs_root([str(tmp_path)]) == tmp_path
    assert ev.inputs_root([image]) is None
    assert ev.inputs_root([tmp_path, tmp_path]) is None


def test_find_models_names_or_every_installed_one(models_dir: Path) -> None:
    assert ev.find_models([]) == []  # nothing installed: baselines only, no error
    # a model asked for by name is an error when nothing is installed, not a baselines-only run
    with pytest.raises(LookupError, match="No super-resolution model is installed"):
        ev.find_models(["no-such-model"])


def test_new_report_is_what_eval_and_eval_chain_write() -> None:
    report = ev.new_report("cxr-train eval-chain", ("val",), skipped={"a.png": "is not an image."})
    assert report == {"software": "cxr-train eval-chain", "inputs": ["val"], "protocols": [],
                      "skipped": {"a.png": "is not an image."}}
