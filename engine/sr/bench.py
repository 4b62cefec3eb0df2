"""Speed and memory of Enhance, measured honestly.

Every configuration (precision x tiled/untiled) runs in its own Python process so that its peak
memory (ru_maxrss; torch.cuda.max_memory_allocated on CUDA) is its own. Achieved GFLOP/s comes from
the counted multiply-adds of the network (`macs_per_input_pixel`, 2 FLOP per MAC) and is printed
next to an fp32 matrix multiply measured in the same run, the practical ceiling of this machine.

`python -m engine.sr.bench --child '<json>'` is the child entry point; users call `cxr-enhance bench`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.fileio import file_sha256
from engine.provenance import machine_info, provenance  # shared with `cxr-enhance eval`
from engine.sr.archs import RRDBNet, SRVGGNetCompact, macs_per_input_pixel

RANDOM_ARCHS: dict[str, Callable[[], torch.nn.Module]] = {
    # ESRGAN's generator as published: 64 features, 23 RRDB blocks, growth 32.
    "rrdb23": lambda: RRDBNet(num_in_ch=1, num_out_ch=1, num_feat=64, num_block=23, num_grow_ch=32),
    # Real-ESRGAN's compact network (realesr-general-x4v3 shape): 64 features, 16 convs.
    "compact": lambda: SRVGGNetCompact(num_in_ch=1, num_out_ch=1, num_feat=64, num_conv=16),
}
CHILD_MARKER = "BENCH-RESULT "


@dataclass
class RunConfig:
    """One measured configuration, small enough to pass to a child process as JSON."""

    arch: str
    size: int
    device: str = "auto"
    precision: str = "fp32"
    tile: int | None = None  # None: one tile covering the whole input
    overlap: int = 16
    repeats: int = 3
    warmup: int = 1
    label: str = ""
    matmul_size: int = 0  # > 0: time an fp32 matmul just before and after, in the same process


# --- networks and measurements (run inside the child) ------------------------------------------

def build_network(arch: str) -> tuple[Any, str, bool]:
    """(network or registry ModelInfo, description, random weights?) for an arch or model name."""
    key = arch.lower()
    if key in RANDOM_ARCHS:
        torch.manual_seed(0)
        return RANDOM_ARCHS[key]().eval(), f"{key} (random weights)", True
    from engine.sr.registry import find_model

    info = find_model(arch)
    return info, info.card.name, False


def network_cost(arch: str) -> dict[str, Any]:
    """Parameters and multiply-adds per input pixel, counted on the architecture itself."""
    net = _as_module(arch)
    return {"params": int(sum(p.numel() for p in net.parameters())),
            "macs_per_input_pixel": float(macs_per_input_pixel(net)),
            "scale": int(getattr(net, "scale", 4))}


def _as_module(arch: str) -> torch.nn.Module:
    key = arch.lower()
    if key in RANDOM_ARCHS:
        return RANDOM_ARCHS[key]().eval()
    from engine.sr.archs import build_model
    from engine.sr.registry import find_model

    card = find_model(arch).card
    return build_model(card.architecture, card.params).eval()


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def current_rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def synthetic_image(size: int, seed: int = 0) -> np.ndarray:
    """A smooth-plus-noise float32 image in [0, 1]: content does not change conv speed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / max(size, 1)
    smooth = 0.5 + 0.3 * np.sin(6 * x) * np.cos(4 * y)
    return np.clip(smooth + rng.normal(0, 0.05, (size, size)), 0, 1).astype(np.float32)


def run_config(cfg: RunConfig) -> dict[str, Any]:
    """Time one configuration through the Enhancer (in this process)."""
    from engine.sr.enhancer import Enhancer

    network, description, random_weights = build_network(cfg.arch)
    tile = cfg.tile if cfg.tile else cfg.size
    enhancer = Enhancer(network, device=cfg.device, precision=cfg.precision, tile=tile,
                        overlap=cfg.overlap)
    image = synthetic_image(cfg.size)
    rss_before = current_rss_mb()
    _reset_cuda_peak(cfg.device)
    tiles: list[int] = []
    times: list[float] = []
    result = None
    for i in range(cfg.warmup + cfg.repeats):
        start = time.perf_counter()
        result = enhancer.enhance(image, progress=lambda p: tiles.append(p.total))
        elapsed = time.perf_counter() - start
        if i >= cfg.warmup:
            times.append(elapsed)
    assert result is not None
    peak_rss, cuda_peak = peak_rss_mb(), _cuda_peak_mb(str(result.device))
    # Right after (not before: its buffers would count in this configuration's peak memory).
    matmul = (matmul_gflops(cfg.matmul_size, repeats=5, device=str(result.device))["gflops"]
              if cfg.matmul_size else None)
    return {
        "matmul_gflops_after": matmul,
        **asdict(cfg), "model": description, "random_weights": random_weights,
        "tile": cfg.tile, "tiles": tiles[-1] if tiles else 1,
        "resolved_device": str(result.device), "resolved_precision": str(result.precision),
        "output_shape": list(result.image.shape),
        "seconds": times, "seconds_median": statistics.median(times), "seconds_min": min(times),
        "rss_before_mb": rss_before, "peak_rss_mb": peak_rss, "cuda_peak_mb": cuda_peak,
        "threads": torch.get_num_threads(),
    }


def _reset_cuda_peak(device: str) -> None:
    if torch.cuda.is_available() and device != "cpu":
        torch.cuda.reset_peak_memory_stats()


def _cuda_peak_mb(device: str) -> float | None:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return None


def matmul_gflops(n: int = 2048, repeats: int = 10, device: str = "cpu") -> dict[str, Any]:
    """fp32 GEMM throughput (2 n^3 FLOP per product): the machine's practical fp32 ceiling."""
    dev = torch.device(device)
    a = torch.randn(n, n, device=dev)
    b = torch.randn(n, n, device=dev)
    torch.mm(a, b)  # warm-up: thread pool, caches, cuBLAS handle
    _sync(dev)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    _sync(dev)
    seconds = time.perf_counter() - start
    return {"n": n, "dtype": "fp32", "repeats": repeats, "seconds": seconds,
            "gflops": 2 * n**3 * repeats / seconds / 1e9}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- the parent: spawn children, put numbers together ------------------------------------------

def run_in_subprocess(cfg: RunConfig, timeout: float | None = None) -> dict[str, Any]:
    """Run one configuration in a fresh interpreter so its peak memory is its own."""
    cmd = [sys.executable, "-m", "engine.sr.bench", "--child", json.dumps(asdict(cfg))]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          cwd=_project_root(), env=_child_env())
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(CHILD_MARKER):
            return json.loads(line[len(CHILD_MARKER):])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    raise RuntimeError(f"Benchmark configuration {cfg.label or cfg.precision} failed: {tail}")


def _project_root() -> str:
    return str(Path(__file__).resolve().parents[2])


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    root = _project_root()
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def resolve_device_name(device: str) -> str:
    if device != "auto":
        return device
    try:
        from engine.sr.device import resolve_device

        return str(resolve_device("auto"))
    except ImportError:
        return "cuda" if torch.cuda.is_available() else "cpu"


def low_precision_for(device: str) -> str:
    return "fp16" if device.startswith("cuda") else "bf16"


def speed_configs(arch: str, size: int, device: str, repeats: int, tile: int | None,
                  overlap: int) -> list[RunConfig]:
    """fp32 and low precision, each untiled and tiled."""
    low = low_precision_for(device)
    tile = tile or max(16, size // 2)
    configs = []
    for precision in ("fp32", low):
        for t in (None, tile):
            label = f"{precision} {'untiled' if t is None else f'tiled {t}+{overlap}'}"
            configs.append(RunConfig(arch, size, device, precision, t, overlap, repeats,
                                     warmup=1, label=label))
    return configs


def add_rates(run: dict[str, Any], macs_per_pixel: float, scale: int, matmul: float) -> None:
    """Output megapixels/s and achieved GFLOP/s (useful work: the image, not tile margins).

    The GFLOP/s is compared with the matmul timed right after this configuration, in its process,
    when there is one (on a shared machine the load changes between configurations), else with
    `matmul`.
    """
    seconds = run["seconds_median"]
    out_pixels = (run["size"] * scale) ** 2
    run["output_mpix_per_s"] = out_pixels / seconds / 1e6
    run["gflops"] = 2 * macs_per_pixel * run["size"] ** 2 / seconds / 1e9
    reference = run.get("matmul_gflops_after") or matmul
    run["matmul_reference_gflops"] = reference
    run["fraction_of_matmul"] = run["gflops"] / reference if reference else None


def report_provenance(arch: str, device: str) -> dict[str, Any]:
    """engine.provenance's versions, machine and git commit; for an installed model (not a random
    architecture) also the sha256 of the weights file measured, hashed from the file itself."""
    found = provenance(device)
    if arch.lower() not in RANDOM_ARCHS:
        try:
            from engine.sr.registry import find_model

            weights = find_model(arch).weights_path
            found["weights_file"] = str(weights)
            found["weights_sha256"] = file_sha256(weights)
        except (LookupError, ValueError, OSError):
            pass
    return found


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def bench_speed(arch: str = "rrdb23", size: int = 128, device: str = "auto", repeats: int = 3,
                tile: int | None = None, overlap: int = 16, matmul_size: int = 2048,
                isolate: bool = True,
                log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The speed table: fp32 vs bf16/fp16, tiled vs untiled, next to matmul GFLOP/s.

    `isolate=False` runs every configuration in this process: quicker to start, but the peak
    memory figures then include every earlier configuration.
    """
    say = log or (lambda _msg: None)
    dev = resolve_device_name(device)
    cost = network_cost(arch)
    report: dict[str, Any] = {"kind": "speed", "arch": arch, "size": size,
                              "output_size": size * cost["scale"], **cost,
                              "machine": machine_info(dev), "load_average_start": load_average(),
                              "provenance": report_provenance(arch, dev)}
    matmul_before = matmul_gflops(matmul_size, device=dev)
    say(f"fp32 matmul {matmul_size}^2: {matmul_before['gflops']:.1f} GFLOP/s")
    runs = []
    for cfg in speed_configs(arch, size, dev, repeats, tile, overlap):
        cfg.matmul_size = matmul_size
        say(f"running {cfg.label} ...")
        run = run_in_subprocess(cfg) if isolate else run_config(cfg)
        run["isolated"] = isolate
        runs.append(run)
        add_rates(run, cost["macs_per_input_pixel"], cost["scale"], matmul_before["gflops"])
        say(f"  {cfg.label}: {run['seconds_median']:.3f} s, {run['gflops']:.1f} GFLOP/s, "
            f"peak RSS {run['peak_rss_mb']:.0f} MB")
    matmul_after = matmul_gflops(matmul_size, device=dev)
    report.update(matmul=matmul_before, matmul_after=matmul_after, runs=runs,
                  speedups=_speedups(runs), load_average_end=load_average())
    return report


def _speedups(runs: list[dict[str, Any]]) -> dict[str, float]:
    """`<low>_speedup_<tiling>`: fp32 time / low-precision time; `tiling_cost_<precision>`:
    tiled time / untiled time (the price of tile margins and per-tile overhead)."""
    by = {(r["precision"], r["tile"] is None): r["seconds_median"] for r in runs}
    out: dict[str, float] = {}
    for (precision, untiled), seconds in by.items():
        tiling = "untiled" if untiled else "tiled"
        if precision != "fp32" and ("fp32", untiled) in by:
            out[f"{precision}_speedup_{tiling}"] = by[("fp32", untiled)] / seconds
        if not untiled and (precision, True) in by:
            out[f"tiling_cost_{precision}"] = seconds / by[(precision, True)]
    return out


def bench_memory(size: int = 2048, arch: str = "compact", device: str = "auto",
                 precision: str = "auto", tile: int = 256, overlap: int = 16) -> dict[str, Any]:
    """Peak memory of one big Enhance (default 2048^2 -> 8192^2), in its own process."""
    dev = resolve_device_name(device)
    cfg = RunConfig(arch, size, dev, precision, tile, overlap, repeats=1, warmup=0,
                    label=f"memory {size}")
    run = run_in_subprocess(cfg)
    scale = network_cost(arch)["scale"]
    out_mb = (size * scale) ** 2 * 4 / 2**20
    return {"kind": "memory", "arch": arch, "size": size, "output_size": size * scale,
            "output_float32_mb": out_mb, "target_peak_rss_mb": 2500,
            "within_target": run["peak_rss_mb"] < 2500, "machine": machine_info(dev),
            "provenance": report_provenance(arch, dev), "load_average": load_average(), "run": run}


def bf16_fidelity(image_path: str | Path, arch: str = "rrdb23", crop: int = 256,
                  device: str = "auto") -> dict[str, Any]:
    """PSNR of the low-precision output against the fp32 output on a real radiograph crop."""
    from skimage.metrics import peak_signal_noise_ratio

    from engine.evaluation import load_gray_uint8
    from engine.sr.enhancer import Enhancer

    dev = resolve_device_name(device)
    low = low_precision_for(dev)
    image = center_crop(load_gray_uint8(image_path), crop).astype(np.float32) / 255.0
    network, description, random_weights = build_network(arch)
    outputs = {}
    for precision in ("fp32", low):
        enhancer = Enhancer(network, device=dev, precision=precision, tile=crop, overlap=16)
        outputs[precision] = enhancer.enhance(image).image.astype(np.float64)
    ref, test = outputs["fp32"], outputs[low]
    diff = np.abs(test - ref)
    identical = not diff.any()
    # The Enhancer clamps to the input's range: a mostly clamped output (typical of random
    # weights) makes the PSNR look better than the arithmetic really is.
    clamped = float(np.mean((ref <= image.min()) | (ref >= image.max())))
    psnr = None if identical else float(peak_signal_noise_ratio(ref, test, data_range=1.0))
    raw_snr = raw_output_snr(network, image, dev, low)
    return {"kind": "fidelity", "image": str(image_path), "crop": crop, "arch": arch,
            "model": description, "random_weights": random_weights, "precision": low,
            "psnr_vs_fp32_db": psnr, "identical": identical, "clamped_fraction": clamped,
            "raw_output_snr_db": raw_snr,
            "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "fp32_output_range": [float(ref.min()), float(ref.max())],
            "fp32_output_std": float(ref.std()), "machine": machine_info(dev),
            "provenance": report_provenance(arch, dev)}


def raw_output_snr(network: Any, image: np.ndarray, device: str, low: str) -> float | None:
    """10 log10(var(fp32 output) / MSE(low - fp32)) on the network's own, unclamped output.

    Meaningful even for random weights, whose outputs the Enhancer mostly clamps away.
    """
    from engine.sr.device import PRECISIONS, autocast

    if not isinstance(network, torch.nn.Module):
        from engine.sr.weights import load_model

        network, _card = load_model(network.weights_path, card=network.card)
    dev = torch.device(device)
    net = network.eval().to(dev)
    span = float(image.max() - image.min()) or 1.0
    x = torch.from_numpy((image - image.min()) / span)[None, None].to(dev)
    with torch.inference_mode():
        ref = net(x).double()
        with autocast(dev, PRECISIONS[low]):
            test = net(x).double()
    mse = float(((test - ref) ** 2).mean())
    return None if mse == 0 else float(10 * np.log10(float(ref.var()) / mse))


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape
    y0, x0 = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return image[y0:y0 + size, x0:x0 + size]


# --- text output -------------------------------------------------------------------------------

def format_speed(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"{report['arch']}: {report['params'] / 1e6:.2f} M params, "
        f"{report['macs_per_input_pixel'] / 1e3:.1f} kMAC per input pixel, "
        f"{report['size']}^2 -> {report['output_size']}^2 on {m['device']} "
        f"({m['threads']} threads, load {report['load_average_start']})",
        f"fp32 matmul {report['matmul']['n']}^2: {report['matmul']['gflops']:.1f} GFLOP/s before, "
        f"{report['matmul_after']['gflops']:.1f} after",
        f"{'configuration':<24} {'tiles':>5} {'s (median)':>10} {'out MP/s':>9} "
        f"{'GFLOP/s':>8} {'matmul':>7} {'ratio':>6} {'peak RSS MB':>11}",
    ]
    for r in report["runs"]:
        lines.append(f"{r['label']:<24} {r['tiles']:>5} {r['seconds_median']:>10.3f} "
                     f"{r['output_mpix_per_s']:>9.3f} {r['gflops']:>8.1f} "
                     f"{r['matmul_reference_gflops']:>7.1f} {100 * r['fraction_of_matmul']:>5.0f}% "
                     f"{r['peak_rss_mb']:>11.0f}")
    for name, value in report["speedups"].items():
        lines.append(f"{name}: {value:.2f}x")
    return "\n".join(lines)


def format_memory(report: dict[str, Any]) -> str:
    r = report["run"]
    verdict = "within" if report["within_target"] else "OVER"
    return (f"{report['arch']} {report['size']}^2 -> {report['output_size']}^2 "
            f"({r['resolved_precision']}, tile {r['tile']}, {r['tiles']} tiles) in "
            f"{r['seconds_median']:.1f} s: peak RSS {r['peak_rss_mb']:.0f} MB "
            f"({verdict} the {report['target_peak_rss_mb']} MB target; RSS before the image "
            f"{r['rss_before_mb']:.0f} MB; the float32 output alone is "
            f"{report['output_float32_mb']:.0f} MB)")


def format_fidelity(report: dict[str, Any]) -> str:
    weights = "" if report["random_weights"] else " (trained weights)"
    psnr = report["psnr_vs_fp32_db"]
    psnr_text = "identical outputs" if psnr is None else f"PSNR {psnr:.2f} dB"
    return (f"{report['precision']} vs fp32, {report['model']}{weights}, {report['crop']}^2 crop "
            f"of {report['image']}: {psnr_text}, max |diff| "
            f"{report['max_abs_diff']:.4g}, mean |diff| {report['mean_abs_diff']:.3g}, "
            f"{100 * report['clamped_fraction']:.0f}% of output pixels clamped; unclamped network "
            f"output SNR {_db(report['raw_output_snr_db'])}")


def _db(value: float | None) -> str:
    return "infinite (identical)" if value is None else f"{value:.1f} dB"


def _child_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.sr.bench")
    parser.add_argument("--child", required=True, help="a RunConfig as JSON")
    args = parser.parse_args(argv)
    result = run_config(RunConfig(**json.loads(args.child)))
    print(CHILD_MARKER + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(_child_main(sys.argv[1:]))
