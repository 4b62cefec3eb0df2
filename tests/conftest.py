"""Session-wide: the test process ends when the tests have, whatever they left running.

CI once printed "681 passed" and then sat until its 90-minute limit: the interpreter did not get
through its own exit after the tests. What it waits on there (concurrent.futures joining helper
processes, the Qt thread pool, non-daemon threads) is the tests' leftovers, not a result. So at
the very start of the interpreter's exit this stops the helper processes the tests started, says
on stderr what was still running (so a leak can be found and fixed), and ends the process with
pytest's own exit status, without the teardown that hung. Anything else that holds the end of
the session up for EXIT_LIMIT_S prints every thread's stack and fails, instead of waiting out CI.

The app's own exit is tested where it matters: closing a window with a hung decode
(tests/viewer/test_app_review.py) and the frozen app's self-test, which starts and quits.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
from typing import Any

EXIT_LIMIT_S = 300
_status: dict[str, int] = {}


def _pytest_is_the_program() -> bool:
    """Only when this process is pytest itself: pytest.main() run from an IDE or a script must
    not have its host ended at exit, nor its exit status replaced."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return getattr(spec, "name", "") in ("pytest", "pytest.__main__") or \
        os.path.basename(sys.argv[0]) in ("pytest", "py.test")


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    if not _pytest_is_the_program():
        return
    _status["code"] = int(exitstatus)
    # Whatever still runs after the tests (other plugins' end-of-session hooks, the exit below)
    # gets EXIT_LIMIT_S: past that, every thread's stack goes to stderr and the process ends (1).
    faulthandler.dump_traceback_later(EXIT_LIMIT_S, exit=True)


def pytest_unconfigure(config: Any) -> None:
    if "code" not in _status or getattr(config, "workerinput", None) is not None:
        return
    register = getattr(threading, "_register_atexit", None)  # runs before threading's joins
    if register is None:
        return
    try:
        register(_end_now)
    except RuntimeError:  # already shutting down
        pass


def _own_pools() -> list[Any]:
    """The decode helper pools the app keeps for reuse (alive by design, not leftovers)."""
    pools: list[Any] = []
    decoding = sys.modules.get("viewer.decoding")
    if decoding is not None:
        pools.extend(getattr(decoding, "_pools", {}).values())
    isolation = sys.modules.get("engine.io.isolation")
    if isolation is not None and getattr(isolation, "_pool", None) is not None:
        pools.append(isolation._pool)
    return pools


def _leftovers() -> list[str]:
    left: list[str] = []
    kept = {id(p) for pool in _own_pools() for p in (getattr(pool, "_processes", None) or {}).values()}
    threads = [t.name for t in threading.enumerate()
               if t is not threading.main_thread() and t.is_alive() and not t.daemon
               and type(t).__name__ != "_ExecutorManagerThread"]  # a pool's own, joined at exit
    if threads:
        left.append(f"threads {threads}")
    try:
        import multiprocessing

        children = [c for c in multiprocessing.active_children() if id(c) not in kept]
    except Exception:  # noqa: BLE001 - a report, never a reason to fail
        children = []
    if children:
        left.append(f"{len(children)} helper process(es)")
    qtcore = sys.modules.get("PySide6.QtCore")
    if qtcore is not None:
        try:
            active = qtcore.QThreadPool.globalInstance().activeThreadCount()
        except Exception:  # noqa: BLE001
            active = 0
        if active:
            left.append(f"{active} Qt pool task(s)")
    return left


def _end_now() -> None:
    left = _leftovers()
    for name in ("viewer.decoding", "engine.io.isolation"):
        module = sys.modules.get(name)
        if module is not None:
            try:
                module.shutdown()  # both kill their helpers rather than wait for them
            except Exception:  # noqa: BLE001 - ending anyway
                pass
    try:
        import multiprocessing

        for child in multiprocessing.active_children():
            child.kill()
    except Exception:  # noqa: BLE001
        pass
    if left:
        print(f"note: the tests left running at exit: {'; '.join(left)} (stopped)",
              file=sys.stderr)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    code = _status.get("code", 0)
    if getattr(sys, "last_value", None) is not None:  # an error after the summary (a plugin's
        code = code or 1  # unconfigure, a cleanup): printed, and the run must not pass
    os._exit(code)
