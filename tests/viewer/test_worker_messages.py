"""The sentence the viewer shows when Enhance fails: one sentence and a way on."""

from __future__ import annotations

import pytest

from viewer.worker import error_message

CPU_ALLOCATOR = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                 "memory: you tried to allocate 8589934592 bytes. Error code 12 (Cannot allocate "
                 "memory)")


@pytest.mark.parametrize("exc", [MemoryError(), RuntimeError(CPU_ALLOCATOR),
                                 RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")])
def test_out_of_memory_gets_advice_the_reader_can_follow(exc):
    text = error_message(exc)
    assert text.startswith("Enhance ran out of memory;")
    assert "visible region" in text and "Fast model" in text
    assert "tile size" not in text  # the engine already halves the tile by itself
    assert "alloc_cpu" not in text


def test_engine_errors_pass_through_and_others_are_shortened():
    from engine.sr.enhancer import EnhanceError

    assert error_message(EnhanceError("The model is damaged; reinstall it.")) == (
        "The model is damaged; reinstall it.")
    text = error_message(ValueError("bad thing\nwith a long traceback-like tail"))
    assert text == "Enhance failed (ValueError: bad thing); see Settings or try again."
