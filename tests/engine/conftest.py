"""Tiny random networks shared by the engine.sr tests (8 features, 1-2 blocks: milliseconds).

torch is imported inside the helpers so that the numpy-only engine.io / engine.display tests
collected beside these do not pay for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import torch

    from engine.sr.archs import RRDBNet, SRVGGNetCompact


def perturb(model: torch.nn.Module, seed: int = 0, std: float = 0.05) -> torch.nn.Module:
    """Give every parameter (biases and PReLU slopes too) random non-zero values.

    The architectures initialise biases to zero and scale dense-block weights by 0.1, which would
    let a wrong bias fold or a swapped block go unnoticed.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=gen) * std)
    return model.eval()


def tiny_rrdb(
    scale: int = 4, in_ch: int = 1, out_ch: int = 1, *, blocks: int = 1, feat: int = 8,
    grow: int = 4, residual: str | None = None, seed: int = 0,
) -> RRDBNet:
    import torch

    from engine.sr.archs import RRDBNet

    torch.manual_seed(seed)
    model = RRDBNet(in_ch, out_ch, num_feat=feat, num_block=blocks, num_grow_ch=grow,
                    scale=scale, upsample_residual=residual)
    return perturb(model, seed)


def tiny_compact(
    in_ch: int = 1, out_ch: int = 1, *, convs: int = 1, feat: int = 8, scale: int = 4,
    act: str = "prelu", residual: str | None = "nearest", seed: int = 0,
) -> SRVGGNetCompact:
    import torch

    from engine.sr.archs import SRVGGNetCompact

    torch.manual_seed(seed)
    model = SRVGGNetCompact(in_ch, out_ch, num_feat=feat, num_conv=convs, upscale=scale,
                            act_type=act, upsample_residual=residual)
    return perturb(model, seed)


def run(model: torch.nn.Module, x: Any) -> torch.Tensor:
    """The untiled fp32 reference output of a model for a (N, C, H, W) tensor or 2-D array."""
    import torch

    t = torch.as_tensor(x, dtype=torch.float32)
    if t.ndim == 2:
        t = t[None, None]
    with torch.inference_mode():
        return model(t).float()


@pytest.fixture
def make_rrdb() -> Callable[..., RRDBNet]:
    return tiny_rrdb


@pytest.fixture
def make_compact() -> Callable[..., SRVGGNetCompact]:
    return tiny_compact


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    """An empty, private model folder: the registry sees nothing else (no bundled models)."""
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("CXR_ENHANCE_MODELS_DIR", str(folder))
    return folder


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(request):
    """Tiny networks run faster on one thread than two (and the CI machine is shared)."""
    if not request.module.__name__.rsplit(".", 1)[-1].startswith("test_sr_"):
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
