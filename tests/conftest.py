"""Shared fixtures: registries reset around every test; a tiny fake task and policy for the runner."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from evalsuite import registry
from evalsuite.interfaces import EnvInfo, InfrastructureError, PolicyRequirements, StepResult


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist each test process gets its share of the cores for torch and BLAS threads: two
    processes training with every core's threads each spin against each other (a 8 s test took 106 s)."""
    processes = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if processes > 1:
        threads = str(max(1, (os.cpu_count() or 1) // processes))
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.setdefault(var, threads)
        if "torch" in sys.modules:  # imported already: its pool is sized
            sys.modules["torch"].set_num_threads(int(threads))

REPO = Path(__file__).resolve().parents[1]
# The browser tests (report, operator console, review): Debian's Chromium, which CI installs (.ci/run);
# elsewhere, without it, they say so and are skipped. Without the background-networking flags
# Chromium's calls home are refused many at a time on a closed network.
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NO_CHROMIUM = CHROMIUM is None and os.environ.get("CI") != "true"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(os.environ.get("EVALSUITE_TEST_ARTIFACTS", REPO / ".test-artifacts"))
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _no_server_left_behind():
    """Server processes a failed test left running (tests/servers.py) are killed at its end."""
    from tests.servers import kill_leftovers

    yield
    kill_leftovers()


@pytest.fixture(autouse=True)
def _fresh_registries():
    saved = registry.suites.snapshot(), registry.policies.snapshot(), registry.analyses.snapshot()
    yield
    registry.suites.restore(saved[0])
    registry.policies.restore(saved[1])
    registry.analyses.restore(saved[2])


class CountdownEnv:
    """A fake task: success when the running sum of action[0] reaches a target drawn from the seed.

    ``fail_on`` makes ``step`` raise at that step count (a simulator failing on the policy's action);
    ``infra_fail_on`` raises the plugin's InfrastructureError there instead; ``flaky_resets`` makes
    the first that many resets of every initial condition fail (counted across instances, as a
    retry may land in another slot).
    """

    reset_calls: dict = {}

    def __init__(self, task_id: str, max_steps: int = 30, fail_on: int | None = None, infra_fail_on: int | None = None,
                 flaky_resets: int = 0, unstable_above: float | None = None) -> None:
        self.unstable_above = unstable_above  # an action above it blows the state up (NaN), as MuJoCo can
        self.task_id, self.fail_on, self.infra_fail_on, self.flaky_resets = task_id, fail_on, infra_fail_on, flaky_resets
        self.info = EnvInfo(obs_shapes={"state": (2,)}, action_dim=2, max_steps=max_steps)

    def reset(self, ic_seed: int, ic_index: int = 0):
        calls = CountdownEnv.reset_calls
        calls[self.task_id, ic_seed] = calls.get((self.task_id, ic_seed), 0) + 1
        if calls[self.task_id, ic_seed] <= self.flaky_resets:
            raise OSError("simulated flaky file system")
        self.target = float(np.random.default_rng(ic_seed).integers(3, 12))
        self.total, self.t = 0.0, 0
        return {"state": np.array([self.target, 0.0])}, {"target": self.target}

    def step(self, action):
        self.t += 1
        if self.fail_on is not None and self.t == self.fail_on:
            raise RuntimeError("simulated simulator crash")
        if self.infra_fail_on is not None and self.t == self.infra_fail_on:
            raise InfrastructureError("simulated lost connection to the simulator")
        self.total += float(action[0])
        if self.unstable_above is not None and float(action[0]) > self.unstable_above:
            self.total = float("nan")
        return StepResult({"state": np.array([self.target, self.total])}, 1.0, self.total >= self.target,
                          milestones={"halfway": self.total >= self.target / 2},
                          progress=float(np.clip(self.total / self.target, 0.0, 1.0)))

    def close(self):
        pass


class OnesPolicy:
    """Pushes 1 per step (reaches target T in T steps); ``speed`` < 1 makes it slower (more failures)."""

    def __init__(self, task, suite, speed: float = 1.0, chunk: int = 0, nan_after: int = -1, compute_s: float = 0.0) -> None:
        self.speed, self.chunk, self.nan_after, self.compute_s = float(speed), int(chunk), int(nan_after), float(compute_s)
        self.calls = 0
        self.batch_sizes: list[int] = []
        self.requirements = PolicyRequirements({"state": (2,)}, 2, chunked=self.chunk > 0)

    def reset(self, seed, slot):
        pass

    def act(self, observations, slots):
        self.calls += 1
        if self.compute_s:  # an expensive network, e.g. a diffusion policy's denoising steps
            time.sleep(self.compute_s)
        b = len(slots)
        self.batch_sizes.append(b)
        a = np.zeros((b, 2))
        a[:, 0] = self.speed
        if 0 <= self.nan_after < self.calls:
            a[:] = np.nan
        if self.chunk:
            return np.repeat(a[:, None, :], self.chunk, axis=1)
        return a

    def fingerprint(self):
        return f"ones-{self.speed}"


class CoinPolicy(OnesPolicy):
    """Succeeds on an episode with probability ``p``, by a coin drawn from the episode's policy seed
    and the policy's own ``salt``: candidates with other salts are equally good but not identical."""

    def __init__(self, task, suite, p: float = 0.5, salt: int = 0) -> None:
        super().__init__(task, suite)
        self.p, self.salt, self.go = float(p), int(salt), {}

    def reset(self, seed, slot):
        self.go[slot] = np.random.default_rng([seed, self.salt]).random() < self.p

    def act(self, observations, slots):
        return np.array([[1.0 if self.go[s] else 0.0, 0.0] for s in slots])

    def fingerprint(self):
        return f"coin-{self.p}-{self.salt}"


@pytest.fixture
def fake_suite():
    """Register the fake suite/policies and return the suite spec."""
    from evalsuite.specs import PolicySpec, SuiteSpec, TaskSpec

    registry.suites.all()  # load built-ins first, so registering more is additive
    suite = registry.suites.register(SuiteSpec(
        id="fake", entry_point="tests.conftest:CountdownEnv",
        tasks=(TaskSpec("t1", 30), TaskSpec("t2", 30)), default_episodes=6))
    registry.policies.all()
    registry.policies.register(PolicySpec(id="ones", entry_point="tests.conftest:OnesPolicy",
                                          params={"speed": 1.0, "chunk": 0, "nan_after": -1, "compute_s": 0.0}))
    registry.policies.register(PolicySpec(id="coin", entry_point="tests.conftest:CoinPolicy",
                                          params={"p": 0.5, "salt": 0}))
    return suite


if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


class SuicidalPolicy(OnesPolicy):
    """Kills the process it runs in: at its ``after``-th episode there, once per ``marker`` file (a
    worker dying mid-run), or - with ``victim`` - whenever the episode with that policy seed starts
    (an episode that always breaks its worker)."""

    def __init__(self, task, suite, marker: str = "", after: int = 3, victim: int = -1) -> None:
        super().__init__(task, suite)
        self.marker, self.after, self.victim, self.resets = marker, int(after), int(victim), 0

    def reset(self, seed, slot):
        import signal

        self.resets += 1
        if seed == self.victim or (self.marker and self.resets >= self.after and not os.path.exists(self.marker)):
            if self.marker:
                with open(self.marker, "w") as fh:
                    fh.write(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
