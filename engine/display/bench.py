"""How long re-windowing takes: the number that decides whether a window drag feels live."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from engine.display.render import Renderer, render
from engine.display.window import Window

TARGET_MS = 30.0


def synthetic_radiograph(size: int = 2000, seed: int = 0) -> np.ndarray:
    """A size x size 12-bit-like float32 image (smooth body + noise + a saturated border)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / np.float32(size)
    body = 2500.0 - 1500.0 * np.exp(-(((x - 0.5) / 0.3) ** 2 + ((y - 0.5) / 0.35) ** 2))
    values = np.rint(body + rng.normal(0.0, 40.0, body.shape)).astype(np.float32)
    border = size // 20
    values[:border], values[-border:] = 4095.0, 4095.0
    return np.clip(values, 0, 4095, out=values)


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (page faults, caches)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000.0)


def bench_render(size: int = 2000, repeats: int = 20) -> dict:
    """Median milliseconds to re-window a size x size image, per path and VOI function.

    `renderer_*` is what the viewer uses while dragging (`Renderer.render`, built once per
    image: `renderer_setup_ms`); `direct_*` is the pure `render()` on float32 values; `float_*`
    uses non-integer values (an enhanced image). `meets_target` compares the slowest renderer
    time with the 30 ms live-drag budget.
    """
    values = synthetic_radiograph(size)
    enhanced = values + np.float32(0.25)  # non-integer values -> quantised path
    linear = Window(2000.0, 2500.0)
    sigmoid = Window(2000.0, 2500.0, function="SIGMOID")
    start = time.perf_counter()
    renderer = Renderer(values)
    setup_ms = (time.perf_counter() - start) * 1000.0
    float_renderer = Renderer(enhanced)
    out = np.empty(values.shape, np.uint8)
    mono1 = {"photometric": "MONOCHROME1"}
    result = {
        "size": size,
        "repeats": repeats,
        "renderer_setup_ms": round(setup_ms, 2),
        "renderer_linear_ms": _median_ms(lambda: renderer.render(linear), repeats),
        "renderer_linear_into_buffer_ms": _median_ms(
            lambda: renderer.render(linear, out=out), repeats),
        "renderer_sigmoid_mono1_ms": _median_ms(
            lambda: renderer.render(sigmoid, **mono1), repeats),
        "float_renderer_linear_ms": _median_ms(lambda: float_renderer.render(linear), repeats),
        "direct_linear_ms": _median_ms(lambda: render(values, window=linear), repeats),
        "direct_sigmoid_ms": _median_ms(lambda: render(values, window=sigmoid), repeats),
    }
    slowest = max(v for k, v in result.items() if k.startswith(("renderer_", "float_"))
                  and k != "renderer_setup_ms")
    result = {k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()}
    result["target_ms"] = TARGET_MS
    result["meets_target"] = bool(slowest < TARGET_MS)
    return result


if __name__ == "__main__":  # python -m engine.display.bench
    import json

    print(json.dumps(bench_render(), indent=2))
