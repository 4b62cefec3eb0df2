"""Generator weights from wherever they are: a run folder, our checkpoints, or any weights file.

Our own files (`last.ckpt`, `best_ema.pt`) wrap the weights as `ema` / `model` and carry the
architecture; everything else (safetensors, BasicSR / ESRGAN .pth, RGB networks) is read by
engine.sr.weights, which also converts RGB networks to grayscale. Nothing here runs pickled code:
checkpoints load with `weights_only=True`, allowing only the numpy types of their RNG states.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.sr.weights import WeightsError

CHECKPOINT_NAME = "last.ckpt"
BEST_NAME = "best_ema.pt"


@dataclass
class GeneratorWeights:
    """A generator state dict (canonical names, grayscale) and what is known about it."""

    state: dict[str, torch.Tensor]
    arch: str | None
    params: dict[str, Any] | None
    source: Path
    step: int | None = None
    val: dict[str, float] = field(default_factory=dict)
    card: Any = None  # engine.sr.card.ModelCard when read from a model file


def _numpy_globals() -> list[Any]:
    core = np._core if hasattr(np, "_core") else np.core  # numpy 2 renamed it
    reconstruct = core.multiarray._reconstruct
    return [np.ndarray, np.dtype, reconstruct, type(np.dtype(np.uint32)), type(np.dtype(np.float64))]


def load_run_file(path: str | Path) -> dict[str, Any]:
    """A `last.ckpt` or `best_ema.pt` (tensors, numbers and numpy RNG states only)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"The checkpoint {path} does not exist; check the run folder.")
    with torch.serialization.safe_globals(_numpy_globals()):
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # unpickling, truncation: all mean the same to a user
            raise WeightsError(f"The checkpoint {path} cannot be read ({type(exc).__name__}); it is damaged or not from cxr-train.") from None
    if not isinstance(data, dict) or not ({"ema", "model"} & set(data)):
        raise WeightsError(f"{path} is not a cxr-train checkpoint (no 'ema' or 'model' weights).")
    return data


def run_weights_file(run_dir: Path) -> Path:
    """The run's best EMA weights, else its last checkpoint."""
    for name in (BEST_NAME, CHECKPOINT_NAME):
        if (run_dir / name).is_file():
            return run_dir / name
    raise WeightsError(f"{run_dir} holds neither {BEST_NAME} nor {CHECKPOINT_NAME}; train first or name another run folder.")


def _is_run_file(path: Path) -> bool:
    return path.suffix == ".ckpt" or path.name == BEST_NAME


def read_generator(path: str | Path) -> GeneratorWeights:
    """Generator weights (EMA preferred) from a run folder, a run file or any model file."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = run_weights_file(path)
    if _is_run_file(path):
        return _from_run_file(path)
    return _from_model_file(path)


def _from_run_file(path: Path) -> GeneratorWeights:
    data = load_run_file(path)
    state = data.get("ema") or data["model"]
    arch, params = data.get("arch"), data.get("params")
    sibling = path.parent / CHECKPOINT_NAME
    if arch is None and sibling.is_file() and sibling != path:
        # best_ema.pt written before it carried the architecture: the run's checkpoint has it.
        other = load_run_file(sibling)
        arch, params = other.get("arch"), other.get("params")
    val = {k: float(v) for k, v in (data.get("val") or {}).items() if isinstance(v, (int, float))}
    return GeneratorWeights(dict(state), arch, params, path, data.get("step"), val)


def _from_model_file(path: Path) -> GeneratorWeights:
    from engine.sr.weights import load_model, model_hparams

    model, card = load_model(path)  # any layout, card or metadata or detection, RGB -> gray
    arch, params = model_hparams(model)
    return GeneratorWeights(dict(model.state_dict()), arch, params, path, card=card)
