"""`cxr-enhance` end to end with a tiny network installed in a temporary models folder.

The tiny network is a 4-feature compact net whose last conv is zeroed, so with its nearest-
neighbour residual it is an exact x4 pixel replication: outputs can be checked value for value.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from engine import evaluation as ev
from engine.cli import main

TINY = "tiny-test"


def install_tiny_model(folder: Path, name: str = TINY, offset: float = 0.0) -> Path:
    """A random 4-feature compact net, saved with its card as the default model in `folder`.

    Its last conv is zeroed, so it outputs the x4 pixel replication of its input plus `offset`.
    """
    from engine.sr.archs import SRVGGNetCompact
    from engine.sr.card import ModelCard
    from engine.sr.weights import save_model

    torch.manual_seed(0)
    net = SRVGGNetCompact(num_feat=4, num_conv=1, upscale=4, upsample_residual="nearest")
    last = net.body[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.constant_(last.bias, offset)
    card = ModelCard(name=name, architecture="SRVGGNetCompact", title=f"Tiny test net {name}",
                     default=offset == 0.0, metrics={"x4-native": {"psnr": 1.0, "bicubic_psnr": 0.5}})
    path = folder / f"{name}.safetensors"
    save_model(net, path, card, dtype="fp32")
    return path


@pytest.fixture
def models_dir(models_dir: Path) -> Path:
    """conftest's private models folder, with the tiny default model installed."""
    install_tiny_model(models_dir)
    return models_dir


RUN = ["--device", "cpu", "--precision", "fp32", "--tile", "16", "--overlap", "4"]


def _png8(path: Path, shape: tuple[int, int] = (20, 28), seed: int = 0) -> np.ndarray:
    values = np.random.default_rng(seed).integers(10, 240, shape, dtype=np.uint8)
    values[0, 0], values[-1, -1] = 0, 255
    Image.fromarray(values).save(path)
    return values


def _png16(path: Path, shape: tuple[int, int] = (24, 20), seed: int = 1) -> np.ndarray:
    values = np.random.default_rng(seed).integers(1000, 60000, shape, dtype=np.uint16)
    Image.fromarray(values).save(path)
    return values


def _replicated(values: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(values, 4, axis=0), 4, axis=1)


def test_enhance_png_8_and_16_bit_keeps_depth_and_values(models_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    eight = _png8(src / "a.png")
    sixteen = _png16(src / "sub" / "b.png")
    out = tmp_path / "out"
    assert main(["enhance", str(src), "-o", str(out), "-q", *RUN]) == 0

    with Image.open(out / "a_x4.png") as img:
        assert img.mode == "L" and img.size == (28 * 4, 20 * 4)
        a = np.asarray(img)
    with Image.open(out / "sub" / "b_x4.png") as img:  # the folder structure is kept
        b = np.asarray(img)
    assert b.dtype == np.uint16 and b.shape == (24 * 4, 20 * 4)
    assert np.abs(a.astype(int) - _replicated(eight)).max() <= 1
    assert np.abs(b.astype(int) - _replicated(sixteen)).max() <= 1


def test_format_png16_from_8_bit(models_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "a.png"
    _png8(src, (12, 12))
    out = tmp_path / "out"
    assert main(["enhance", str(src), "-o", str(out), "--format", "png16", "-q", *RUN]) == 0
    with Image.open(out / "a_x4.png") as img:
        assert np.asarray(img).dtype == np.uint16


def test_tiff_output(models_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "a.png"
    values = _png8(src, (12, 12))
    out = tmp_path / "out"
    assert main(["enhance", str(src), "-o", str(out), "--format", "tiff", "-q", *RUN]) == 0
    tifffile = pytest.importorskip("tifffile")
    written = tifffile.imread(out / "a_x4.tiff")
    assert written.dtype == np.uint16 and written.shape == (48, 48)
    assert np.abs(written.astype(int) - _replicated(values).astype(int) * 257).max() <= 257


def test_bad_file_is_skipped_with_exit_1(models_dir: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in"
    src.mkdir()
    _png8(src / "good.png", (8, 8))
    (src / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4)
    out = tmp_path / "out"
    assert main(["enhance", str(src), str(tmp_path / "missing.png"), "-o", str(out), *RUN]) == 1
    assert (out / "good_x4.png").is_file()
    assert not (out / "bad_x4.png").exists()
    err = capsys.readouterr().err
    assert "bad.png" in err and "missing.png" in err
    assert "Traceback" not in err


def test_never_overwrites_an_input(models_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    _png8(src / "a.png", (8, 8))
    _png8(src / "a_x4.png", (8, 8), seed=5)  # an input that a.png's output would replace
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    assert main(["enhance", str(src), "-o", str(src), "-q", *RUN]) == 1
    after = {p.name: p.read_bytes() for p in src.iterdir() if p.name in before}
    assert after == before
    assert (src / "a_x4_x4.png").is_file()  # the other input was still enhanced, beside it


def test_nothing_written_next_to_inputs(models_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    _png8(src / "a.png", (8, 8))
    assert main(["enhance", str(src / "a.png"), "-o", str(tmp_path / "out"), "-q", *RUN]) == 0
    assert sorted(p.name for p in src.iterdir()) == ["a.png"]


def test_usage_errors_exit_2(models_dir: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["enhance", str(tmp_path)])  # no -o
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["enhance", str(tmp_path), "-o", str(tmp_path / "o"), "--tile", "0"])
    assert info.value.code == 2
    assert main(["enhance", str(tmp_path), "-o", str(tmp_path / "o"), "--model", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_format_dicom_needs_dicom_input(models_dir: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    _png8(tmp_path / "a.png", (8, 8))
    code = main(["enhance", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--format",
                 "dicom", *RUN])
    assert code == 1
    assert "--format dicom needs a DICOM input" in capsys.readouterr().err


def test_dicom_in_gives_derived_dicom_out(models_dir: Path, tmp_path: Path) -> None:
    pydicom = pytest.importorskip("pydicom")
    pytest.importorskip("engine.io.export")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # DX for presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(tmp_path / "x.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientName, ds.PatientID = "DX", "Test^Patient", "ID1"
    ds.Rows, ds.Columns = 8, 10
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing = [0.2, 0.2]
    stored = np.random.default_rng(0).integers(100, 4000, (8, 10), dtype=np.uint16)
    ds.PixelData = stored.tobytes()
    src = tmp_path / "in"
    src.mkdir()
    ds.save_as(src / "x.dcm", enforce_file_format=True)

    out = tmp_path / "out"
    assert main(["enhance", str(src), "-o", str(out), "--anonymise", "-q", *RUN]) == 0
    derived = pydicom.dcmread(out / "x_x4.dcm")
    assert (derived.Rows, derived.Columns) == (32, 40)
    assert derived.StudyInstanceUID == ds.StudyInstanceUID
    assert derived.SOPInstanceUID != ds.SOPInstanceUID
    assert str(derived.PatientName) != "Test^Patient"
    np.testing.assert_allclose(derived.pixel_array.astype(int), _replicated(stored), atol=1)


def test_models_lists_the_card(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (model,) = data["models"]
    assert model["name"] == TINY and model["default"] is True
    assert model["param_count"] > 0 and model["macs_per_input_pixel"] > 0
    assert model["metrics"]["x4-native"]["bicubic_psnr"] == 0.5
    assert main(["models"]) == 0
    assert "(default)" in capsys.readouterr().out
    card_path = models_dir / f"{TINY}.json"
    card = json.loads(card_path.read_text())
    card["metrics"]["seed-128to512"] = {
        "images": 41, "bicubic": {"psnr": 32.8146, "ssim": 0.9243},
        "lanczos": {"psnr": 32.61, "delta_psnr_vs_bicubic": -0.2014},
        "model": {"psnr": 31.143, "ssim": 0.8825, "delta_psnr_vs_bicubic": -1.6716, "ssim_wins_vs_bicubic_pct": 0.0,
                  "delta_psnr_interior_vs_bicubic": -2.4123}}
    card_path.write_text(json.dumps(card))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert ("quality       seed-128to512 (41 held-out images): model 31.14 dB / SSIM 0.8825, bicubic 32.81 dB / "
            "SSIM 0.9243: -1.67 dB (Lanczos -0.20 dB), SSIM better on 0 % of images; away from the image edges "
            "-2.41 dB") in out
    assert "metric        x4-native: psnr: 1, bicubic_psnr: 0.5" in out  # another shape: listed as it is


def test_models_with_none_installed_says_where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CXR_ENHANCE_MODELS_DIR", str(tmp_path / "empty"))
    assert main(["models"]) == 0
    assert str(tmp_path / "empty") in capsys.readouterr().out
    assert main(["enhance", str(tmp_path), "-o", str(tmp_path / "o")]) == 1
    assert str(tmp_path / "empty") in capsys.readouterr().err


def test_eval_matches_direct_skimage(models_dir: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "imgs"
    src.mkdir()
    for i in range(2):
        y, x = np.mgrid[0:48, 0:48] / 48
        img = np.clip(128 + 90 * np.sin(7 * x + i) * np.cos(5 * y), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(src / f"im{i}.png")
    report = tmp_path / "eval.json"
    code = main(["eval", str(src), "--model", TINY, "--json-out", str(report), "-q",
                 "--device", "cpu", "--tile", "16", "--overlap", "4"])
    assert code == 0
    table = capsys.readouterr().out
    assert "x4-native" in table and "seed-128to512" in table and TINY in table
    data = json.loads(report.read_text())
    native = next(p for p in data["protocols"] if p["protocol"] == "x4-native")
    assert native["images"] == ["im0.png", "im1.png"]
    methods = {m["method"]: m for m in native["methods"]}
    assert methods[TINY]["sha256"] and methods[TINY]["model_file"].endswith(".safetensors")
    for i, name in enumerate(native["images"]):
        hr8 = np.asarray(Image.open(src / name))
        lr = ev.degrade_x4_native(hr8).astype(np.float32) / 255
        hr = hr8.astype(np.float64) / 255
        for method, sr in (("bicubic", ev.upsample_bicubic(lr)), (TINY, _replicated(lr))):
            direct = peak_signal_noise_ratio(hr, sr.astype(np.float64), data_range=1.0)
            assert methods[method]["per_image"][i]["psnr"] == pytest.approx(direct, abs=1e-3)


def test_eval_model_sees_the_lr_itself(models_dir: Path) -> None:
    """Protocol: the network gets LR as is, not the Enhancer's per-image min..max stretch."""
    from engine.sr.registry import find_model

    install_tiny_model(models_dir, "tiny-offset", offset=0.05)
    method = ev.model_method(find_model("tiny-offset"), device="cpu", precision="fp32",
                             tile=16, overlap=4)
    lr = np.linspace(0.2, 0.6, 12 * 12, dtype=np.float32).reshape(12, 12)
    sr = method.run(lr)
    # A min..max-stretched input would come back as LR + 0.05 * 0.4, clipped at 0.6.
    np.testing.assert_allclose(sr, _replicated(lr) + 0.05, atol=1e-5)
    assert method.sha256 and method.model_file


def test_eval_skips_an_unreadable_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _png8(tmp_path / "good.png", (32, 32))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    report = tmp_path / "eval.json"
    code = main(["eval", str(tmp_path), "--no-models", "--protocol", "x4-native", "-q",
                 "--json-out", str(report)])
    assert code == 1
    assert "bad.png" in capsys.readouterr().err
    data = json.loads(report.read_text())
    assert data["protocols"][0]["images"] == ["good.png"] and "bad.png" in data["skipped"]


def test_eval_of_a_named_model_with_none_installed_stops_with_a_sentence(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("CXR_ENHANCE_MODELS_DIR", str(tmp_path / "empty"))
    _png8(tmp_path / "a.png", (32, 32))
    report = tmp_path / "eval.json"
    code = main(["eval", str(tmp_path / "a.png"), "--model", "fidelity", "-q", "--json-out", str(report)])
    assert code != 0 and not report.exists()  # not a quiet baselines-only run
    assert "No super-resolution model is installed" in capsys.readouterr().err


class _Stream:
    def __init__(self, tty: bool) -> None:
        self.text, self.tty = "", tty

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return self.tty


def test_progress_bar_redraws_on_a_terminal_and_prints_lines_otherwise() -> None:
    from engine.cli import ProgressBar
    from engine.sr.enhancer import TileProgress

    steps = [TileProgress(d, 4, d * 1.0, None if d == 0 else (4 - d) * 1.0) for d in range(5)]
    tty, plain = _Stream(True), _Stream(False)
    for stream in (tty, plain):
        bar = ProgressBar("a.png", stream, every_s=3600)  # type: ignore[arg-type]
        for step in steps:
            bar(step)
        bar.close()
    assert tty.text.count("\r") >= 5 and "4/4 tiles" in tty.text and "\n" not in tty.text
    assert plain.text.splitlines() == ["a.png: 0/4 tiles", "a.png: 4/4 tiles, ETA 0:00"]


def test_eval_update_card_writes_the_means_and_keeps_the_rest(models_dir: Path, tmp_path: Path) -> None:
    from engine.sr.card import ModelCard
    from engine.sr.registry import find_model

    src = tmp_path / "imgs"
    src.mkdir()
    y, x = np.mgrid[0:48, 0:48] / 48
    Image.fromarray(np.clip(128 + 90 * np.sin(7 * x) * np.cos(5 * y), 0, 255).astype(np.uint8)).save(src / "a.png")
    card_path = find_model(TINY).card_path
    card = ModelCard.load(card_path)
    card.metrics["during_training"] = {"gain_db": 1.0}
    card.save(card_path)
    report = tmp_path / "eval.json"
    assert main(["eval", str(src), "--model", TINY, "--json-out", str(report), "-q", "--device", "cpu",
                 "--precision", "fp32", "--protocol", "x4-native", "--update-card",
                 "--tile", "16", "--overlap", "4"]) == 0
    data = json.loads(report.read_text())["protocols"][0]
    means = {m["method"]: m["mean"] for m in data["methods"]}
    metrics = ModelCard.load(card_path).metrics
    assert metrics["during_training"] == {"gain_db": 1.0}
    entry = metrics["x4-native"]
    assert entry["model"]["psnr"] == pytest.approx(means[TINY]["psnr"], abs=1e-4)
    assert entry["bicubic"]["psnr_interior"] == pytest.approx(means["bicubic"]["psnr_interior"], abs=1e-4)
    assert entry["model"]["delta_psnr_interior_vs_bicubic"] == pytest.approx(
        means[TINY]["delta_psnr_interior_vs_bicubic"], abs=1e-4)
    assert entry["images"] == 1 and "--update-card" in entry["measured_with"]
    assert "16 HR pixels" in metrics["interior"]
    assert entry["model"]["delta_psnr_lungs_vs_bicubic"] == pytest.approx(
        means[TINY]["delta_psnr_lungs_vs_bicubic"], abs=1e-4)
    assert "lung fields" in metrics["lungs"]
    from engine.sr.card import quality_rows

    text = next(t for kind, key, t in quality_rows(metrics) if key.startswith("x4-native"))
    assert f"in the lung fields {entry['model']['delta_psnr_lungs_vs_bicubic']:+.2f} dB" in text
    assert all(key != "lungs" for _, key, _ in quality_rows(metrics))


def test_eval_crops_figure_has_a_column_per_method(models_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "imgs"
    src.mkdir()
    y, x = np.mgrid[0:64, 0:64] / 64
    for i in range(3):
        Image.fromarray(np.clip(128 + 90 * np.sin(7 * x + i) * np.cos(5 * y), 0, 255).astype(np.uint8)).save(src / f"{i}.png")
    figure = tmp_path / "crops.png"
    assert main(["eval", str(src), "--model", TINY, "-q", "--device", "cpu", "--protocol", "x4-native",
                 "--crops", str(figure), "--crop-images", "2", "--crop-size", "32",
                 "--tile", "16", "--overlap", "4"]) == 0
    grid = np.asarray(Image.open(figure))
    # LR | bicubic | lanczos | model | HR: 5 tiles of 192 px and 4 gaps; 2 rows under a title
    assert grid.shape == (16 + 2 * (12 + 192 + 4), 5 * 192 + 4 * 4)
    hr_tile = grid[16 + 12:16 + 12 + 192, 4 * (192 + 4):]
    hr0 = np.asarray(Image.open(src / "0.png"))
    y0, x0, side = ev.lung_box(hr0.shape, 32)
    assert side == 32
    np.testing.assert_array_equal(hr_tile[::6, ::6], hr0[y0:y0 + 32, x0:x0 + 32])
    # under seed-128to512 (--protocol) the crops come from its 128 -> 512 pairs, noise included
    seed_figure = tmp_path / "crops_seed.png"
    assert main(["eval", str(src), "--model", TINY, "-q", "--device", "cpu", "--protocol", "seed-128to512",
                 "--crops", str(seed_figure), "--crop-images", "1", "--crop-size", "32",
                 "--tile", "32", "--overlap", "4"]) == 0
    grid = np.asarray(Image.open(seed_figure))
    assert grid.shape == (16 + 12 + 192 + 4, 5 * 192 + 4 * 4)
    lr, hr = ev.make_pair("seed-128to512", hr0, "0.png")
    y0, x0, side = ev.lung_box(hr.shape, 32)
    expected = np.clip(hr[y0:y0 + 32, x0:x0 + 32] * 255 + 0.5, 0, 255).astype(np.uint8)
    np.testing.assert_allclose(grid[16 + 12:16 + 12 + 192, 4 * (192 + 4):][::6, ::6], expected, atol=1)


def test_compare_two_reports_and_two_methods(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def report(values: list[float]) -> dict:
        return {"protocols": [{"protocol": "x4-native", "methods": [
            {"method": "bicubic", "kind": "baseline", "per_image": [{"image": "a.png", "psnr": 30.0}]},
            {"method": "m", "kind": "model", "per_image": [{"image": "a.png", "psnr": v} for v in values]}]}]}

    old, new, out = tmp_path / "old.json", tmp_path / "new.json", tmp_path / "cmp.json"
    old.write_text(json.dumps(report([31.0])))
    new.write_text(json.dumps(report([31.25])))
    assert main(["compare", str(old), str(new), "--json-out", str(out)]) == 0
    assert "+0.250" in capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    assert [(r["before"], r["after"], r["metric"], r["better"]) for r in rows] == [("m", "m", "psnr", 1)]
    assert main(["compare", str(new), "--methods", "bicubic", "m"]) == 0
    assert "bicubic -> m" in capsys.readouterr().out
    # one clear sentence for each mistake, exit code 2
    assert main(["compare", str(new)]) == 2
    assert "--methods A B" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "none.json"), str(new)]) == 2
    assert "does not exist; write one with `cxr-enhance eval --json-out`" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{")
    assert main(["compare", str(tmp_path / "bad.json"), str(new)]) == 2
    assert "is not a readable JSON report" in capsys.readouterr().err
    assert main(["compare", str(old), str(new), "--methods", "m", "nope"]) == 2
    assert "no protocol has both 'm' (before) and 'nope' (after)" in capsys.readouterr().err
    assert main(["compare", str(new), "--methods", "bicubic", "m", "--skip", "1"]) == 2  # the one image left out
    assert "skipping 1 images leaves none of the 1" in capsys.readouterr().err
