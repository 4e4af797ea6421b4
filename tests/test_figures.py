"""Figures stay readable at any axis range: no two tick labels of an axis overlap (matplotlib's
default log axis labels every minor tick of a short range, e.g. 0.25..4, on top of each other)."""

import copy
import itertools
import json
import math

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from evalsuite.analyses.family import figures  # noqa: E402
from tests.conftest import REPO  # noqa: E402

pytestmark = pytest.mark.unit  # the `nox -s unit` tier: no simulator

FAMILY = json.loads((REPO / "reports" / "family-pick-place" / "results.json").read_text())["family"]


def _overlapping_tick_labels(fig) -> list[tuple[str, str]]:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    clashes = []
    for ax in fig.axes:
        for axis, limits in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            low, high = sorted(limits)
            labels = [t for t in axis.get_ticklabels(which="both")
                      if t.get_visible() and t.get_text() and low <= t.get_position()[axis is ax.yaxis] <= high]
            boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in labels]
            clashes += [(a, b) for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2) if box_a.overlaps(box_b)]
    return clashes


@pytest.mark.parametrize("low,high", [(0.25, 4.0), (0.5, 2.0), (0.9, 1.1), (1e-3, 10.0), (3.0, 300.0)])
def test_family_curves_on_a_log_axis_have_no_overlapping_labels(low, high):
    """The shipped family run's log axis (object mass 0.25..4) mapped onto other ranges."""
    fam = copy.deepcopy(FAMILY)
    axis = fam["axes"][0]

    def moved(x: float) -> float:  # the same place on the new range, in log terms
        return low * (high / low) ** (math.log(x / axis["low"]) / math.log(axis["high"] / axis["low"]))

    for pol in fam["policies"].values():
        for cell in pol["per_mdp"]:
            cell["params"][axis["name"]] = moved(cell["params"][axis["name"]])
        for curve in pol.get("curves", []):
            if curve["axis"] == axis["name"]:
                curve["x"] = [moved(x) for x in curve["x"]]
    fam.pop("worst_case", None)
    axis.update(low=low, high=high, nominal=moved(axis["nominal"]))
    for name, fig in figures(fam, None).items():
        assert _overlapping_tick_labels(fig) == [], name
        labels = [t.get_text() for t in fig.axes[0].get_xticklabels() if t.get_text()]
        assert 2 <= len(labels) <= 5 and not any("^" in s or "times" in s for s in labels), labels
        plt.close(fig)


def test_the_shipped_family_figures_have_no_overlapping_labels():
    for name, fig in figures(FAMILY, None).items():
        assert _overlapping_tick_labels(fig) == [], name
        plt.close(fig)


def test_a_zero_percent_bar_is_marked_not_invisible(fake_suite, tmp_path):
    """A policy that never succeeded on a task gets a mark at 0 in the success figure (a bar of
    height 0 alone draws nothing), and only there."""
    from evalsuite.harness import evaluate
    from evalsuite.plan import PolicyEntry
    from evalsuite.report import success_figure
    from evalsuite.request import EvaluateRequest

    results = evaluate(EvaluateRequest.of("fake", [PolicyEntry("ones", {}), PolicyEntry("ones", {"speed": 0.0})],
                                          tmp_path / "run", episodes=3, max_steps=14, tracking_uri=None,
                                          progress=False), log=lambda *_: None)
    zeros = [r for r in results.per_task if r.rate == 0]
    assert len(zeros) == 2  # speed 0 never reaches its target, on either task
    ax = success_figure(results).axes[0]
    marks = [line for line in ax.get_lines() if line.get_gid() == "zero-bar" and max(line.get_ydata()) < 0.02]
    assert len(marks) == len(zeros)
    assert sum(text.get_text() == "0%" for text in ax.texts) == len(zeros)
