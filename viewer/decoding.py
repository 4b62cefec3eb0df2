"""Decode compressed radiographs in a helper process, so the window never freezes while loading.

Why a process: the JPEG 2000 decoders pydicom uses (pylibjpeg-openjpeg and GDCM) hold the GIL
for the whole decode. Measured on the bundled 2000x2128 J2K sample: 0.6-0.8 s during which the
UI thread could not run at all, even though the decode was on a worker thread. A child process
has its own GIL. Uncompressed DICOM and PNG/TIFF (Pillow releases the GIL) decode in-process.

The child uses only engine.io's public API (scan the file, pick the frame, modality_values), so
no file parsing lives here. If the helper process cannot start (a locked-down or frozen
environment), decoding falls back to the calling thread.

A decode that has not answered TIMEOUT_S seconds after it started (engine.io.isolation's limit
for a hung decoder) is given up: its helper is killed, the image gets one sentence
(DecodeTimeout), and the next image starts a fresh helper; an image that was only queued behind
the hung one is sent once more, to that fresh helper. Closing the window kills the helpers
instead of waiting, and only then do waiting decodes end with DecodeStopped.
"""

from __future__ import annotations

import atexit
import multiprocessing
import threading
import time
from concurrent.futures import CancelledError, ProcessPoolExecutor, wait
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
# Set by shutdown() (closing): a decode its kill ends is DecodeStopped, not resubmitted. A helper
# started after that (a decode asked for later, as a test or a second window does) clears it.
_closing = False


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

    A lane's helper decodes one image at a time, so an image can wait behind another one. Its
    time limit counts from when the images ahead of it are done (when its own decode starts),
    and if one of those hangs and its helper is killed, this image is sent once more to a fresh
    helper: it is not lost with the hung one. DecodeStopped only after shutdown() (closing).
    """
    if _disabled or not needs_helper(image):
        return image.modality_values()
    source = getattr(image, "source_file", None) or image.path
    name = Path(str(image.path)).name
    for attempt in (1, 2):
        pool = _pool(lane)
        if pool is None:
            return image.modality_values()
        limit = timeout_s()
        try:
            future = _submit(pool, str(source), str(image.path), int(image.frame))
        except (OSError, RuntimeError):  # BrokenProcessPool is a RuntimeError too
            if _closed(pool):
                raise DecodeStopped(f"Decoding {name} was stopped.") from None
            if _is_stopped(pool):  # another image's hung helper was killed just now
                if attempt == 1:
                    continue  # a fresh helper; decoding here could hang the same way
                raise _bystander(name) from None
            if isinstance(pool, ProcessPoolExecutor) and (
                    getattr(pool, "_broken", False) or getattr(pool, "_shutdown_thread", False)):
                _discard(lane, pool)  # broken or shut down meanwhile: a fresh one next time
            else:
                _give_up()  # no helper can be started here
            return image.modality_values()
        try:
            values = _result(pool, future, limit)
        except FutureTimeout:
            # A decoder hung in the helper (which decodes without isolation). Kill that helper
            # so the lane's next image gets a fresh one, and say so for this image only.
            _discard(lane, pool, kill=True)
            raise DecodeTimeout(f"Decoding {name} took longer than {limit:.0f} s, so it was "
                                "stopped; choose another image, or this one again to retry.") \
                from None
        except (BrokenProcessPool, CancelledError):
            if _closed(pool):
                raise DecodeStopped(f"Decoding {name} was stopped.") from None
            if _is_stopped(pool):
                # Killed because the image ahead of this one hung: this one never ran. Send it
                # once to a fresh helper (not in-process, which could hang the same way).
                if attempt == 1:
                    continue
                raise _bystander(name) from None
            # The helper died (a decoder crashed on this file, or it was killed). Start a fresh
            # one next time and decode here: engine.io runs the decoders that can crash (GDCM)
            # in a process of its own (engine.io.isolation), so a damaged file becomes one
            # sentence.
            _discard(lane, pool)
            return image.modality_values()
        finally:
            _forget(pool, future)
        values.flags.writeable = False
        return values
    raise AssertionError("unreachable")  # the loop returns or raises


def _bystander(name: str) -> DecodeTimeout:
    return DecodeTimeout(f"Decoding {name} was stopped twice because an image ahead of it hung; "
                         "choose it again to retry.")


def _submit(pool: ProcessPoolExecutor, source: str, path: str, frame: int) -> Any:
    """Submit, and note the order: the helper runs a lane's tasks one at a time, in order."""
    with _lock:
        future = pool.submit(_decode_in_child, source, path, frame)
        _queue(pool).append(future)
    return future


def _result(pool: ProcessPoolExecutor, future: Any, limit: float) -> np.ndarray:
    """The future's result within `limit` seconds of its decode starting: first wait for the
    tasks submitted ahead of it (each one's caller ends it within that caller's limit, by a
    result or by killing the helper, which ends this one too). The wait behind them is bounded
    as well, in case they were given longer limits; then this task's own limit starts."""
    with _lock:
        queue = _queue(pool)
        ahead = [f for f in queue[:queue.index(future)] if not f.done()] \
            if future in queue else []
    if ahead:
        _wait_unless_stopped(pool, lambda s: wait(ahead, timeout=s)[1] == set(),
                             limit * (len(ahead) + 1))
    if not _wait_unless_stopped(pool, lambda s: bool(wait([future], timeout=s)[0]), limit):
        raise FutureTimeout()
    return future.result(timeout=0)


def _wait_unless_stopped(pool: ProcessPoolExecutor, done: Any, limit: float) -> bool:
    """`done(seconds)` asked in short slices until it says True (returns True) or `limit`
    passes (False). A pool killed meanwhile (closing, or another image's timeout) raises
    BrokenProcessPool at once: concurrent.futures may never notice by itself, since a helper
    killed while sending its result leaves the pool's reader waiting for the rest of the
    message (the window's close then waited out the full 300 s limit)."""
    deadline = time.monotonic() + limit
    while True:
        if _is_stopped(pool) and not done(0):
            raise BrokenProcessPool("the helper was stopped")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return bool(done(0))
        if done(min(0.25, remaining)):
            return True


def _queue(pool: ProcessPoolExecutor) -> list[Any]:
    queue = getattr(pool, "_cxr_queue", None)
    if queue is None:
        queue = pool._cxr_queue = []  # type: ignore[attr-defined]
    return queue


def _forget(pool: ProcessPoolExecutor, future: Any) -> None:
    with _lock:
        queue = _queue(pool)
        if future in queue:
            queue.remove(future)


def _pool(lane: str) -> ProcessPoolExecutor | None:
    global _closing, _disabled
    with _lock:
        pool = _pools.get(lane)
        if pool is None and not _disabled:
            _closing = False
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


def _closed(pool: ProcessPoolExecutor) -> bool:
    """Whether shutdown() ended the pool, or has run since (the window is closing)."""
    return _closing or bool(getattr(pool, "_cxr_closed", False))


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
    hangs cannot keep the viewer from exiting. Their waiting decodes end with DecodeStopped;
    the next decode starts fresh ones."""
    global _closing
    with _lock:
        _closing = True
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool._cxr_closed = True  # type: ignore[attr-defined]  # see _closed
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
    """Runs in the helper process: read the same file (or ZIP member) again through engine.io
    and decode the frame. Only that file is read: a ZIP member is found in the archive's
    central directory, so the thumbnails of a ZIP of N images cost N reads, not N squared."""
    from engine import io
    from engine.io.sources import Source, zip_sources

    on_disk, wanted = Path(source_file), Path(path)
    if wanted == on_disk:
        source: Source | None = Source(wanted, wanted)
    else:  # a ZIP member, shown as "archive.zip/member/name"
        members, _problems = zip_sources(on_disk)
        source = next((member for member in members if member.path == wanted), None)
    if source is not None:
        for image in io.read_source(source):
            if image.frame == frame:
                return np.ascontiguousarray(image.modality_values())
    raise io.ReadError(f"{wanted.name} frame {frame + 1} was not found when reading it again.")
