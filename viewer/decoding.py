"""Decode compressed radiographs in a helper process, so the window never freezes while loading.

Why a process: the JPEG 2000 decoders pydicom uses (pylibjpeg-openjpeg and GDCM) hold the GIL
for the whole decode. Measured on the bundled 2000x2128 J2K sample: 0.6-0.8 s during which the
UI thread could not run at all, even though the decode was on a worker thread. A child process
has its own GIL. Uncompressed DICOM and PNG/TIFF (Pillow releases the GIL) decode in-process.

The child uses only engine.io's public API (scan the file, pick the frame, modality_values), so
no file parsing lives here. If the helper process cannot start (a locked-down or frozen
environment), decoding falls back to the calling thread.
"""

from __future__ import annotations

import atexit
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
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

_lock = threading.Lock()
_pools: dict[str, ProcessPoolExecutor] = {}
_disabled = False


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
    try:
        future = pool.submit(_decode_in_child, str(source), str(image.path), int(image.frame))
        values = future.result()
    except BrokenProcessPool:
        # The helper died (a decoder crashed on this file, or it was killed). Start a fresh one
        # next time and decode here: engine.io runs the decoders that can crash (GDCM) in a
        # process of its own (engine.io.isolation), so a damaged file becomes one sentence.
        _discard(lane, pool)
        return image.modality_values()
    except (OSError, RuntimeError):
        _give_up()
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


def _discard(lane: str, pool: ProcessPoolExecutor) -> None:
    with _lock:
        if _pools.get(lane) is pool:
            del _pools[lane]
    pool.shutdown(wait=False, cancel_futures=True)


def _give_up() -> None:
    global _disabled
    _disabled = True
    shutdown()


def shutdown() -> None:
    """Stop the helper processes (closing the window)."""
    with _lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.shutdown(wait=False, cancel_futures=True)


atexit.register(shutdown)


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
