"""`cxr-viewer PATH --screenshot out.png [--enhance] [--compare ...] [--model PATH]`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PySide6.QtGui import QImage

from tests.viewer.conftest import tiny_network
from viewer.app import main


@pytest.fixture
def tiny_model_file(tmp_path: Path, one_torch_thread: None) -> Path:
    from engine.sr.card import ModelCard
    from engine.sr.weights import save_model

    path = tmp_path / "models" / "tiny.safetensors"
    path.parent.mkdir()
    card = ModelCard(name="tiny-test", architecture="SRVGGNetCompact", title="Tiny test net",
                     licence="test only", notes="random weights")
    save_model(tiny_network(), path, card, dtype="fp32")
    return path


def test_screenshot_of_an_image(qapp: Any, tmp_path: Path, lowres_path: Path) -> None:
    out = tmp_path / "shot.png"
    code = main([str(lowres_path), "--screenshot", str(out), "--size", "900x600",
                 "--settings", str(tmp_path / "s.ini")])
    assert code == 0
    image = QImage(str(out))
    assert (image.width(), image.height()) == (900, 600)


def test_screenshot_enhanced_split(qapp: Any, tmp_path: Path, lowres_path: Path,
                                   tiny_model_file: Path) -> None:
    out = tmp_path / "split.png"
    code = main([str(lowres_path), "--screenshot", str(out), "--compare", "split",
                 "--model", str(tiny_model_file), "--tile", "128", "--device", "cpu",
                 "--size", "900x600", "--settings", str(tmp_path / "s.ini")])
    assert code == 0
    assert QImage(str(out)).width() == 900


def test_screenshot_reports_a_missing_model(qapp: Any, tmp_path: Path, lowres_path: Path,
                                            capsys: Any) -> None:
    out = tmp_path / "err.png"
    code = main([str(lowres_path), "--screenshot", str(out), "--enhance",
                 "--model", str(tmp_path / "missing.safetensors"), "--size", "900x600",
                 "--settings", str(tmp_path / "s.ini")])
    assert code == 1
    assert out.is_file()  # the window, message bar included, is still saved
    assert "does not exist" in capsys.readouterr().err
