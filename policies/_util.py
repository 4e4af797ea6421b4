"""Helpers shared by the built-in policies."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np


def config_fingerprint(config: dict[str, Any], *blobs: bytes) -> str:
    """sha256 over a canonical JSON config and any weight bytes; short hex for display."""
    h = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for blob in blobs:
        h.update(blob)
    return h.hexdigest()[:16]


class SlotRngs:
    """One numpy Generator per parallel slot, re-seeded by ``reset(seed, slot)``.

    Per-episode generators make a stochastic policy's actions depend only on the episode's seed,
    not on what else ran in the same batch or before it (needed for exact resume).
    """

    def __init__(self) -> None:
        self._rngs: dict[int, np.random.Generator] = {}

    def reset(self, seed: int, slot: int) -> None:
        self._rngs[slot] = np.random.default_rng(seed)

    def __getitem__(self, slot: int) -> np.random.Generator:
        return self._rngs[slot]


def flush_denormals() -> None:
    """Flush denormal floats to zero in torch's CPU math (tiny late-training values as denormals slow
    it ~15x). numpy's float limits are computed first: computed after, numpy warns that the smallest
    subnormal is zero."""
    import torch

    for dtype in (np.float16, np.float32, np.float64, np.longdouble):
        np.finfo(dtype)
    torch.set_flush_denormal(True)
