"""The model registry: folders, defaults, lookups and the no-model message."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from engine.sr import registry
from engine.sr.card import ModelCard
from engine.sr.registry import (
    ModelNotFound,
    NoModelInstalled,
    default_model,
    find_model,
    list_models,
    search_dirs,
    user_models_dir,
)
from engine.sr.weights import save_model
from tests.engine.conftest import tiny_compact


def install(folder: Path, name: str, title: str = "", default: bool = False) -> ModelCard:
    card = ModelCard(name=name, title=title or name.title(), architecture="?", default=default)
    return save_model(tiny_compact(feat=4), folder / f"{name}.safetensors", card)


def test_no_model_names_the_folder(models_dir):
    with pytest.raises(NoModelInstalled) as exc:
        default_model()
    message = str(exc.value)
    assert str(models_dir) in message and ".safetensors" in message and "\n" not in message
    with pytest.raises(NoModelInstalled):
        find_model("fast")
    # a model asked for by name is not found either: callers that handle ModelNotFound handle it
    with pytest.raises(ModelNotFound, match="No super-resolution model is installed"):
        find_model("fast")
    assert list_models() == []


def test_default_folders_are_bundled_then_user(monkeypatch, tmp_path):
    monkeypatch.delenv(registry.ENV_MODELS_DIR, raising=False)
    monkeypatch.setattr(registry, "bundled_models_dir", lambda: tmp_path / "bundled")
    assert search_dirs() == [tmp_path / "bundled", user_models_dir()]
    assert "cxr-enhance" in str(user_models_dir()) and user_models_dir().name == "models"
    with pytest.raises(NoModelInstalled, match=str(user_models_dir()).replace("\\", "\\\\")):
        default_model()


def test_env_var_and_argument_override(monkeypatch, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv(registry.ENV_MODELS_DIR, f"{a}{os.pathsep}{b}")
    assert search_dirs() == [a, b]
    assert search_dirs([b]) == [b]


def test_list_and_default_selection(models_dir):
    install(models_dir, "fast", "Fast")
    install(models_dir, "fidelity", "Fidelity")
    models = list_models()
    assert sorted(m.name for m in models) == ["fast", "fidelity"]
    assert all(m.weights_path.is_file() and m.card_path for m in models)
    assert default_model().name == "fidelity"  # by name when no card says default
    install(models_dir, "sharp", default=True)
    assert default_model().name == "sharp"


def test_default_falls_back_to_first(models_dir):
    install(models_dir, "alpha")
    install(models_dir, "beta")
    assert default_model().name == "alpha"


def test_later_folder_wins_and_broken_cards_are_skipped(tmp_path, caplog):
    bundled, user = tmp_path / "bundled", tmp_path / "user"
    install(bundled, "fast", "Bundled fast")
    install(user, "fast", "My fast")
    (user / "broken.json").write_text("{not json")
    (user / "orphan.json").write_text('{"name": "orphan", "architecture": "RRDBNet"}')
    models = list_models([bundled, user])
    assert [m.title for m in models] == ["My fast"]
    assert "broken.json" in caplog.text and "orphan" in caplog.text


def test_find_by_name_title_and_path(models_dir, tmp_path):
    card = install(models_dir, "fidelity", "Fidelity x4")
    assert find_model("FIDELITY").name == "fidelity"
    assert find_model("fidelity x4").name == "fidelity"
    assert find_model(models_dir / "fidelity.json").weights_path == models_dir / card.weights_file
    by_weights = find_model(str(models_dir / "fidelity.safetensors"))
    assert by_weights.card.sha256 == card.sha256
    with pytest.raises(ModelNotFound, match="installed models: fidelity") as exc:
        find_model("sharp")
    assert str(exc.value).startswith("No model")
    with pytest.raises(ModelNotFound, match="does not exist"):
        find_model(tmp_path / "elsewhere.pth")


def test_find_a_bare_pth_detects_its_architecture(models_dir, tmp_path):
    torch.save({"params_ema": tiny_compact(feat=4).state_dict()}, tmp_path / "x4.pth")
    info = find_model(tmp_path / "x4.pth")
    assert info.card.architecture == "SRVGGNetCompact" and info.card.scale == 4
    assert info.source == "file" and info.card.sha256
