"""Repository-level checks: the wheel's package list, the version, the two-command promise."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

import engine

ROOT = Path(__file__).resolve().parent.parent


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_wheel_lists_every_package_in_the_tree():
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    on_disk = set()
    for top in ("engine", "viewer", "training"):
        for init in (ROOT / top).rglob("__init__.py"):
            on_disk.add(".".join(init.parent.relative_to(ROOT).parts))
    missing = on_disk - listed
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"


def test_version_is_defined_once():
    assert re.fullmatch(r"\d+\.\d+\.\d+", engine.__version__)
    assert _pyproject()["tool"]["setuptools"]["dynamic"]["version"]["attr"] == "engine.__version__"


def test_torch_is_pinned_to_the_local_cpu_wheel_in_the_makefile():
    assert "torch==2.13.0" in (ROOT / "Makefile").read_text()


def test_ci_runs_make_test():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
