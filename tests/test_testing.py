"""evalsuite.testing holds plugins to the interfaces: it passes conforming plugins and names what
a broken one gets wrong."""

from __future__ import annotations

import numpy as np
import pytest

from evalsuite import registry
from evalsuite.interfaces import PolicyRequirements
from evalsuite.specs import PolicySpec, SuiteSpec, TaskSpec
from evalsuite.testing import ConformanceError, check_policy, check_suite
from tests.conftest import CountdownEnv, OnesPolicy

pytestmark = pytest.mark.unit  # the `nox -s unit` tier: no simulator


class SeedlessEnv(CountdownEnv):
    """Ignores the seed: every initial condition is the same."""

    def reset(self, ic_seed, ic_index=0):
        return super().reset(0, ic_index)


class NoFingerprint:
    def __init__(self, task, suite):
        self.requirements = PolicyRequirements({"state": (2,)}, 2)

    def reset(self, seed, slot):
        pass

    def act(self, observations, slots):
        return np.ones((len(slots), 2))


class WrongShape(OnesPolicy):
    def act(self, observations, slots):
        return np.ones((len(slots), 3))


class SharedNoise(OnesPolicy):
    """One generator for all slots: an episode's actions depend on its batch neighbours."""

    def __init__(self, task, suite, **kw):
        super().__init__(task, suite, **kw)
        self.rng = np.random.default_rng(0)

    def reset(self, seed, slot):
        self.rng = np.random.default_rng(seed)

    def act(self, observations, slots):
        return self.rng.normal(size=(len(slots), 2))


@pytest.fixture
def plugins(fake_suite):
    registry.suites.register(SuiteSpec(id="seedless", entry_point="tests.test_testing:SeedlessEnv",
                                       tasks=(TaskSpec("t1", 30),)))
    for name in ("NoFingerprint", "WrongShape", "SharedNoise"):
        registry.policies.register(PolicySpec(id=name.lower(), entry_point=f"tests.test_testing:{name}"))


def test_conforming_plugins_pass(plugins):
    check_suite("fake")
    check_policy("ones", "fake", "t1")
    check_policy("coin", "fake", "t1", p=0.3)


@pytest.mark.parametrize("policy,message", [("nofingerprint", "has no 'fingerprint'"),
                                            ("wrongshape", "returned actions of shape (3, 3)"),
                                            ("sharednoise", "acted differently alone in slot 7")])
def test_a_broken_policy_is_named(policy, message, plugins):
    with pytest.raises(ConformanceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_policy(policy, "fake", "t1")


def test_a_suite_that_ignores_its_seed_is_named(plugins):
    with pytest.raises(ConformanceError, match="two seeds gave the same initial state"):
        check_suite("seedless")
