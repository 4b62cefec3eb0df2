"""What a measurement ran on: software versions, machine, git commit. One function for every report.

`cxr-enhance eval` and `cxr-enhance bench` write this into their JSON so that a number can be
traced to the code and the machine that produced it. Nothing here raises: a piece that cannot be
found (no git, no /proc/cpuinfo, a frozen bundle without package metadata) is left out or None.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent  # the source checkout (or site-packages, or _MEIPASS)

# distribution name -> importable module whose __version__ is the fallback
_PACKAGES = (("torch", "torch"), ("numpy", "numpy"), ("Pillow", "PIL"),
             ("scikit-image", "skimage"))


def machine_info(device: str) -> dict[str, Any]:
    """The machine a measurement ran on: device, torch version and threads, CPUs, platform, CPU
    model and, on CUDA, the GPU's name (the `machine` of `bench` reports)."""
    import torch

    info: dict[str, Any] = {"device": device, "torch": torch.__version__,
                            "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                            "platform": platform.platform(), "cpu": cpu_model()}
    if device.startswith("cuda") and torch.cuda.is_available():
        try:
            info["gpu"] = torch.cuda.get_device_name(torch.device(device))
        except (RuntimeError, AssertionError, ValueError):
            pass
    return info


def provenance(device: str | None = None) -> dict[str, Any]:
    """`machine_info` plus cxr-enhance's and its numeric libraries' versions, Python, and the git
    commit of the source checkout when there is one (absent otherwise)."""
    from engine import __version__

    found: dict[str, Any] = {"cxr_enhance": __version__, "python": platform.python_version(),
                             **package_versions(), **machine_info(device or "cpu")}
    if device is None:
        found.pop("device")
    found["frozen"] = bool(getattr(sys, "frozen", False))
    commit = git_commit()
    if commit is not None:
        found["git_commit"] = commit
        dirty = git_dirty()
        if dirty is not None:
            found["git_dirty"] = dirty
    return found


def package_versions() -> dict[str, str | None]:
    """{"torch": ..., "numpy": ..., "Pillow": ..., "scikit-image": ...} (None when unknown)."""
    from importlib import import_module, metadata

    versions: dict[str, str | None] = {}
    for dist, module in _PACKAGES:
        try:
            versions[dist] = str(import_module(module).__version__)
        except Exception:
            try:
                versions[dist] = metadata.version(dist)
            except Exception:
                versions[dist] = None
    return versions


@lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _git(*args: str) -> str | None:
    if getattr(sys, "frozen", False) or not (ROOT / ".git").exists():
        return None
    try:
        proc = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                              timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """HEAD of the checkout this code runs from, or None (no git, an installed wheel, frozen)."""
    commit = _git("rev-parse", "HEAD")
    return commit or None


def git_dirty() -> bool | None:
    """Whether tracked files differ from HEAD (the commit alone does not reproduce the numbers)."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return None if status is None else bool(status)
