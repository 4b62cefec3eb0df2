"""Device and precision choice, checked by pretending to have (or lack) GPUs and bf16 CPUs."""

from __future__ import annotations

import contextlib

import pytest
import torch

from engine.sr import device as dev
from engine.sr.device import (
    DeviceError,
    cpu_has_native_bf16,
    is_out_of_memory,
    precision_name,
    resolve_device,
    resolve_precision,
)

CPU, CUDA, MPS = torch.device("cpu"), torch.device("cuda"), torch.device("mps")


@pytest.fixture
def machine(monkeypatch):
    """Set what hardware the code sees: machine(cuda=True, mps=False, bf16=False)."""

    def configure(*, cuda: bool = False, mps: bool = False, bf16: bool = False,
                  cuda_bf16: bool = True, gpus: int = 1) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus if cuda else 0)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: cuda_bf16)
        monkeypatch.setattr(torch.cuda, "device", lambda _d: contextlib.nullcontext())
        monkeypatch.setattr(dev, "_mps_available", lambda: mps)
        monkeypatch.setattr(dev, "cpu_has_native_bf16", lambda: bf16)

    return configure


@pytest.mark.parametrize("cuda, mps, expected", [
    (True, True, "cuda"), (False, True, "mps"), (False, False, "cpu"),
])
def test_auto_device_order(machine, cuda, mps, expected):
    machine(cuda=cuda, mps=mps)
    assert resolve_device("auto").type == expected
    assert resolve_device(" AUTO ").type == expected


def test_explicit_devices(machine):
    machine(cuda=True, gpus=2)
    assert resolve_device("cpu") == CPU
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    assert resolve_device(torch.device("cpu")) == CPU
    with pytest.raises(DeviceError, match="no GPU 2"):
        resolve_device("cuda:2")
    with pytest.raises(DeviceError, match="Unknown device"):
        resolve_device("tpu")


def test_missing_accelerators_are_explained(machine):
    machine(cuda=False, mps=False)
    with pytest.raises(DeviceError, match="No CUDA GPU.*cpu"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match="MPS is not available"):
        resolve_device("mps")


@pytest.mark.parametrize("device, bf16, expected", [
    (CUDA, False, torch.float16),
    (CUDA, True, torch.float16),
    (CPU, True, torch.bfloat16),
    (CPU, False, torch.float32),
    (MPS, True, torch.float32),
])
def test_auto_precision(machine, device, bf16, expected):
    machine(cuda=True, bf16=bf16)
    assert resolve_precision("auto", device) == expected


def test_explicit_precision(machine):
    machine(cuda=True, cuda_bf16=False)
    assert resolve_precision("fp32", CUDA) == torch.float32
    assert resolve_precision("FP16", CPU) == torch.float16
    assert resolve_precision(torch.bfloat16, CPU) == torch.bfloat16
    with pytest.raises(DeviceError, match="cannot compute in bf16"):
        resolve_precision("bf16", CUDA)
    with pytest.raises(DeviceError, match="Unknown precision"):
        resolve_precision("int8", CPU)
    assert [precision_name(d) for d in (torch.float32, torch.float16, torch.bfloat16)] == [
        "fp32", "fp16", "bf16"]


def test_precision_autocast_cannot_run_is_refused(machine, monkeypatch):
    machine(cuda=False)
    monkeypatch.setattr(dev, "autocast_works", lambda device, dtype: False)
    with pytest.raises(DeviceError, match="cannot compute in fp16 on CPU; use fp32"):
        resolve_precision("fp16", CPU)
    assert resolve_precision("fp32", CPU) == torch.float32


def test_autocast_works_on_this_cpu():
    assert dev.autocast_works(CPU, torch.bfloat16) and dev.autocast_works(CPU, torch.float16)


@pytest.mark.parametrize("capability, flags, expected", [
    ("AVX512_BF16", set(), True),
    ("AMX", set(), True),
    ("AVX512", {"avx512f", "avx512_bf16"}, True),
    ("AVX2", {"avx2", "amx_bf16"}, True),
    ("AVX512", {"avx512f"}, False),
    ("DEFAULT", set(), False),
])
def test_cpu_bf16_detection(monkeypatch, capability, flags, expected):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(dev, "_cpuinfo_flags", lambda: flags)
    cpu_has_native_bf16.cache_clear()
    try:
        assert cpu_has_native_bf16() is expected
    finally:
        cpu_has_native_bf16.cache_clear()


def test_cpuinfo_flags_parsing(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor : 0\nflags\t\t: fpu avx512f avx512_bf16\nbugs : none\n")
    assert dev._cpuinfo_flags(info) == {"fpu", "avx512f", "avx512_bf16"}
    assert dev._cpuinfo_flags(tmp_path / "missing") == set()


def test_out_of_memory_recognised():
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate"))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"))
    assert is_out_of_memory(MemoryError())
    # torch's CPU allocator words it differently (copied from torch 2.13 on Linux)
    assert is_out_of_memory(RuntimeError(
        "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
        "memory: you tried to allocate 4398046511104 bytes. Error code 12 (Cannot allocate memory)"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))


def test_set_cpu_threads_clamps_to_the_cores_and_zero_means_all() -> None:
    before = torch.get_num_threads()
    try:
        cores = dev._available_cores()
        assert dev.set_cpu_threads(1) == 1 == torch.get_num_threads()
        assert dev.set_cpu_threads(0) == cores
        assert dev.set_cpu_threads(None) == cores
        assert dev.set_cpu_threads(cores + 50) == cores
        with pytest.raises(ValueError, match="0 \\(one per core\\) or more"):
            dev.set_cpu_threads(-1)
    finally:
        torch.set_num_threads(before)


def test_fp32_on_cuda_turns_tf32_off_for_the_run_and_back_after():
    # PyTorch lets "fp32" cuDNN convolutions run in TF32 by default; a result labelled fp32 must
    # not be. The switch is plain Python state, so this runs without a GPU.
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = True
    try:
        with dev.autocast(torch.device("cuda"), torch.float32):
            assert torch.backends.cudnn.allow_tf32 is False
        assert torch.backends.cudnn.allow_tf32 is True
        with dev.autocast(torch.device("cpu"), torch.float32):
            assert torch.backends.cudnn.allow_tf32 is True  # nothing to do on the CPU
    finally:
        torch.backends.cudnn.allow_tf32 = before


def test_bf16_on_a_gpu_asks_for_hardware_bf16_not_emulation(monkeypatch):
    asked = []

    def supported(including_emulation=True):
        asked.append(including_emulation)
        return including_emulation  # a Turing card: emulated only

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", supported)
    monkeypatch.setattr(torch.cuda, "device", lambda _d: contextlib.nullcontext())
    assert dev.cuda_has_native_bf16(torch.device("cuda:1")) is False and asked == [False]
    with pytest.raises(dev.DeviceError, match="cannot compute in bf16"):
        dev.resolve_precision("bf16", torch.device("cuda"))
