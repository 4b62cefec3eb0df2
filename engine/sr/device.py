"""Where and in which precision the network runs.

`auto` picks CUDA, then Apple MPS, then the CPU; fp16 on CUDA, bf16 on CPUs that do bf16 in
hardware (AVX512-BF16 or AMX), else fp32. Reduced precision runs through autocast rather than
`module.to(dtype)`: measured on this project's CPU it is faster (bf16 autocast 0.10 s vs 0.26 s
for a small RRDB on 96x96) with the same error, and the weights stay fp32, so a tile whose output
is not finite can be recomputed in fp32 without a second copy of the model.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager
from functools import lru_cache
from pathlib import Path

import torch

PRECISIONS: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}
_DEVICE_SPEC = re.compile(r"(cpu|mps|cuda)(:\d+)?")


class DeviceError(ValueError):
    """A device or precision that cannot be used here; the message is one sentence."""


def set_cpu_threads(threads: int | None) -> int:
    """Use `threads` CPU threads for torch's operators (None or 0: one per core). Returns the
    number now in use. Process-wide: on a shared or two-core machine fewer threads leave a core
    to the viewer's UI or to other work, at the cost of Enhance speed on the CPU."""
    if threads is not None and threads < 0:
        raise ValueError(f"The number of CPU threads must be 0 (one per core) or more, not {threads}.")
    cores = _available_cores()
    wanted = cores if not threads else min(int(threads), cores)
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)
    return torch.get_num_threads()


def _available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """`auto` (CUDA, then MPS, then CPU), `cpu`, `cuda`, `cuda:N` or `mps` as a torch.device."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = spec.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if not _DEVICE_SPEC.fullmatch(spec):
        raise DeviceError(f"Unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps.")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("No CUDA GPU is available to this PyTorch; use --device cpu.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(
                f"There is no GPU {device.index} (found {torch.cuda.device_count()}); "
                "use cuda:0 or auto."
            )
    if device.type == "mps" and not _mps_available():
        raise DeviceError("Apple MPS is not available on this machine; use cpu.")
    return device


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_precision(spec: str | torch.dtype, device: torch.device) -> torch.dtype:
    """`auto`, `fp32`, `fp16` or `bf16` as the dtype the network's convolutions run in."""
    if isinstance(spec, torch.dtype):
        spec = precision_name(spec)
    spec = spec.strip().lower()
    if spec == "auto":
        return _auto_precision(device)
    if spec not in PRECISIONS:
        raise DeviceError(f"Unknown precision {spec!r}; use auto, fp32, fp16 or bf16.")
    dtype = PRECISIONS[spec]
    if device.type == "cuda" and dtype == torch.bfloat16 and not cuda_has_native_bf16(device):
        raise DeviceError("This GPU cannot compute in bf16; use fp16 or fp32.")
    if dtype != torch.float32 and not autocast_works(device, dtype):
        raise DeviceError(f"This PyTorch cannot compute in {spec} on {device.type.upper()}; "
                          "use fp32.")
    return dtype


def cuda_has_native_bf16(device: torch.device) -> bool:
    """Whether this GPU (the device's own index, not the current one) computes bf16 in hardware
    (Ampere and later); torch's default check also says yes where it is only emulated."""
    with torch.cuda.device(device):
        try:
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        except TypeError:  # PyTorch < 2.4: no emulation to count
            return bool(torch.cuda.is_bf16_supported())


def autocast_works(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether autocast really runs `dtype` on this device type.

    Where it does not, older PyTorch only warns and runs fp32, which would make the reported
    precision a lie; asking here turns that into a clear choice up front.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.autocast(device_type=device.type, dtype=dtype):
                return bool(torch.is_autocast_enabled(device.type)) and (
                    torch.get_autocast_dtype(device.type) == dtype
                )
    except (RuntimeError, ValueError):
        return False
    except (TypeError, AttributeError):  # PyTorch < 2.4 lacks the per-device queries
        return True


def _auto_precision(device: torch.device) -> torch.dtype:
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    # MPS fp16 is not faster enough to risk black tiles; CPUs without bf16 emulate it slowly.
    return torch.float32


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 in hardware (AVX512-BF16 or AMX), so bf16 is a speed-up."""
    capability = torch.backends.cpu.get_cpu_capability().upper()
    if "AVX512_BF16" in capability or "AMX" in capability:
        return True
    # PyTorch reports its kernel level ("AVX512"), not every flag: ask the kernel too.
    return bool(_cpuinfo_flags() & {"avx512_bf16", "amx_bf16"})


def _cpuinfo_flags(path: Path = Path("/proc/cpuinfo")) -> set[str]:
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def precision_name(dtype: torch.dtype) -> str:
    for name, known in PRECISIONS.items():
        if known == dtype:
            return name
    raise DeviceError(f"Unsupported precision {dtype}; use fp32, fp16 or bf16.")


def autocast(device: torch.device, dtype: torch.dtype) -> AbstractContextManager[object]:
    """The context that runs convolutions in `dtype`. fp32 on CUDA turns cuDNN's TF32 off for
    the duration: PyTorch's default lets "fp32" convolutions run with a 10-bit mantissa on
    Ampere and later, so a result (and a benchmark's reference) labelled fp32 would not be."""
    if dtype == torch.float32:
        return _no_tf32() if device.type == "cuda" else contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def _no_tf32() -> Iterator[None]:
    try:
        before: bool | None = bool(torch.backends.cudnn.allow_tf32)
    except RuntimeError:  # the caller mixed torch's old and new TF32 switches: leave them be
        yield
        return
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = before


# How the backends word it: CUDA, MPS and cuDNN "out of memory"; torch's CPU allocator
# "DefaultCPUAllocator: can't allocate memory: ... (Cannot allocate memory)" on Linux and
# "... not enough memory: ..." on Windows.
# torch.OutOfMemoryError is PyTorch 2.4+; before it only the CUDA one existed
_TORCH_OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
_OUT_OF_MEMORY = ("out of memory", "can't allocate memory", "cannot allocate memory",
                  "not enough memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, Python's MemoryError, or the RuntimeError other backends (the
    CPU allocator, MPS, cuDNN) raise for it."""
    if isinstance(exc, (_TORCH_OOM, MemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(words in text for words in _OUT_OF_MEMORY)


def release_memory(device: torch.device) -> None:
    """Give cached blocks back after an out-of-memory error so a smaller tile can fit."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()
