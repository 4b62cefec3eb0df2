"""Decode compressed radiographs in a helper process, so the window never freezes while loading.

Why a process: the JPEG 2000 decoders pydicom uses (pylibjpeg-openjpeg and GDCM) hold the GIL
for the whole decode. Measured on the bundled 2000x2128 J2K sample: 0.6-0.8 s during which the
UI thread could not run at all, even though the decode was on a worker thread. A child process
has its own GIL. Uncompressed DICOM and PNG/TIFF (Pillow releases the GIL) decode in-process.

The child uses only engine.io's public API (scan the file, pick the frame, modality_values), so
no file parsing lives here. If the helper process cannot start (a locked-down or frozen
environment), decoding falls back to the calling thread.

A decode that has not answered after TIMEOUT_S seconds (engine.io.isolation's limit for a hung
decoder) is given up: its helper is killed, the image gets one sentence (DecodeTimeout), and the
next image starts a fresh helper. Closing the window kills the helpers instead of waiting.
"""

from __future__ import annotations

import atexit
import multiprocessing
import threading
from concurrent.futures import CancelledError, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np

# Transfer syntaxes whose pixel data is stored as plain numbers (a copy, not a decode).
UNCOMPRESSED = frozenset({
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian (zlib releases the GIL)
    "",
})

# Seconds a helper may take for one image; None: engine.io.isolation.TIMEOUT_S.
TIMEOUT_S: float | None = None

_lock = threading.Lock()
_pools: dict[str, ProcessPoolExecutor] = {}
_disabled = False


class DecodeTimeout(RuntimeError):
    """A helper did not finish decoding an image in time; the message is one sentence."""


class DecodeStopped(RuntimeError):
    """The helpers were stopped (the window is closing) while this image was decoding."""


def timeout_s() -> float:
    if TIMEOUT_S is not None:
        return float(TIMEOUT_S)
    from engine.io.isolation import TIMEOUT_S as isolation_timeout

    return float(isolation_timeout)


def needs_helper(image: Any) -> bool:
    """Compressed DICOM pixel data: decode in the helper process."""
    return bool(getattr(image, "is_dicom", False)) and \
        str(getattr(image, "transfer_syntax", "")) not in UNCOMPRESSED


def modality_values(image: Any, *, lane: str = "view") -> np.ndarray:
    """`image.modality_values()`, from a helper process when decoding would hold the GIL.

    Call from a background thread (it blocks until decoded). `lane` keeps the image the user
    asked for ("view") from queueing behind a folder's thumbnails ("thumbs").
    """
    if _disabled or not needs_helper(image):
        return image.modality_values()
    pool = _pool(lane)
    if pool is None:
        return image.modality_values()
    source = getattr(image, "source_file", None) or image.path
    limit = timeout_s()
    name = Path(str(image.path)).name
    try:
        future = pool.submit(_decode_in_child, str(source), str(image.path), int(image.frame))
    except (OSError, RuntimeError):  # BrokenProcessPool is a RuntimeError too
        if _is_stopped(pool):  # killed on purpose: decoding here could hang the same way
            raise DecodeStopped(f"Decoding {name} was stopped.") from None
        if isinstance(pool, ProcessPoolExecutor) and (
                getattr(pool, "_broken", False) or getattr(pool, "_shutdown_thread", False)):
            _discard(lane, pool)  # broken or shut down meanwhile: a fresh one next time
        else:
            _give_up()  # no helper can be started here
        return image.modality_values()
    try:
        values = future.result(timeout=limit)
    except FutureTimeout:
        # A decoder hung in the helper (which decodes without isolation). Kill that helper so
        # the lane's next image gets a fresh one, and say so for this image only.
        _discard(lane, pool, kill=True)
        raise DecodeTimeout(f"Decoding {name} took longer than {limit:.0f} s, so it was "
                            "stopped; choose another image, or this one again to retry.") from None
    except (BrokenProcessPool, CancelledError):
        if _is_stopped(pool):
            raise DecodeStopped(f"Decoding {name} was stopped.") from None
        # The helper died (a decoder crashed on this file, or it was killed). Start a fresh one
        # next time and decode here: engine.io runs the decoders that can crash (GDCM) in a
        # process of its own (engine.io.isolation), so a damaged file becomes one sentence.
        _discard(lane, pool)
        return image.modality_values()
    values.flags.writeable = False
    return values


def _pool(lane: str) -> ProcessPoolExecutor | None:
    global _disabled
    with _lock:
        pool = _pools.get(lane)
        if pool is None and not _disabled:
            try:
                # spawn: forking a process that runs Qt threads is unsafe.
                context = multiprocessing.get_context("spawn")
                pool = ProcessPoolExecutor(max_workers=1, mp_context=context,
                                           initializer=_child_init)
            except (OSError, ValueError, NotImplementedError):
                _disabled = True
                return None
            _pools[lane] = pool
        return pool


def _child_init() -> None:
    """In the helper: decode GDCM syntaxes right here, the helper is expendable already."""
    from engine.io import isolation

    isolation.set_enabled(False)


def _discard(lane: str, pool: ProcessPoolExecutor, *, kill: bool = False) -> None:
    with _lock:
        if _pools.get(lane) is pool:
            del _pools[lane]
    if kill:
        _kill(pool)
    pool.shutdown(wait=False, cancel_futures=True)


def _is_stopped(pool: ProcessPoolExecutor) -> bool:
    """Whether the pool was ended on purpose (a timeout, closing): its waiting callers must not
    fall back to decoding in-process, which could hang the same way."""
    return bool(getattr(pool, "_cxr_stopped", False))


def _kill(pool: ProcessPoolExecutor) -> None:
    """End the pool's processes now: a hung decode never returns, and waiting for it (at exit,
    concurrent.futures joins them) would keep the viewer from quitting."""
    pool._cxr_stopped = True  # type: ignore[attr-defined]  # see _is_stopped
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            process.kill()
        except (OSError, AttributeError, ValueError):
            pass


def _give_up() -> None:
    global _disabled
    _disabled = True
    shutdown()


def shutdown() -> None:
    """Stop the helper processes (closing the window): killed, not waited for, so a decode that
    hangs cannot keep the viewer from exiting. The next decode starts fresh ones."""
    with _lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        _kill(pool)
        pool.shutdown(wait=False, cancel_futures=True)


atexit.register(shutdown)
# concurrent.futures joins its helper processes in threading's exit hooks, which run before
# atexit's (and last registered, first run): kill hung helpers before that join.
_register_thread_exit = getattr(threading, "_register_atexit", None)
if _register_thread_exit is not None:
    try:
        _register_thread_exit(shutdown)
    except RuntimeError:  # imported while the interpreter is already shutting down
        pass


def _decode_in_child(source_file: str, path: str, frame: int) -> np.ndarray:
    """Runs in the helper process: find the same frame through engine.io and decode it."""
    from engine import io

    for event in io.scan(source_file):
        image = event.image
        if image is not None and str(image.path) == path and image.frame == frame:
            return np.ascontiguousarray(image.modality_values())
        if event.problem is not None and str(event.problem.path) in (path, source_file):
            raise io.ReadError(event.problem.reason)
    raise io.ReadError(f"{Path(path).name} frame {frame + 1} was not found when reading it again.")
