"""Model cards: the JSON file beside each weights file that says what the network is.

A model is built from its card (architecture name + hyper-parameters), never guessed from a file
name. The card also carries what a radiologist or a reviewer needs to judge the model: training
data, metrics against baselines, licence, intended use, and the sha256 of the weights file so the
provenance written into exported images names exactly these weights.
"""

from __future__ import annotations

import json
import numbers
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from engine.fileio import atomic_write

INPUT_CONVENTION = "gray [0,1] float32, 1 channel"


class CardError(ValueError):
    """A model card that cannot be read; the message is one sentence."""


@dataclass
class ModelCard:
    name: str
    architecture: str
    params: dict[str, Any] = field(default_factory=dict)
    scale: int = 4
    title: str = ""
    input_convention: str = INPUT_CONVENTION
    weights_file: str = ""
    sha256: str = ""
    dtype: str = "fp32"
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    licence: str = ""
    notes: str = ""
    intended_use: str = "Research and education; not for diagnosis."
    default: bool = False
    # Keys written by a newer version are kept so that re-saving a card does not lose them.
    extra: dict[str, Any] = field(default_factory=dict)
    # Where the card was read from (not written): weights_file is relative to its folder.
    path: Path | None = field(default=None, compare=False, repr=False)

    @property
    def display_title(self) -> str:
        return self.title or self.name

    @property
    def weights_path(self) -> Path | None:
        """The weights file named by the card, resolved next to the card file."""
        if not self.weights_file:
            return None
        weights = Path(self.weights_file)
        if weights.is_absolute() or self.path is None:
            return weights
        return self.path.parent / weights

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("path")
        extra = data.pop("extra")
        return {**extra, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path | None = None) -> ModelCard:
        where = f" {path}" if path else ""
        if not isinstance(data, dict):
            raise CardError(f"The model card{where} is not a JSON object.")
        known = {f.name for f in fields(cls)} - {"extra", "path"}
        missing = [k for k in ("name", "architecture") if k not in data]
        if missing:
            raise CardError(f"The model card{where} lacks {' and '.join(missing)}.")
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["extra"] = {k: v for k, v in data.items() if k not in known}
        try:
            _check_fields(kwargs)
            if "scale" in kwargs:
                kwargs["scale"] = _whole_number(kwargs["scale"], "scale", 1, MAX_SCALE)
            check_params(kwargs.get("params", {}), prefix="params.")
        except ValueError as exc:
            raise CardError(
                f"The model card{where} is unusable: {exc}; fix the card or pick another model."
            ) from None
        return cls(**kwargs, path=path)

    @classmethod
    def load(cls, json_path: str | Path) -> ModelCard:
        path = Path(json_path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise CardError(f"Cannot read the model card {path}: {exc.strerror or exc}.") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CardError(f"The model card {path} is not valid JSON ({exc}).") from None
        return cls.from_dict(data, path)

    def save(self, json_path: str | Path) -> Path:
        """Write the card atomically (a half-written card would hide the model)."""
        path = Path(json_path)
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"
        atomic_write_bytes(path, text.encode("utf-8"))
        self.path = path
        return path


_TEXT_FIELDS = ("name", "architecture", "title", "input_convention", "weights_file", "sha256",
                "dtype", "licence", "notes", "intended_use")
_TABLE_FIELDS = ("params", "training", "metrics")
MAX_SCALE = 8
# The whole-number hyper-parameters of the networks in engine.sr.archs and the range a card may
# give each: checked here, without torch, so that the model list skips a card that could not
# build (a negative or zero width crashes torch, a huge one exhausts memory), and by build_model.
INT_PARAMS: dict[str, tuple[int, int]] = {
    "num_in_ch": (1, 64), "num_out_ch": (1, 64), "num_feat": (1, 1024), "num_grow_ch": (1, 1024),
    "num_block": (0, 256), "num_conv": (0, 256), "scale": (1, MAX_SCALE),
    "upscale": (1, MAX_SCALE),
}


def _check_fields(data: dict[str, Any]) -> None:
    """Raise ValueError ("x is ..., but it must be ...") for a known field of the wrong type."""
    for key in _TEXT_FIELDS:
        if key in data and not isinstance(data[key], str):
            raise ValueError(f"{_shown(key, data[key])}, but it must be text")
    for key in ("name", "architecture"):
        if not data[key].strip():
            raise ValueError(f"{key} is empty, but it must name the model")
    for key in _TABLE_FIELDS:
        if key in data and not isinstance(data[key], dict):
            raise ValueError(f"{_shown(key, data[key])}, but it must be a JSON object")
    if "default" in data and not isinstance(data["default"], bool):
        raise ValueError(f"{_shown('default', data['default'])}, but it must be true or false")


def check_params(params: Any, prefix: str = "") -> None:
    """Raise ValueError ("num_feat is -1, but it must be ...", no full stop) when a whole-number
    hyper-parameter is not one or is out of range; unknown names are left to build_model."""
    if not isinstance(params, dict):
        raise ValueError(f"{_shown(prefix.rstrip('.') or 'params', params)}, but it must be a JSON object")
    for key, (low, high) in INT_PARAMS.items():
        if key in params:
            _whole_number(params[key], f"{prefix}{key}", low, high, allow_text=False)


def _whole_number(value: Any, key: str, low: int, high: int, *, allow_text: bool = True) -> int:
    number = None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        number = int(value)
    elif allow_text and isinstance(value, str) and value.strip().isdecimal():
        number = int(value)
    if number is None or not low <= number <= high:
        raise ValueError(f"{_shown(key, value)}, but it must be a whole number from {low} to {high}")
    return number


def _shown(key: str, value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return f"{key} is {text if len(text) <= 40 else text[:37] + '...'}"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, data)


# What a card's protocol entry says the model gains over bicubic: short name -> key of its "model"
# block. dB for the three regions, percent of images for SSIM.
GAIN_FIELDS = (("whole", "delta_psnr_vs_bicubic"), ("interior", "delta_psnr_interior_vs_bicubic"),
               ("lungs", "delta_psnr_lungs_vs_bicubic"), ("ssim_wins_pct", "ssim_wins_vs_bicubic_pct"))


def protocol_gains(entry: Any) -> dict[str, float]:
    """The numeric gains over bicubic in one protocol entry of a card's metrics ({} for an entry
    of another shape); the model card view, `cxr-enhance models` and the Settings tooltip read them
    here."""
    model = entry.get("model") if isinstance(entry, dict) else None
    if not isinstance(model, dict):
        return {}
    return {short: float(model[key]) for short, key in GAIN_FIELDS
            if isinstance(model.get(key), int | float) and not isinstance(model.get(key), bool)}


def quality_rows(metrics: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Card metrics as a reader wants them, as (kind, name, text): kind "quality" for a protocol
    (the model next to bicubic and Lanczos, whole image, interior and lung fields; name says how
    many images), "metric" for an entry of another shape, listed as it is. Shared by the viewer's
    model card and `cxr-enhance models`."""
    rows = []
    for key, value in metrics.items():
        if isinstance(value, dict) and isinstance(value.get("model"), dict) and \
                isinstance(value.get("bicubic"), dict):
            model, bicubic = value["model"], value["bicubic"]
            images = f" ({value['images']} held-out images)" if value.get("images") else ""
            gains, lanczos = protocol_gains(value), protocol_gains({"model": value.get("lanczos")})
            text = (f"model {_db(model.get('psnr'))} / SSIM {short_value(model.get('ssim'))}, bicubic "
                    f"{_db(bicubic.get('psnr'))} / SSIM {short_value(bicubic.get('ssim'))}")
            if "whole" in gains:
                text += f": {gains['whole']:+.2f} dB"
                if "whole" in lanczos:
                    text += f" (Lanczos {lanczos['whole']:+.2f} dB)"
            if "ssim_wins_pct" in gains:
                text += f", SSIM better on {gains['ssim_wins_pct']:.0f} % of images"
            if "interior" in gains:
                text += f"; away from the image edges {gains['interior']:+.2f} dB"
            if "lungs" in gains:
                text += f"; in the lung fields {gains['lungs']:+.2f} dB"
            rows.append(("quality", f"{key}{images}", text))
        elif key not in ("interior", "lungs", "measured_with", "val_images", "val_patients"):
            rows.append(("metric", key, short_value(value)))
    return rows


def _db(value: Any) -> str:
    return f"{value:.2f} dB" if isinstance(value, int | float) else "?"


def short_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {short_value(v)}" for k, v in value.items() if v not in (None, ""))
    return str(value)
