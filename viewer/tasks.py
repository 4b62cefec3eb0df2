"""Run a short function off the UI thread and get its result back on the UI thread.

For decoding an image, computing its windows or the difference image: seconds of numpy work that
must not freeze the window. Results arrive through a QObject that lives on the UI thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot


class _Relay(QObject):
    done = Signal(object, object)  # result, exception

    def __init__(self, on_done: Callable[[Any], None],
                 on_error: Callable[[BaseException], None] | None) -> None:
        super().__init__()
        self.on_done = on_done
        self.on_error = on_error
        self.done.connect(self._deliver)

    @Slot(object, object)
    def _deliver(self, result: Any, error: Any) -> None:
        _live.discard(self)
        if error is not None:
            if self.on_error is not None:
                self.on_error(error)
        else:
            self.on_done(result)


class _Task(QRunnable):
    def __init__(self, fn: Callable[[], Any], relay: _Relay) -> None:
        super().__init__()
        self.fn = fn
        self.relay = relay

    def run(self) -> None:
        try:
            result = self.fn()
        except BaseException as exc:  # noqa: BLE001 - handed to on_error
            self.relay.done.emit(None, exc)
        else:
            self.relay.done.emit(result, None)


_live: set[_Relay] = set()  # keep relays alive until they deliver


def pool() -> QThreadPool:
    return QThreadPool.globalInstance()


def run_in_background(fn: Callable[[], Any], on_done: Callable[[Any], None],
                      on_error: Callable[[BaseException], None] | None = None) -> None:
    """Call fn() on a pool thread; on_done(result) or on_error(exc) later on the UI thread."""
    relay = _Relay(on_done, on_error)  # created here, so it lives on the UI thread
    _live.add(relay)
    pool().start(_Task(fn, relay))


def wait_for_background(ms: int = 10_000) -> bool:
    return bool(pool().waitForDone(ms))
