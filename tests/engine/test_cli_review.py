"""Review fixes of `cxr-enhance` and the self-test: each bad input gets one sentence and a way on,
reports are written atomically, and every quality number says how to reproduce it.

Tiny images and the tiny test network of test_cli; the benchmark itself is faked where only the
command's handling of --out is under test.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine import evaluation as ev
from engine.cli import main
from tests.engine.test_cli import RUN, TINY, _png8, install_tiny_model

QUICK_EVAL = ["-q", "--protocol", "x4-native", "--tile", "16", "--overlap", "4"]


@pytest.fixture
def models_dir(models_dir: Path) -> Path:
    """conftest's private models folder, with the tiny default model installed."""
    install_tiny_model(models_dir)
    return models_dir


def _card_path(models_dir: Path) -> Path:
    return models_dir / f"{TINY}.json"


def _radiograph(path: Path, size: int = 48, phase: float = 0.0) -> None:
    y, x = np.mgrid[0:size, 0:size] / size
    values = np.clip(128 + 90 * np.sin(7 * x + phase) * np.cos(5 * y), 0, 255).astype(np.uint8)
    Image.fromarray(values).save(path)


# --- 1. enhance: -o inside an input folder -----------------------------------------------------

def test_enhance_twice_into_a_folder_inside_the_input_does_not_enhance_its_results(
        models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    study = tmp_path / "study"
    study.mkdir()
    _png8(study / "a.png", (8, 8))
    out = study / "x4"
    assert main(["enhance", str(study), "-o", str(out), "-q", *RUN]) == 0
    first = (out / "a_x4.png").read_bytes()
    capsys.readouterr()
    assert main(["enhance", str(study), "-o", str(out), "-q", *RUN]) == 0
    err = capsys.readouterr().err
    assert not (out / "x4").exists() and sorted(p.name for p in out.iterdir()) == ["a_x4.png"]
    assert (out / "a_x4.png").read_bytes() == first
    assert "ignored: 1 file(s) under" in err and "1 enhanced." in err and "Traceback" not in err
    # a relative -o that resolves to the same folder is recognised too
    monkeypatch.chdir(study)
    assert main(["enhance", ".", "-o", "x4", "-q", *RUN]) == 0
    assert not (out / "x4").exists()


def test_enhance_into_the_input_folder_itself_still_scans_everything(
        models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in"
    src.mkdir()
    _png8(src / "a.png", (8, 8))
    assert main(["enhance", str(src), "-o", str(src), "-q", *RUN]) == 0
    assert "ignored:" not in capsys.readouterr().err  # -o == input: beside the inputs, as before


# --- 2. bench --out ----------------------------------------------------------------------------

@pytest.fixture
def fake_speed(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    from engine.sr import bench

    calls: list[dict] = []

    def fake(**kwargs):
        calls.append(kwargs)
        return {"kind": "speed", "arch": kwargs["arch"], "runs": []}

    monkeypatch.setattr(bench, "bench_speed", fake)
    monkeypatch.setattr(bench, "format_speed", lambda report: "speed table")
    return calls


def test_bench_out_is_checked_before_the_benchmark(fake_speed: list[dict], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-such-folder" / "bench.json"
    assert main(["bench", "--out", str(missing), "-q"]) == 2
    err = capsys.readouterr().err
    assert f"the folder {missing.parent} does not exist" in err and "Traceback" not in err
    assert main(["bench", "--out", str(tmp_path), "-q"]) == 2
    assert "is a folder; give a file name" in capsys.readouterr().err
    assert fake_speed == []  # refused before any measuring


def test_bench_out_is_written_atomically_and_kept_when_it_cannot_be(
        fake_speed: list[dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import engine.fileio

    out = tmp_path / "bench.json"
    assert main(["bench", "--out", str(out), "-q"]) == 0
    assert json.loads(out.read_text())["kind"] == "speed"
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]  # no temporary file left
    capsys.readouterr()

    def refuse(path, data):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(engine.fileio, "atomic_write", refuse)
    assert main(["bench", "--out", str(out), "-q"]) == 1
    captured = capsys.readouterr()
    assert "could not be written to" in captured.err and "Traceback" not in captured.err
    assert json.loads(captured.out)["kind"] == "speed"  # the numbers are not lost


def test_bench_json_has_provenance_and_the_weights_hash(models_dir: Path, tmp_path: Path) -> None:
    from engine.fileio import file_sha256

    out = tmp_path / "bench.json"
    assert main(["bench", "--out", str(out), "--arch", TINY, "--size", "8", "--repeats", "1",
                 "--device", "cpu", "--tile", "8", "--overlap", "0", "-q", "--matmul-size", "32",
                 "--in-process"]) == 0
    report = json.loads(out.read_text())
    prov = report["provenance"]
    assert prov["weights_sha256"] == file_sha256(models_dir / f"{TINY}.safetensors")
    _check_provenance(prov)
    assert report["machine"]["cpu"] == prov["cpu"]  # one function for both


def _check_provenance(prov: dict) -> None:
    import PIL
    import skimage
    import torch

    from engine import __version__

    assert prov["cxr_enhance"] == __version__ and prov["torch"] == torch.__version__
    assert prov["numpy"] == np.__version__ and prov["Pillow"] == PIL.__version__
    assert prov["scikit-image"] == skimage.__version__
    assert prov["threads"] >= 1 and prov["platform"] and "cpu" in prov
    from engine.provenance import git_commit

    if git_commit() is not None:  # a source checkout: the commit, 40 hex digits
        assert len(prov["git_commit"]) == 40 and isinstance(prov["git_dirty"], bool)


def test_git_commit_is_silently_absent_outside_a_checkout(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    from engine import provenance

    monkeypatch.setattr(provenance, "ROOT", tmp_path)
    provenance.git_commit.cache_clear()
    try:
        found = provenance.provenance()
    finally:
        provenance.git_commit.cache_clear()
    assert "git_commit" not in found and "git_dirty" not in found and found["numpy"]


# --- 3. eval --update-card: the report first, the card checked before scoring -----------------

def test_update_card_refused_before_scoring_when_the_card_is_read_only(
        models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    _radiograph(tmp_path / "a.png")
    card = _card_path(models_dir)
    before = card.read_bytes()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False if Path(p) in (card, card.parent)
                        else real_access(p, mode, *a, **k))
    scored: list[str] = []
    monkeypatch.setattr(ev, "evaluate", lambda *a, **k: scored.append("x"))
    report = tmp_path / "eval.json"
    code = main(["eval", str(tmp_path / "a.png"), "--model", TINY, "--update-card",
                 "--json-out", str(report), *QUICK_EVAL])
    err = capsys.readouterr().err
    assert code == 2 and "cannot be written here (read-only)" in err and "Traceback" not in err
    assert scored == [] and not report.exists() and card.read_bytes() == before


def test_report_is_written_before_a_card_that_fails(models_dir: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from engine.sr.card import ModelCard

    _radiograph(tmp_path / "a.png")

    def refuse(self, path):
        raise PermissionError(30, "Read-only file system", str(path))

    monkeypatch.setattr(ModelCard, "save", refuse)
    report = tmp_path / "eval.json"
    code = main(["eval", str(tmp_path / "a.png"), "--model", TINY, "--update-card",
                 "--json-out", str(report), "--device", "cpu", *QUICK_EVAL])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "could not be written (" in err and "Read-only file system" in err
    assert json.loads(report.read_text())["protocols"][0]["images"] == ["a.png"]


# --- 4. eval on training images ----------------------------------------------------------------

def _card_trained_on(models_dir: Path, train: str) -> None:
    from engine.sr.card import ModelCard

    card = ModelCard.load(_card_path(models_dir))
    card.training = {"data": {"train": train, "val": None}}
    card.save(_card_path(models_dir))


def test_training_images_warn_and_refuse_update_card(models_dir: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "data" / "train" / "sub").mkdir(parents=True)
    _radiograph(tmp_path / "data" / "train" / "sub" / "00000001_000.png")
    (tmp_path / "data" / "train" / "labels.csv").write_text("x")
    evalset = tmp_path / "evalset"
    evalset.mkdir()
    _radiograph(evalset / "00000001_000.png")  # a training image, copied elsewhere
    _radiograph(evalset / "00000002_000.png", phase=1.0)
    _card_trained_on(models_dir, "data/train")  # relative: resolved against the current folder
    monkeypatch.chdir(tmp_path)
    card_before = _card_path(models_dir).read_bytes()

    code = main(["eval", str(evalset), "--model", TINY, "--update-card", "--device", "cpu", *QUICK_EVAL])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"warning: 1 of the 2 images evaluated are training images of {TINY}" in err
    assert "--update-card refused" in err and "--allow-train-images" in err
    assert _card_path(models_dir).read_bytes() == card_before

    report = tmp_path / "eval.json"  # without --update-card: a warning, the numbers, the count
    assert main(["eval", str(evalset), "--model", TINY, "--json-out", str(report), "--device", "cpu",
                 *QUICK_EVAL]) == 0
    assert "warning: 1 of the 2" in capsys.readouterr().err
    assert json.loads(report.read_text())["training_images"][TINY]["names"] == ["00000001_000.png"]

    assert main(["eval", str(evalset), "--model", TINY, "--update-card", "--allow-train-images",
                 "--device", "cpu", *QUICK_EVAL]) == 0
    from engine.sr.card import ModelCard

    entry = ModelCard.load(_card_path(models_dir)).metrics["x4-native"]
    assert entry["training_images"] == 1 and "--allow-train-images" in entry["measured_with"]


def test_training_folder_relative_to_cwd_then_repo_root(tmp_path: Path) -> None:
    from engine.sr.card import ModelCard

    (tmp_path / "root" / "data" / "train").mkdir(parents=True)
    card = ModelCard(name="m", architecture="?", training={"data": {"train": "data/train"}})
    assert ev.training_folder(card, cwd=tmp_path, root=tmp_path / "root") == \
        tmp_path / "root" / "data" / "train"
    (tmp_path / "data" / "train").mkdir(parents=True)
    assert ev.training_folder(card, cwd=tmp_path, root=tmp_path / "root") == tmp_path / "data" / "train"
    for training in ({}, {"data": {"train": None}}, {"data": {"train": "nowhere"}}, {"data": "x"}):
        card.training = training
        assert ev.training_folder(card, cwd=tmp_path, root=tmp_path) is None


# --- 5. reproducible eval JSON and card ----------------------------------------------------------

def test_eval_json_records_resolved_device_provenance_and_card_command(
        models_dir: Path, tmp_path: Path) -> None:
    from engine.sr.card import ModelCard

    src = tmp_path / "imgs"
    src.mkdir()
    for i in range(2):
        _radiograph(src / f"im{i}.png", phase=i)
    report = tmp_path / "eval.json"
    assert main(["eval", str(src), "--model", TINY, "--json-out", str(report), "--update-card",
                 "--limit", "1", "--seed", "3", "--device", "cpu", *QUICK_EVAL]) == 0
    data = json.loads(report.read_text())
    for key in ("software", "inputs", "protocols", "skipped"):  # the keys readers already use
        assert key in data
    settings = next(m for m in data["protocols"][0]["methods"] if m["method"] == TINY)["settings"]
    assert settings["device"] == "cpu" and settings["resolved_device"] == "cpu"
    assert data["settings"]["limit"] == 1 and data["settings"]["seed"] == 3
    _check_provenance(data["provenance"])
    command = ModelCard.load(_card_path(models_dir)).metrics["x4-native"]["measured_with"]
    for option in ("--limit 1", "--seed 3", "--device cpu", "--tile 16", "--overlap 4",
                   "--protocol x4-native", "--precision fp32"):
        assert option in command, option


def test_model_method_records_the_device_auto_resolved_to(models_dir: Path) -> None:
    from engine.sr.registry import find_model

    method = ev.model_method(find_model(TINY), device="auto", precision="fp32", tile=16, overlap=4)
    assert method.info["device"] == "auto" and method.info["resolved_device"] in ("cpu", "cuda", "mps")


# --- 6. the self-test checks the bundled models, and bf16 -------------------------------------

def test_selftest_checks_bundled_models_not_a_user_model_of_the_same_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.sr import registry
    from viewer import selftest

    monkeypatch.delenv("CXR_ENHANCE_MODELS_DIR", raising=False)
    bundled, user = tmp_path / "bundled", tmp_path / "user"
    bundled.mkdir()
    user.mkdir()
    install_tiny_model(user)  # the bundle lost its model; the user has one of the same name
    monkeypatch.setattr(registry, "bundled_models_dir", lambda: bundled)
    monkeypatch.setattr(registry, "user_models_dir", lambda: user)
    assert [m.name for m in registry.list_models()] == [TINY]  # the app would still find one
    assert selftest.model_dirs() == [bundled]
    test = selftest.SelfTest(io.StringIO(), require_model=True)
    test.check_models()
    assert [c.ok for c in test.checks] == [False] and "no models bundled" in test.checks[0].text

    install_tiny_model(bundled)
    test = selftest.SelfTest(io.StringIO(), require_model=True)
    test.check_models()
    assert [c.ok for c in test.checks] == [True, True] and f"{TINY} (bundled)" in test.checks[0].text


def test_selftest_runs_bf16_even_where_auto_means_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.sr import device
    from viewer import selftest

    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)  # auto would be fp32
    text = selftest._enhance_tiny_network()
    assert "(fp32 " in text and ", bf16 " in text
