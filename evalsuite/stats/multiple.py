"""Multiple-comparison corrections of p-values (family of all comparisons of a run)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

CORRECTIONS = ("holm", "bh", "none")


def adjust_pvalues(pvalues: ArrayLike, method: str = "holm") -> NDArray[np.float64]:
    """Adjusted p-values, shape (m,) -> (m,): Holm (FWER) or Benjamini-Hochberg (FDR)."""
    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"pvalues must be 1-d, got shape {p.shape}")
    if method not in CORRECTIONS:
        raise ValueError(f"unknown correction {method!r}; accepted: {', '.join(CORRECTIONS)}")
    m = p.size
    if m == 0 or method == "none":
        return p.copy()
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if method == "holm":
        adjusted = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * ranked))
    else:
        adjusted = np.minimum.accumulate(m / np.arange(m, 0, -1) * ranked[::-1])[::-1]
        adjusted = np.minimum(1.0, adjusted)
    out = np.empty(m)
    out[order] = adjusted
    return out
