"""Super-resolution: architectures, weight files, tiling, devices, the Enhancer and the registry.

The names below are imported on first use, so `import engine.sr.card` (or listing models) does
not pay for importing torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "ModelCard": "card",
    "CardError": "card",
    "WeightsError": "weights",
    "load_state_dict": "weights",
    "detect": "weights",
    "load_model": "weights",
    "save_model": "weights",
    "rgb_to_gray": "weights",
    "DeviceError": "device",
    "resolve_device": "device",
    "resolve_precision": "device",
    "cpu_has_native_bf16": "device",
    "plan_tiles": "tiling",
    "receptive_radius": "tiling",
    "Enhancer": "enhancer",
    "EnhanceResult": "enhancer",
    "EnhanceError": "enhancer",
    "EnhanceCancelled": "enhancer",
    "TileProgress": "enhancer",
    "TileResult": "enhancer",
    "ModelInfo": "registry",
    "NoModelInstalled": "registry",
    "ModelNotFound": "registry",
    "list_models": "registry",
    "default_model": "registry",
    "find_model": "registry",
    "user_models_dir": "registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'engine.sr' has no attribute {name!r}")
    value = getattr(import_module(f"engine.sr.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
