"""PyTorch's CPU threads during training: a run on the CPU repeats bit for bit only at the same intra-op thread
count (parallel sums add in another order), so a recipe may fix it (`training.cpu_threads`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


def configured_threads(tcfg: dict[str, Any]) -> int:
    """`training.cpu_threads`: the intra-op threads of a training run; 0 or absent: PyTorch's default (one per core)."""
    n = int(tcfg.get("cpu_threads", 0))
    if n < 0:
        raise ValueError(f"training.cpu_threads must be 0 (PyTorch's default) or a positive count (got {n})")
    return n


@contextmanager
def training_threads(tcfg: dict[str, Any]) -> Iterator[int]:
    """Run the block on the recipe's thread count (yielded); the process's own count comes back after it."""
    n, old = configured_threads(tcfg), torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(old)
