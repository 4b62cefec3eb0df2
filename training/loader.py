"""Patch batches as tensors: in the training process, or from DataLoader worker processes.

With `data.workers: 0` batches come straight from the trainer's PatchSampler, whose generator is
saved in checkpoints (exact resume). With workers, each worker samples from its own generator
seeded from (seed, rank, the step the loader started at, worker id): deterministic for a given
sequence of resumes, but not the same patches as an uninterrupted run.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from training.data import PatchSampler

Batch = tuple[torch.Tensor, torch.Tensor]


class PatchStream(IterableDataset):
    """An endless stream of (LR, HR) batches; each worker forks the sampler with its own seed."""

    def __init__(self, sampler: PatchSampler, seed_key: list[int]) -> None:
        super().__init__()
        self.sampler = sampler
        self.seed_key = seed_key

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        sampler = self.sampler.fork([*self.seed_key, worker])
        while True:
            lr, hr = sampler.sample()
            yield torch.from_numpy(lr), torch.from_numpy(hr)


def worker_batches(sampler: PatchSampler, workers: int, seed_key: list[int]) -> Iterator[Batch]:
    """Batches from `workers` processes (images are shared with them, decoded once)."""
    loader = DataLoader(PatchStream(sampler, seed_key), batch_size=None, num_workers=workers,
                        persistent_workers=True, prefetch_factor=4, pin_memory=torch.cuda.is_available())
    return iter(loader)


def seed_key(seed: int, rank: int, step: int) -> list[int]:
    """numpy seeds must be non-negative: fold the configured seed into 32 bits."""
    return [seed % 2**32, rank, step]
