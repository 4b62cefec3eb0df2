"""Installed models: a `<name>.json` card beside `<name>.safetensors`, found in two folders.

The bundled folder (`resources/models/`, shipped with the app) and the user's folder
(`platformdirs.user_data_dir("cxr-enhance")/models`), where a user model of the same name wins.
`CXR_ENHANCE_MODELS_DIR` (folders separated by os.pathsep) replaces both, for tests and portable
installs; every function also takes `dirs` to search explicitly.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from engine.sr.card import CardError, ModelCard

log = logging.getLogger(__name__)

ENV_MODELS_DIR = "CXR_ENHANCE_MODELS_DIR"
APP_NAME = "cxr-enhance"
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt")
DirList = Sequence[str | Path] | None


class ModelNotFound(LookupError):
    """A model name or path that matches nothing; the message lists what is installed."""

    def __str__(self) -> str:  # LookupError would quote the message like a dict key
        return str(self.args[0]) if self.args else ""


class NoModelInstalled(ModelNotFound):
    """No model found at all; the message names the folder to put one in. A ModelNotFound, so a
    caller that asked for a model by name handles it with the others; callers for which an empty
    folder is a state, not an error (the default model, the model list), catch it first."""


@dataclass(frozen=True)
class ModelInfo:
    card: ModelCard
    weights_path: Path
    card_path: Path | None = None
    source: str = "file"  # "bundled", "user" or "file" (opened by path)

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def title(self) -> str:
        return self.card.display_title

    @classmethod
    def from_card(cls, card: ModelCard, source: str = "file") -> ModelInfo:
        weights = card.weights_path
        if weights is None:
            raise ModelNotFound(f"The model card {card.name!r} names no weights_file.")
        return cls(card, weights, card.path, source)


def bundled_models_dir() -> Path:
    from engine.resources import models_dir

    return models_dir()


def user_models_dir() -> Path:
    """Where a user installs models (created on demand by whoever copies a model there)."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / "models"


def search_dirs(dirs: DirList = None) -> list[Path]:
    """The folders searched, lowest priority first."""
    return [folder for folder, _ in _sources(dirs)]


def _sources(dirs: DirList) -> list[tuple[Path, str]]:
    if dirs is not None:
        return [(Path(d), "user") for d in dirs]
    env = os.environ.get(ENV_MODELS_DIR, "").strip()
    if env:
        return [(Path(p).expanduser(), "user") for p in env.split(os.pathsep) if p]
    return [(bundled_models_dir(), "bundled"), (user_models_dir(), "user")]


def install_dir(dirs: DirList = None) -> Path:
    """The folder a user should copy models into (the last, highest-priority one)."""
    return search_dirs(dirs)[-1]


def list_models(dirs: DirList = None) -> list[ModelInfo]:
    """Every usable model, by name; a later folder's model replaces an earlier one's."""
    found: dict[str, ModelInfo] = {}
    for folder, source in _sources(dirs):
        for info in _models_in(folder, source):
            found[info.name.lower()] = info
    return list(found.values())


def _models_in(folder: Path, source: str) -> list[ModelInfo]:
    if not folder.is_dir():
        return []
    models = []
    for card_path in sorted(folder.glob("*.json")):
        try:
            card = ModelCard.load(card_path)
        except CardError as exc:
            _skip(card_path, str(exc))
            continue
        if not card.weights_file:
            card.weights_file = f"{card_path.stem}.safetensors"
        weights = card.weights_path
        if weights is None or not weights.is_file():
            _skip(card_path, f"its weights file {weights} is missing.")
            continue
        models.append(ModelInfo(card, weights, card_path, source))
    return models


_skipped: set[tuple[str, str]] = set()


def _skip(card_path: Path, reason: str) -> None:
    """Say once per process why a card is skipped (the list is read several times per command)."""
    if (str(card_path), reason) not in _skipped:
        _skipped.add((str(card_path), reason))
        log.warning("Skipping %s: %s", card_path, reason)


def _no_model(dirs: DirList) -> NoModelInstalled:
    return NoModelInstalled(
        "No super-resolution model is installed; put a <name>.safetensors file and its "
        f"<name>.json model card in {install_dir(dirs)}."
    )


def default_model(dirs: DirList = None) -> ModelInfo:
    """The model whose card says "default": true, else the Fidelity one, else the first."""
    models = list_models(dirs)
    if not models:
        raise _no_model(dirs)
    for pick in (
        lambda m: m.card.default,
        lambda m: "fidelity" in m.name.lower() or "fidelity" in m.title.lower(),
    ):
        chosen = [m for m in models if pick(m)]
        if chosen:
            return chosen[0]
    return models[0]


def find_model(name_or_path: str | Path, dirs: DirList = None) -> ModelInfo:
    """An installed model by name or title (any case), or a card/weights file by path."""
    path = Path(name_or_path).expanduser()
    if path.suffix.lower() in (".json", *WEIGHT_SUFFIXES) or path.is_file():
        return _model_from_path(path)
    models = list_models(dirs)
    wanted = str(name_or_path).strip().lower()
    for match in (lambda m: m.name.lower() == wanted, lambda m: m.title.lower() == wanted):
        for info in models:
            if match(info):
                return info
    if not models:
        raise _no_model(dirs)
    names = ", ".join(m.name for m in models)
    raise ModelNotFound(f"No model is called {name_or_path!r}; installed models: {names}.")


def _model_from_path(path: Path) -> ModelInfo:
    if not path.is_file():
        raise ModelNotFound(f"The model file {path} does not exist; check the path.")
    if path.suffix.lower() == ".json":
        try:
            return ModelInfo.from_card(ModelCard.load(path))
        except CardError as exc:
            raise ModelNotFound(str(exc)) from None
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        try:
            card = ModelCard.load(sidecar)
            return ModelInfo(card, path, sidecar, "file")
        except CardError as exc:
            raise ModelNotFound(str(exc)) from None
    from engine.sr.weights import describe_file  # reads the file: torch only when needed

    return ModelInfo(describe_file(path), path, None, "file")
