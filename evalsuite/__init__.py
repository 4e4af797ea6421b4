"""evalsuite: blind, paired, randomized evaluation of robot-learning policies.

The data path, one module per stage:
    specs/registry -> plan -> runner -> journal -> stats/analysis -> report/tracking -> cli
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from evalsuite.api import Run

__version__ = "0.1.0"


def open_run(path: str | Path) -> Run:
    """A run folder for notebooks: ``.episodes()`` as a DataFrame, ``.results()`` (see evalsuite.api)."""
    from evalsuite.api import open_run as _open_run

    return _open_run(path)
