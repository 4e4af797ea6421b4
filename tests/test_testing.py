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


class Refuses(OnesPolicy):
    """Refuses its task the way a plugin would: a ValueError from its factory."""

    def __init__(self, task, suite, **kw):
        raise ValueError(f"task {task.id!r} is not one this policy was trained on")


class TwoFaults(SharedNoise):
    """Two faults at once: batch-dependent noise and a fingerprint that is not a string."""

    def fingerprint(self):
        return 42


@pytest.fixture
def more_plugins(plugins):
    for name in ("Refuses", "TwoFaults"):
        registry.policies.register(PolicySpec(id=name.lower(), entry_point=f"tests.test_testing:{name}"))


def test_every_problem_is_collected(more_plugins):
    from evalsuite.testing import policy_problems

    problems = policy_problems("twofaults", "fake", "t1")
    assert len(problems) == 2 and "acted differently alone in slot 7" in problems[0] and "fingerprint()" in problems[1]
    with pytest.raises(ConformanceError, match="slot 7.*; .*fingerprint"):
        check_policy("twofaults", "fake", "t1")


@pytest.mark.parametrize("argv,code,lines", [
    (["check-policy", "policy=ones", "suite=fake", "task=t2"], 0, ["ok: policy 'ones' on fake/t2"]),
    (["check-policy", "policy=coin:p=0.3", "suite=fake"], 0, ["ok: policy 'coin:p=0.3' on fake/t1"]),
    (["check-policy", "policy=nofingerprint", "suite=fake"], 2, ["problem: policy 'nofingerprint' has no 'fingerprint'"]),
    (["check-policy", "policy=wrongshape", "suite=fake"], 2, ["problem: policy 'wrongshape' returned actions of shape (3, 3)"]),
    (["check-policy", "policy=twofaults", "suite=fake"], 2,
     ["problem: policy 'twofaults': the episode seeded 11 acted differently", "problem: policy 'twofaults': "
      "fingerprint() must be a string"]),
    (["check-policy", "policy=refuses", "suite=fake"], 2,
     ["problem: policy 'refuses': building it for task 't1' raised ValueError: task 't1' is not one this policy"]),
    (["check-suite", "suite=fake"], 0, ["ok: fake/t1: builds", "ok: fake/t2: builds"]),
    (["check-suite", "suite=fake", "tasks=[t2]"], 0, ["ok: fake/t2: builds"]),
    (["check-suite", "suite=seedless"], 2, ["problem: seedless/t1: two seeds gave the same initial state"]),
])
def test_the_check_commands_print_a_line_per_problem(argv, code, lines, more_plugins, capsys):
    from evalsuite.cli import main

    assert main(argv) == code
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == len(lines) and all(line.startswith(start) for line, start in zip(out, lines, strict=True)), out


@pytest.mark.parametrize("argv,message", [
    (["check-policy", "suite=fake"], "missing policy="),
    (["check-policy", "policy=ones", "suite=fake", "task=t9"], "unknown task 't9' in suite 'fake'"),
    (["check-policy", "policy=onez", "suite=fake"], "unknown policy 'onez'"),
    (["check-suite"], "missing suite="),
    (["check-suite", "suite=fake", "tasks=[t9]"], "unknown task 't9' in suite 'fake'"),
])
def test_the_check_commands_refuse_bad_input_in_one_line(argv, message, more_plugins, capsys):
    from evalsuite.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


@pytest.mark.parametrize("policy,message", [
    ("nofingerprint", "policy 'nofingerprint' (NoFingerprint) has no fingerprint: a policy needs requirements, reset, "
                      "act, fingerprint"),
    ("refuses", "policy 'refuses' cannot be built for task 't1': ValueError: task 't1' is not one this policy"),
])
def test_evaluate_refuses_a_protocol_fault_in_one_line_before_the_plan(policy, message, more_plugins, tmp_path, capsys):
    from evalsuite.cli import main

    out = tmp_path / "run"
    argv = ["evaluate", "suite=fake", "episodes=2", "max_steps=14", "tracking_uri=none", "progress=false"]
    assert main([*argv, f"policies=[ones,{policy}]", f"out={out}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (out / "plan.json").exists() and not (out / "blinding.json").exists()
    assert main([*argv, "policies=[ones]", f"out={out}"]) == 0  # the corrected command starts afresh
