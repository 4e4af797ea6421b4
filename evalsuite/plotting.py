"""Figures without pyplot: drawing a report must not choose or change the backend of the process
that imports evalsuite (a notebook's inline backend stays), nor keep figures in pyplot's registry."""

from __future__ import annotations

from typing import Any


def subplots(nrows: int = 1, ncols: int = 1, **kwargs: Any) -> tuple[Any, Any]:
    """``pyplot.subplots`` on a figure of its own with an Agg canvas (PNG bytes, text extents)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure_keys = ("figsize", "dpi", "layout", "constrained_layout", "tight_layout")
    fig = Figure(**{k: kwargs.pop(k) for k in figure_keys if k in kwargs})
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def colors() -> list[str]:
    """The colour cycle of the current style."""
    import matplotlib

    return list(matplotlib.rcParams["axes.prop_cycle"].by_key()["color"])
