"""`cxr-train eval-chain`: models against bicubic on images the realistic chain degraded.

The two protocols of `cxr-enhance eval` say how a model does on clean antialiased inputs
(x4-native) and on aliased, noisy ones (seed-128to512). The models meant for "an image that lost its
detail some other way" (Robust) are trained partly on `training.degradations.RealisticDegradation`;
this measures them on it, so that a recipe tuned toward one protocol can be checked for what it
gave up on blur, noise and JPEG. Each val image's HR is the 8-bit original (cropped to a multiple
of 4), its LR the chain applied to it at x4 with a generator seeded by the image's name
(`engine.evaluation.image_rng`): the same LR for every model and every run. Scores, table and JSON
are `cxr-enhance eval`'s (whole image, interior, lung fields, next to bicubic and Lanczos), so
`cxr-enhance compare` reads the reports. The chain lives in training, which is why the viewer's
`cxr-enhance eval` does not offer it.

  cxr-train eval-chain ../shared/data/cxr14/val --model cxr-robust-x4 --model cxr-fast-x4 --chain mild
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from training.data import DataError

SCALE = 4
# "mild": the chain the Robust preset trains on (cpu-robust's data.realistic); "default":
# Real-ESRGAN's first-order ranges (blur sigma up to 3, noise up to 20/255, JPEG from 30).
CHAINS = ("mild", "default")


def chain_settings(name: str) -> dict[str, Any]:
    if name == "default":
        return {}
    if name == "mild":
        from training.config import load_config

        return dict(load_config("cpu-robust").data.realistic)
    raise DataError(f"Unknown chain {name!r}; use one of {', '.join(CHAINS)}.")


def pair_maker(settings: dict[str, Any], seed: int) -> Callable[[np.ndarray, str], tuple[np.ndarray, np.ndarray]]:
    """(original uint8, name) -> (LR, HR) float32 in [0, 1]: the chain's LR of the whole image."""
    from engine.evaluation import image_rng
    from training.degradations import RealisticDegradation

    chain = RealisticDegradation.from_settings(settings)

    def make(original: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
        h, w = original.shape[0] // SCALE * SCALE, original.shape[1] // SCALE * SCALE
        hr = np.ascontiguousarray(original[:h, :w])
        lr = chain(hr, SCALE, image_rng(seed, name))
        return lr.astype(np.float32) / 255.0, hr.astype(np.float32) / 255.0

    return make


def definition(chain: str, settings: dict[str, Any]) -> str:
    over = f" with {json.dumps(settings, sort_keys=True)} over its defaults" if settings else " at its defaults"
    return (f"HR = 8-bit original / 255 (cropped to a multiple of 4); LR = training.degradations."
            f"RealisticDegradation{over} ('{chain}') applied to the 8-bit HR at x4, seeded per image by "
            f"default_rng([seed, crc32(name)]), 8-bit, / 255; baselines PIL BICUBIC/LANCZOS mode F, clipped.")


def eval_chain(inputs: list[str], models: list[str], chain: str = "mild", *, seed: int = 0,
               precision: str = "auto", device: str = "auto", limit: int | None = None,
               json_out: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Evaluate bicubic, Lanczos and `models` (names or weights files) on the chain's pairs; prints
    the table and returns the report (written to `json_out` too)."""
    from engine import evaluation as ev
    from engine.cli import eval_progress, say

    missing = [item for item in inputs if not Path(item).exists()]
    if missing:
        raise DataError(f"{missing[0]}: no such file or folder.")
    images = ev.find_images(inputs)[: limit or None]
    if not images:
        raise DataError("No images (PNG, JPEG, TIFF) found in the inputs.")
    settings = chain_settings(chain)
    try:
        infos = ev.find_models(models)
    except (LookupError, ValueError) as exc:
        raise DataError(str(exc)) from None
    methods = ev.baseline_methods() + [ev.model_method(info, device=device, precision=precision) for info in infos]
    root = ev.inputs_root(inputs)
    protocol = f"realistic-{chain}"
    problems: dict[str, str] = {}
    result = ev.evaluate(images, protocol, methods, seed=seed, root=root,
                         on_image=eval_progress(protocol) if progress else None,
                         on_problem=problems.setdefault, make=pair_maker(settings, seed),
                         definition=definition(chain, settings))
    print(ev.format_table(result))
    report = ev.new_report("cxr-train eval-chain", inputs, [result], problems)
    for name, sentence in problems.items():
        say(f"skipped: {name} {sentence}")
    if json_out:
        ev.write_report(json_out, report)
        say(f"per-image results written to {json_out}")
    return report
