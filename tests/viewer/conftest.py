"""Viewer test fixtures: offscreen Qt, a throw-away settings file, a tiny random network.

Every test keeps to the 256x256 sample unless it is about the bundled study itself, so the
suite stays quick on two shared CPU cores.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import shutil  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

from engine.resources import samples_dir  # noqa: E402

LOWRES = "cxr14_00002577_000_lowres_256.dcm"


@pytest.fixture
def lowres_path() -> Path:
    return samples_dir() / LOWRES


@pytest.fixture
def lowres_folder(tmp_path: Path, lowres_path: Path) -> Path:
    folder = tmp_path / "study"
    folder.mkdir()
    shutil.copy(lowres_path, folder / "image.dcm")
    return folder


@pytest.fixture
def store(tmp_path: Path) -> Any:
    from viewer import settings

    return settings.open_store(tmp_path / "settings.ini")


def tiny_network(seed: int = 0) -> Any:
    import torch

    from engine.sr.archs import SRVGGNetCompact

    torch.manual_seed(seed)
    return SRVGGNetCompact(num_feat=4, num_conv=1, upscale=4).eval()


@pytest.fixture
def tiny_net(one_torch_thread: None) -> Any:
    return tiny_network()


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread while a test enhances: with a tiny network every op is so short that
    waking a second thread on two busy cores costs more than the op (tens of ms per tile)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def make_window(qtbot: Any, store: Any) -> Iterator[Callable[..., Any]]:
    """make_window(model=None) -> a shown MainWindow with test settings (closed afterwards)."""
    from viewer.main_window import MainWindow

    windows = []

    def make(model: Any = None, size: tuple[int, int] = (1000, 760)) -> Any:
        window = MainWindow(store, model_override=model)
        window.settings.tile = 64
        window.settings.device = "cpu"
        window.resize(*size)
        qtbot.addWidget(window)
        with qtbot.waitExposed(window):
            window.show()
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()
