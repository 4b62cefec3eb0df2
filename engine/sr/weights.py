"""Weight files: read (.safetensors, .pth/.pt), recognise the layout, convert, save.

Published ESRGAN-family weights come in three key layouts (old ESRGAN, intermediate ESRGAN,
BasicSR / Real-ESRGAN) plus Real-ESRGAN's compact network; `to_canonical` renames them all to the
BasicSR names used by `engine.sr.archs`, and `detect` reads the hyper-parameters off the key names
and tensor shapes (the approach of the spandrel project). Pickles load with `weights_only=True`
only: a file that needs code to load is refused, never executed.

Every failure a user can cause becomes a `WeightsError` with one sentence saying what to do.
"""

from __future__ import annotations

import json
import math
import pickle
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save
from torch import nn

from engine.fileio import atomic_write, file_sha256
from engine.sr.archs import RRDBNet, SRVGGNetCompact, build_model
from engine.sr.card import INPUT_CONVENTION, CardError, ModelCard, check_params

StateDict = dict[str, torch.Tensor]

PICKLE_SUFFIXES = (".pth", ".pt")
WEIGHT_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES)
DTYPES = {"fp16": torch.float16, "fp32": torch.float32}
# Training checkpoints wrap the weights; BasicSR's EMA copy is the better generator.
WRAPPER_KEYS = ("params_ema", "ema", "params", "state_dict", "model")  # EMA first: it is the better model


class WeightsError(Exception):
    """A weights file that cannot be used; the message is one sentence with the next step."""


# ---------------------------------------------------------------- reading files


def load_state_dict(path: str | Path) -> StateDict:
    """Read a weights file into a flat {name: tensor} dict (wrappers and `module.` removed)."""
    path = Path(path)
    _check_file(path)
    if path.suffix.lower() == ".safetensors":
        raw: Any = _read_safetensors(path)
    else:
        raw = _read_pickle(path)
    return _unwrap(raw, path)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The `__metadata__` strings of a safetensors file, or the `arch`/`params` that our own
    training checkpoints carry ({} when a file has neither)."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return _pickle_metadata(path)
    if path.suffix.lower() != ".safetensors":
        return {}
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError):
        return {}


def _check_file(path: Path) -> None:
    if not path.exists():
        raise WeightsError(f"The weights file {path} does not exist; check the path.")
    if path.is_dir():
        raise WeightsError(f"The path {path} is a folder; choose a .safetensors, .pth or .pt file.")
    if path.suffix.lower() not in WEIGHT_SUFFIXES:
        raise WeightsError(
            f"The file {path.name} is not a weights file; use a .safetensors, .pth or .pt file."
        )
    if path.stat().st_size == 0:
        raise WeightsError(
            f"The weights file {path} is empty (0 bytes); copy or download it again."
        )


def _damaged(path: Path, detail: str) -> WeightsError:
    detail = detail.strip().splitlines()[0][:120] if detail.strip() else "unreadable"
    return WeightsError(
        f"The weights file {path} is truncated or damaged ({detail}); copy or download it again."
    )


def _pickle_metadata(path: Path) -> dict[str, str]:
    # Detection cannot see an input-upsampling residual (it has no weights): a checkpoint that
    # names its architecture must be built as named, or it loses about 1 dB silently.
    try:
        raw = _read_pickle(path)
    except WeightsError:
        return {}
    if isinstance(raw, Mapping) and isinstance(raw.get("arch"), str) and isinstance(raw.get("params"), Mapping):
        return {"architecture": raw["arch"], "params": json.dumps(dict(raw["params"]))}
    return {}


def _read_safetensors(path: Path) -> StateDict:
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise _damaged(path, str(exc)) from None


# What torch's weights-only unpickler says (the wording and case vary between versions, e.g. 2.13:
# "Trying to load unsupported GLOBAL posix.system whose module posix is blocked.") when a pickle
# asks for a function or class it will not import or call: the file needs code to load. Every one
# of its messages starts "Weights only load failed", random bytes ("Unsupported operand") too, so
# that prefix alone says nothing about code.
_NEEDS_CODE = re.compile(
    r"unsupported global|reduce for unrecognized function|can only create new object"
    r"|can only build tensor|must be imported to load|persistent_load of storage",
    re.IGNORECASE,
)


def _read_pickle(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if _NEEDS_CODE.search(str(exc)):
            raise WeightsError(
                f"The file {path.name} needs program code to load, which is refused for safety; "
                "convert it to .safetensors with a tool you trust, then open that file."
            ) from None
        raise _damaged(path, "not a readable PyTorch file") from None
    except Exception as exc:  # torch raises RuntimeError, EOFError, KeyError... for bad bytes
        raise _damaged(path, str(exc) or type(exc).__name__) from None


def _unwrap(raw: Any, path: Path) -> StateDict:
    while isinstance(raw, Mapping):
        inner = next((raw[k] for k in WRAPPER_KEYS if isinstance(raw.get(k), Mapping)), None)
        if inner is None:
            break
        raw = inner
    if not isinstance(raw, Mapping):
        kind = type(raw).__name__
        raise WeightsError(f"The file {path.name} holds a {kind}, not network weights.")
    state = {_strip_prefix(str(k)): v for k, v in raw.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise WeightsError(f"The file {path.name} holds no network weights (no tensors found).")
    return state


def _strip_prefix(key: str) -> str:
    # DataParallel / DistributedDataParallel save every name under `module.`.
    while key.startswith("module."):
        key = key[len("module.") :]
    return key


# ---------------------------------------------------------------- key layouts

_OLD_BLOCK = re.compile(r"model\.1\.sub\.(\d+)\.RDB([123])\.conv([1-5])\.0\.(weight|bias)")
_OLD_TRUNK = re.compile(r"model\.1\.sub\.(\d+)\.(weight|bias)")
# Only the x4 layout: other scales have a different number of up convs, which RRDBNet lacks.
_OLD_FIXED = {
    "0": "conv_first", "3": "conv_up1", "6": "conv_up2", "8": "conv_hr", "10": "conv_last",
}
_OLD_FIXED_KEY = re.compile(r"model\.(\d+)\.(weight|bias)")
_MID_BLOCK = re.compile(r"RRDB_trunk\.(\d+)\.RDB([123])\.conv([1-5])\.(weight|bias)")
_MID_FIXED = {
    "conv_first": "conv_first",
    "trunk_conv": "conv_body",
    "upconv1": "conv_up1",
    "upconv2": "conv_up2",
    "HRconv": "conv_hr",
    "conv_last": "conv_last",
}
_BASICSR_BLOCK = re.compile(r"body\.(\d+)\.rdb([123])\.conv([1-5])\.(weight|bias)")
_BASICSR_FIXED = {"conv_first", "conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"}
_COMPACT = re.compile(r"body\.(\d+)\.(weight|bias)")


def layout(state: Mapping[str, torch.Tensor]) -> str:
    """Which family of key names a state dict uses: old, intermediate, basicsr or compact."""
    keys = state.keys()
    if any(k.startswith("model.1.sub.") for k in keys):
        return "old"
    if any(k.startswith("RRDB_trunk.") for k in keys) or "trunk_conv.weight" in keys:
        return "intermediate"
    if "conv_first.weight" in keys:
        return "basicsr"
    if "body.0.weight" in keys and all(_COMPACT.fullmatch(k) for k in keys):
        return "compact"
    example = next(iter(keys), "<none>")
    raise WeightsError(
        f"The weights use an unknown key layout (e.g. {example!r}); "
        "only ESRGAN (old, intermediate, BasicSR) and Real-ESRGAN compact weights are supported."
    )


def to_canonical(state: Mapping[str, torch.Tensor]) -> StateDict:
    """Rename any supported layout to the BasicSR names of `engine.sr.archs`."""
    kind = layout(state)
    rename = {"old": _old_name, "intermediate": _intermediate_name}.get(kind, _basicsr_name)
    out: StateDict = {}
    for key, tensor in state.items():
        new = rename(key) if kind != "compact" else key
        if new is None:
            raise WeightsError(
                f"The key {key!r} does not belong to the {kind} ESRGAN layout; "
                "this file's variant (scale or extra layers) is not supported."
            )
        out[new] = tensor
    if kind == "old":
        _check_old_trunk(out)
    return out


def _old_name(key: str) -> str | None:
    if m := _OLD_BLOCK.fullmatch(key):
        return f"body.{m[1]}.rdb{m[2]}.conv{m[3]}.{m[4]}"
    if m := _OLD_TRUNK.fullmatch(key):
        # The trunk conv sits after the blocks; renumbered below once the block count is known.
        return f"_trunk.{m[1]}.{m[2]}"
    if (m := _OLD_FIXED_KEY.fullmatch(key)) and m[1] in _OLD_FIXED:
        return f"{_OLD_FIXED[m[1]]}.{m[2]}"
    return None


def _check_old_trunk(state: StateDict) -> None:
    trunk = [k for k in state if k.startswith("_trunk.")]
    blocks = _block_count(state)
    for key in trunk:
        index, kind = key.split(".")[1:]
        if int(index) != blocks:
            raise WeightsError(
                f"The old ESRGAN key model.1.sub.{index}.{kind} is not the trunk conv after "
                f"{blocks} blocks; the file is damaged or a variant this version cannot read."
            )
        state[f"conv_body.{kind}"] = state.pop(key)


def _intermediate_name(key: str) -> str | None:
    if m := _MID_BLOCK.fullmatch(key):
        return f"body.{m[1]}.rdb{m[2]}.conv{m[3]}.{m[4]}"
    name, _, kind = key.rpartition(".")
    if name in _MID_FIXED and kind in ("weight", "bias"):
        return f"{_MID_FIXED[name]}.{kind}"
    return None


def _basicsr_name(key: str) -> str | None:
    if _BASICSR_BLOCK.fullmatch(key):
        return key
    name, _, kind = key.rpartition(".")
    return key if name in _BASICSR_FIXED and kind in ("weight", "bias") else None


def _block_count(state: Mapping[str, torch.Tensor]) -> int:
    indices = {int(m[1]) for k in state if (m := _BASICSR_BLOCK.fullmatch(k))}
    return max(indices) + 1 if indices else 0


# ---------------------------------------------------------------- hyper-parameters


def detect(state: Mapping[str, torch.Tensor]) -> tuple[str, dict[str, Any]]:
    """The architecture name and hyper-parameters a state dict (any layout) was made with.

    Whether the upsampled input is added (a parameter-free choice) cannot be seen in the keys:
    RRDBNet files are assumed to have none (as published), compact files the nearest one (as
    Real-ESRGAN's). A model card, when present, says so exactly and wins.
    """
    canonical = to_canonical(state)
    if layout(canonical) == "compact":
        return "SRVGGNetCompact", _detect_compact(canonical)
    return "RRDBNet", _detect_rrdb(canonical)


def _shape(state: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...]:
    if key not in state:
        raise WeightsError(f"The weights lack {key!r}; the file is incomplete or not ESRGAN.")
    return tuple(state[key].shape)


def _detect_rrdb(state: StateDict) -> dict[str, Any]:
    num_feat, first_in = _shape(state, "conv_first.weight")[:2]
    num_out = _shape(state, "conv_last.weight")[0]
    for key in ("conv_body.weight", "conv_up1.weight", "conv_up2.weight", "conv_hr.weight"):
        _shape(state, key)
    blocks = _block_count(state)
    grow = _shape(state, "body.0.rdb1.conv1.weight")[0] if blocks else 32
    # BasicSR pixel-unshuffles before conv_first at x2 (4 channels per input channel) and x1 (16).
    scale, num_in = 4, first_in
    if first_in == 16 * num_out:
        scale, num_in = 1, num_out
    elif first_in == 4 * num_out:
        scale, num_in = 2, num_out
    return {
        "num_in_ch": num_in,
        "num_out_ch": num_out,
        "num_feat": num_feat,
        "num_block": blocks,
        "num_grow_ch": grow,
        "scale": scale,
        "upsample_residual": None,
    }


def _detect_compact(state: StateDict) -> dict[str, Any]:
    convs = sorted(int(m[1]) for k in state if (m := _COMPACT.fullmatch(k)) and state[k].ndim == 4)
    if len(convs) < 2 or convs != list(range(0, 2 * len(convs), 2)):
        raise WeightsError("The compact network's layers are not numbered conv, act, conv, ...; "
                           "the file is damaged or another architecture.")
    num_feat, num_in = _shape(state, "body.0.weight")[:2]
    last_out = _shape(state, f"body.{convs[-1]}.weight")[0]
    # The last conv has out_ch * scale^2 channels for the pixel shuffle; out_ch = in_ch as
    # in every published compact model.
    upscale = math.isqrt(last_out // num_in) if last_out % num_in == 0 else 0
    if upscale < 1 or upscale * upscale * num_in != last_out:
        raise WeightsError(f"The compact network's last layer has {last_out} channels, which is "
                           f"not {num_in} x scale^2; the file is another architecture.")
    return {
        "num_in_ch": num_in,
        "num_out_ch": num_in,
        "num_feat": num_feat,
        "num_conv": len(convs) - 2,
        "upscale": upscale,
        "act_type": "prelu" if "body.1.weight" in state else "leakyrelu",
        "upsample_residual": "nearest",
    }


def model_hparams(model: nn.Module) -> tuple[str, dict[str, Any]]:
    """Architecture name and hyper-parameters of a built network (what its card must say)."""
    if isinstance(model, RRDBNet):
        params = _detect_rrdb(dict(model.state_dict()))
        params["num_in_ch"] = model.num_in_ch
        params["scale"] = model.scale
        params["upsample_residual"] = model.upsample_residual
        return "RRDBNet", params
    if isinstance(model, SRVGGNetCompact):
        params = _detect_compact(dict(model.state_dict()))
        params["num_out_ch"] = model.body[-1].out_channels // (model.scale * model.scale)
        params["act_type"] = _act_name(model.body[1])
        params["upsample_residual"] = model.upsample_residual
        return "SRVGGNetCompact", params
    raise WeightsError(
        f"A {type(model).__name__} cannot be described by a model card; "
        "use RRDBNet or SRVGGNetCompact from engine.sr.archs."
    )


def _act_name(module: nn.Module) -> str:
    if isinstance(module, nn.PReLU):
        return "prelu"
    return "leakyrelu" if isinstance(module, nn.LeakyReLU) else "relu"


# ---------------------------------------------------------------- building models


def build_from_state(
    arch: str, params: dict[str, Any], state: Mapping[str, torch.Tensor], source: str = "the file"
) -> nn.Module:
    """Build `arch(**params)` and load `state` (any layout) into it, strictly."""
    try:
        model = build_model(arch, params)
    except ValueError as exc:
        raise WeightsError(str(exc).rstrip(".") + f" (model card of {source}); fix the card or "
                           "pick another model.") from None
    canonical = to_canonical(state)
    _check_shapes(model, canonical, source)
    model.load_state_dict(canonical, strict=True)
    return model.eval()


def _check_shapes(model: nn.Module, state: StateDict, source: str) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        what = f"lack {missing[0]!r}" if missing else f"have an extra {unexpected[0]!r}"
        raise WeightsError(
            f"The weights in {source} {what} for the architecture in the model card "
            f"({len(missing)} missing, {len(unexpected)} extra); the card or the file is wrong."
        )
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise WeightsError(
                f"Shape mismatch in {source}: {key} is {tuple(state[key].shape)} but the model "
                f"card's architecture needs {tuple(tensor.shape)}; the card does not fit the file."
            )


def load_model(
    source: str | Path | ModelCard, *, card: ModelCard | None = None
) -> tuple[nn.Module, ModelCard]:
    """A ready grayscale network (eval mode, CPU, fp32) and its card.

    `source` is a card (or its .json path) whose `weights_file` is resolved beside it, or a weights
    file: then a `<stem>.json` card beside it is used, else safetensors metadata written by
    `save_model`, else the hyper-parameters are detected from the keys. RGB networks are converted
    to grayscale (`rgb_to_gray`). A card's sha256 must match the file. `card` pairs a weights
    path with a card that was read elsewhere (the registry's).
    """
    if card is not None and not isinstance(source, ModelCard):
        weights = Path(source)
    else:
        card, weights = _card_and_weights(source)
    state = load_state_dict(weights)
    digest = file_sha256(weights)
    if card is None:
        card = _card_for_bare_file(weights, state, digest)
    elif card.sha256 and card.sha256.lower() != digest:
        raise WeightsError(
            f"The file {weights.name} does not match its model card (sha256 differs); "
            "the file was replaced or damaged: reinstall the model."
        )
    elif not card.sha256:
        card = replace(card, sha256=digest)
    model = build_from_state(card.architecture, card.params, state, weights.name)
    if _channels(model) != (1, 1):
        model = rgb_to_gray(model)
    return model, card


def _card_and_weights(source: str | Path | ModelCard) -> tuple[ModelCard | None, Path]:
    if isinstance(source, ModelCard):
        card = source
    else:
        path = Path(source)
        if path.suffix.lower() != ".json":
            sidecar = path.with_suffix(".json")
            return (_load_card(sidecar) if sidecar.is_file() else None), path
        card = _load_card(path)
    weights = card.weights_path
    if weights is None:
        raise WeightsError(f"The model card {card.name!r} names no weights_file.")
    return card, weights


def _load_card(path: Path) -> ModelCard:
    try:
        return ModelCard.load(path)
    except CardError as exc:
        raise WeightsError(str(exc)) from None


def describe_file(path: str | Path) -> ModelCard:
    """A model card for a weights file that came without one (read from its keys or metadata)."""
    path = Path(path)
    return _card_for_bare_file(path, load_state_dict(path), file_sha256(path))


def _card_for_bare_file(path: Path, state: StateDict, digest: str) -> ModelCard:
    meta = read_metadata(path)
    params = _metadata_params(meta)
    if isinstance(meta.get("architecture"), str) and params is not None:
        arch = meta["architecture"]
        note = "Hyper-parameters from the file's metadata; no model card was found."
    else:
        arch, params = detect(state)
        note = f"Hyper-parameters detected from the {layout(state)} key layout; no model card."
    try:
        check_params(params)
    except ValueError as exc:
        raise WeightsError(f"The file {path.name} describes a network this version cannot build "
                           f"({exc}); add a model card or pick another model.") from None
    scale = params.get("scale", params.get("upscale", 4))
    first = next(iter(state.values()))
    return ModelCard(
        name=path.stem, title=path.stem, architecture=arch, params=params, scale=scale,
        weights_file=str(path.resolve()), sha256=digest,
        dtype="fp16" if first.dtype == torch.float16 else "fp32",
        licence="unknown: check where this file came from", notes=note,
    )


def _metadata_params(meta: Mapping[str, str]) -> dict[str, Any] | None:
    """The `params` JSON object of a file's metadata, or None when it is missing or unreadable."""
    try:
        params = json.loads(meta["params"])
    except (KeyError, TypeError, ValueError):
        return None
    return params if isinstance(params, dict) else None


def _channels(model: nn.Module) -> tuple[int, int]:
    _, params = model_hparams(model)
    return params["num_in_ch"], params["num_out_ch"]


# ---------------------------------------------------------------- RGB -> gray


def rgb_to_gray(model_or_state: nn.Module | Mapping[str, torch.Tensor]) -> Any:
    """Turn an RGB network into a 1-channel one that gives the same picture for gray input.

    The gray image is what an RGB net sees when the gray image is replicated to R, G and B, so the
    first conv's input channels are summed; the output is the mean of R, G and B, so the last
    conv's output channels (weights and bias) are averaged. Residual inputs stay exact because
    every channel carries the same gray image. Returns the same kind it was given (state dicts in
    canonical names).
    """
    if isinstance(model_or_state, nn.Module):
        arch, params = model_hparams(model_or_state)
        state = dict(model_or_state.state_dict())
    else:
        state = to_canonical(model_or_state)
        arch, params = detect(state)
    gray_state = _fold_to_gray(arch, params, state)
    if not isinstance(model_or_state, nn.Module):
        return gray_state
    gray_params = {**params, "num_in_ch": 1, "num_out_ch": 1}
    ref = next(model_or_state.parameters())
    gray = build_model(arch, gray_params)
    gray.load_state_dict(gray_state)
    return gray.to(device=ref.device, dtype=ref.dtype).eval()


def _fold_to_gray(arch: str, params: dict[str, Any], state: StateDict) -> StateDict:
    out = {k: v.clone() for k, v in state.items()}
    in_ch, out_ch = params["num_in_ch"], params["num_out_ch"]
    if arch == "RRDBNet":
        first, last = "conv_first", "conv_last"
        # pixel_unshuffle puts input channel c's r*r sub-images at channels c*r*r .. c*r*r+r*r-1.
        group = {4: 1, 2: 4, 1: 16}[params["scale"]]
        out_group = 1
    else:
        first, last = "body.0", f"body.{2 * (params['num_conv'] + 1)}"
        # pixel_shuffle reads output channel c's r*r sub-pixels from channels c*r*r + k.
        group = 1
        out_group = params["upscale"] ** 2
    w = out[f"{first}.weight"]
    out[f"{first}.weight"] = w.reshape(w.shape[0], in_ch, group, *w.shape[2:]).sum(1)
    w = out[f"{last}.weight"]
    out[f"{last}.weight"] = w.reshape(out_ch, out_group, *w.shape[1:]).mean(0)
    if f"{last}.bias" in out:
        out[f"{last}.bias"] = out[f"{last}.bias"].reshape(out_ch, out_group).mean(0)
    return out


# ---------------------------------------------------------------- saving


def save_model(
    model: nn.Module,
    path: str | Path,
    card: ModelCard | None = None,
    dtype: str = "fp16",
    *,
    write_card: bool = True,
) -> ModelCard:
    """Write `model` as safetensors (`dtype` fp16 or fp32) and its card as `<stem>.json`.

    The returned card has the architecture, hyper-parameters, scale, dtype, weights file name and
    sha256 filled in from what was actually written. The weights file also carries the
    architecture and hyper-parameters as metadata, so it still loads if the card is lost.
    """
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise WeightsError(f"Save weights as .safetensors, not {path.suffix or 'no suffix'}.")
    if dtype not in DTYPES:
        raise WeightsError(f"Weights can be saved as fp16 or fp32, not {dtype!r}.")
    arch, params = model_hparams(model)
    scale = int(model.scale)
    tensors = {
        k: v.detach().to("cpu", DTYPES[dtype]).contiguous().clone()
        for k, v in model.state_dict().items()
    }
    metadata = {"format": "pt", "architecture": arch, "params": json.dumps(params),
                "scale": str(scale)}
    _atomic_save(tensors, path, metadata)
    card = card or ModelCard(name=path.stem, title=path.stem, architecture=arch)
    card = replace(
        card, architecture=arch, params=params, scale=scale, weights_file=path.name,
        sha256=file_sha256(path), dtype=dtype, input_convention=INPUT_CONVENTION,
        path=path.with_suffix(".json"),
    )
    if write_card:
        card.save(path.with_suffix(".json"))
    return card


def _atomic_save(tensors: StateDict, path: Path, metadata: dict[str, str]) -> None:
    atomic_write(path, canonical_safetensors(save(tensors, metadata=metadata)))


def canonical_safetensors(data: bytes) -> bytes:
    """The same file with its JSON header's keys sorted.

    safetensors writes the header from a hash map, so the order of the metadata keys (and with
    it the file's sha256) changes from one save to the next. Sorted, the same weights always give
    the same bytes, and a card's sha256 names the weights, not the moment they were written. The
    tensor offsets are unchanged; the header keeps its 8-byte-aligned, space-padded length.
    """
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + size:]
