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


def test_the_worker_works_out_the_network_range_off_the_ui_thread():
    # The viewer passes the image; leaving Pixel Padding out masks the whole image, so the range
    # is computed in the worker thread, not when Enhance is pressed.
    import threading
    from types import SimpleNamespace

    import numpy as np

    from viewer.worker import EnhanceRequest, EnhanceWorker

    values = np.zeros((4, 4), np.float32)
    png = SimpleNamespace(is_dicom=False, bits_stored=8)
    worker = EnhanceWorker(EnhanceRequest(values=values, image=png), threading.Event())
    assert worker._value_range() == (0.0, 255.0)  # 8-bit files as trained, same as the CLI
    given = EnhanceWorker(EnhanceRequest(values=values, image=png, value_range=(1.0, 2.0)),
                          threading.Event())
    assert given._value_range() == (1.0, 2.0)
    assert EnhanceWorker(EnhanceRequest(values=values), threading.Event())._value_range() is None
