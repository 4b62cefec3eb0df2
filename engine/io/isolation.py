"""Run crash-prone native decoders in a child process, so a damaged file cannot end ours.

GDCM is the only decoder installed for JPEG Lossless (process 14, SV1), JPEG-LS and 12-bit JPEG
(engine.io.jpeg12), and the fallback for 8-bit JPEG that Pillow refuses. It is C++ under C: on
some damaged codestreams it calls std::terminate or reads out of bounds, which kills the process
instead of raising. engine.io.safety checks the JPEG marker structure first and caught every
crash found by fuzzing, but a structural check cannot prove the entropy-coded data safe. So these
decodes run in a small pool of helper processes: a crash there costs that one file (one sentence,
`DecoderCrashed`) and the pool is started again for the next.

The helpers are started with "spawn" (forking a process with Qt or torch threads is unsafe), on
first use; the first decode pays about a second for it. `set_enabled(False)` (or the environment
variable CXR_ENHANCE_DECODE_IN_PROCESS=1) decodes in the calling process, for code that is itself
already such a helper. If no helper can be started at all (a sandbox that forbids processes), the
decode runs in-process, as before this module existed.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor
# concurrent.futures.process is imported on first use: importing it registers an interpreter-exit
# hook in threading, which changed the shutdown order of torch.distributed (gloo) workers enough
# to make them abort at exit ("terminate called without an active exception").

ENV_IN_PROCESS = "CXR_ENHANCE_DECODE_IN_PROCESS"
WORKERS = 2
TIMEOUT_S = 300.0  # a decoder that has not answered by then is treated as hung

T = TypeVar("T")

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_enabled = os.environ.get(ENV_IN_PROCESS, "") not in ("1", "true", "yes")
_unavailable = False  # helpers cannot be started here: decode in-process
_exit_hooked = False
_exiting = False  # shutdown() ran: the program is ending, no helper is started again


class DecoderCrashed(RuntimeError):
    """The decoder ended its process (or hung) on this data; the file is probably damaged."""


def enabled() -> bool:
    return _enabled and not _unavailable


def set_enabled(value: bool) -> None:
    """False: decode in the calling process (it is itself an expendable helper)."""
    global _enabled
    _enabled = bool(value)


def run(func: Callable[..., T], *args: Any, timeout: float = TIMEOUT_S) -> T:
    """`func(*args)` in a helper process (in-process when isolation is off or unavailable).

    `func` and its arguments must pickle (a module-level function; pydicom Datasets do).
    Exceptions raised by `func` come back as they are. A helper that dies is replaced and the
    call tried once more (another call's crash may have taken the pool down); dying again raises
    DecoderCrashed, as does a call still running after `timeout` seconds.
    """
    if not enabled():
        return func(*args)
    from concurrent.futures import TimeoutError as FutureTimeout
    from concurrent.futures.process import BrokenProcessPool

    for attempt in (1, 2):
        pool = _get_pool()
        if pool is None:
            if _exiting:  # a decode still running in a thread while the program ends
                raise DecoderCrashed("the decode was stopped because the program is ending")
            return func(*args)
        try:
            future = pool.submit(func, *args)
        except (BrokenProcessPool, RuntimeError):  # broken or shut down meanwhile
            _discard(pool)
            continue
        try:
            return future.result(timeout=timeout)
        except BrokenProcessPool:
            _discard(pool)
            if attempt == 2:
                raise DecoderCrashed("the decoder crashed on this data; the file is probably "
                                     "damaged") from None
        except FutureTimeout:
            _discard(pool, kill=True)
            raise DecoderCrashed(f"the decoder did not finish within {timeout:.0f} s; the file is "
                                 f"probably damaged") from None
    raise DecoderCrashed("the decoder crashed on this data; the file is probably damaged")


def _get_pool() -> ProcessPoolExecutor | None:
    global _pool, _unavailable, _exit_hooked
    with _lock:
        if _pool is None and not _unavailable and not _exiting:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            try:
                context = multiprocessing.get_context("spawn")
                _pool = ProcessPoolExecutor(max_workers=WORKERS, mp_context=context,
                                            initializer=_child_init)
                if not _exit_hooked:
                    _exit_hooked = True
                    _register_thread_exit()
            except (OSError, ValueError, NotImplementedError):
                _unavailable = True
        return _pool


def _child_init() -> None:
    set_enabled(False)  # a helper decodes itself; it never starts helpers of its own


def _discard(pool: ProcessPoolExecutor, *, kill: bool = False) -> None:
    global _pool
    with _lock:
        if _pool is pool:
            _pool = None
    if kill:  # a hung decoder never returns: end its process rather than wait for it
        for process in list(getattr(pool, "_processes", {}).values()):
            try:
                process.kill()
            except (OSError, AttributeError):
                pass
    pool.shutdown(wait=False, cancel_futures=True)


def shutdown() -> None:
    """Stop the helpers, at exit: their processes are killed rather than left to finish the
    decode in hand, which a hung decoder never does. No helper starts after this: a decode
    still asked for (a thread the exit has not stopped) ends with DecoderCrashed."""
    global _pool, _exiting
    with _lock:
        pool, _pool = _pool, None
        _exiting = True
    if pool is not None:
        _discard(pool, kill=True)


atexit.register(shutdown)


def _register_thread_exit() -> None:
    """concurrent.futures joins its helper processes in threading's exit hooks, which run before
    atexit's (last registered, first run): end the helpers before that join, so a decode that
    hangs cannot keep `cxr-enhance` from exiting. Registered when the first pool starts, i.e.
    after concurrent.futures.process registered its own hook."""
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(shutdown)
        except RuntimeError:  # the interpreter is already shutting down
            pass
