"""Interval coverage once on the real thing: the noisy expert's short-run interval holds its
long-run rate (fixed seeds, disjoint initial conditions)."""

import pytest

from evalsuite.harness import EvaluateRequest, evaluate
from evalsuite.plan import PolicyEntry


def _rate(tmp_path, name, seed, episodes):
    req = EvaluateRequest.of(suite="metaworld-smoke", tasks=["coffee-push"], out=tmp_path / name, episodes=episodes,
                          seed=seed, max_steps=200, policies=[PolicyEntry("noisy-scripted", {"noise": 1.0})],
                          batch_size=16, tracking_uri=None, progress=False)
    return evaluate(req, log=lambda *_: None).per_task[0]


@pytest.mark.slow  # 260 episodes
def test_short_run_interval_contains_long_run_rate(tmp_path):
    long_run = _rate(tmp_path, "long", seed=100, episodes=200)
    short = _rate(tmp_path, "short", seed=1, episodes=20)
    assert 0.15 < long_run["rate"] < 0.85  # an intermediate rate, where intervals matter
    assert long_run["ci_high"] - long_run["ci_low"] < 0.15
    assert short["ci_low"] <= long_run["rate"] <= short["ci_high"]
