"""tests/conftest.py: the test process ends with pytest's own status even when a test leaves
something running that the interpreter's exit would wait for."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

LEAKY = '''
import threading, time

def test_leaves_a_thread_behind():
    threading.Thread(target=time.sleep, args=(600,), name="left-behind").start()  # not daemon

def test_result():
    assert RESULT
'''


def run_suite(tmp_path: Path, result: bool) -> tuple[subprocess.CompletedProcess[str], float]:
    shutil.copy(HERE / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_leaky.py").write_text(LEAKY.replace("RESULT", str(result)))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    return done, time.monotonic() - started


def test_a_thread_left_running_does_not_hold_the_exit(tmp_path: Path) -> None:
    done, took = run_suite(tmp_path, True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "2 passed" in done.stdout
    assert "the tests left running at exit: threads ['left-behind']" in done.stderr
    assert took < 120, f"the exit waited {took:.0f} s"


def test_the_exit_status_is_pytests_own(tmp_path: Path) -> None:
    done, _ = run_suite(tmp_path, False)
    assert done.returncode == 1 and "1 failed, 1 passed" in done.stdout


def test_an_error_after_the_summary_still_fails_the_run(tmp_path: Path) -> None:
    shutil.copy(HERE / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_cleanup.py").write_text(
        "def test_ok(request):\n    request.config.add_cleanup(lambda: 1 / 0)\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert "1 passed" in done.stdout and "ZeroDivisionError" in done.stderr
    assert done.returncode == 1
