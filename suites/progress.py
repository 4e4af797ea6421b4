"""Task progress shared by the built-in suites: milestones in order, success the last stage."""

from __future__ import annotations


def stage_progress(held: dict[str, bool], order: tuple[str, ...]) -> float:
    """Progress now: the furthest milestone holding, as a share of the stages (success = 1)."""
    furthest = max((i + 1 for i, name in enumerate(order) if held.get(name)), default=0)
    return furthest / (len(order) + 1)
