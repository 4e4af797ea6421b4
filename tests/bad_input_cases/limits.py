"""Counts and sizes that would exhaust memory or never end, empty paths, commands that would write
nothing useful (see tests/bad_input_cases/__init__.py for the format)."""

EVAL = ["evaluate", "suite=fake", "policies=[ones]", "max_steps=14", "tracking_uri=none", "progress=false"]


class NoFingerprint:
    """A policy plugin missing part of the protocol (evalsuite/interfaces.py)."""

    def __init__(self, task, suite):
        import numpy as np

        from evalsuite.interfaces import PolicyRequirements

        self.requirements, self._np = PolicyRequirements({"state": (2,)}, 2), np

    def reset(self, seed, slot):
        pass

    def act(self, observations, slots):
        return self._np.ones((len(slots), 2))


def refuses_task(task, suite):
    """A policy factory refusing a task the way plugins do: a ValueError."""
    raise ValueError(f"no checkpoint for task {task.id!r}")


def _register_policy(policy_id: str, entry_point: str):
    def setup(run) -> None:
        from evalsuite import registry
        from evalsuite.specs import PolicySpec

        registry.policies.register(PolicySpec(id=policy_id, entry_point=entry_point))
    return setup


CASES = [
    ("episodes-huge", [*EVAL, "episodes=100000000000"], None,
     "episodes=100000000000 is more than evalsuite takes (100,000)"),
    ("bootstrap-reps-huge", [*EVAL, "episodes=2", "bootstrap_reps=100000000000"], None,
     "bootstrap_reps=100000000000 is more than evalsuite takes (1,000,000)"),
    ("out-empty", [*EVAL, "episodes=2", "out="], None, "out= is empty; give a path"),
    ("demos-expert-never-succeeds", ["demos", "suite=metaworld", "task=drawer-open", "n=1", "expert=random",
                                     "out={tmp}/demos.hdf5"], None,
     "expert='random' succeeded in none of 2 episodes of 'drawer-open'"),
    ("train-cuda-without-cuda", ["train", "policy=mp1", "suite=metaworld", "task=drawer-open", "demos=1", "iters=1",
                                 "device=cuda", "out={tmp}/trained"], None, "device=cuda, but this torch build"),
    ("family-point-out-of-range", ["evaluate", "suite=metaworld-family/drawer-open", 'points=[{"obs_noise": 1e308}]',
                                   "policies=[scripted]", "episodes=1", "worst_case=none", "tracking_uri=none",
                                   "progress=false", "video=none"], None,
     "points: obs_noise=1e+308 is outside the family's range [0, 0.02]"),
    ("policy-without-fingerprint", [*EVAL[:2], "policies=[ones,nofp]", *EVAL[3:], "episodes=2"],
     _register_policy("nofp", "tests.bad_input_cases.limits:NoFingerprint"),
     "policy 'nofp' (NoFingerprint) has no fingerprint: a policy needs requirements, reset, act, fingerprint"),
    ("policy-refuses-task", [*EVAL[:2], "policies=[ones,picky]", *EVAL[3:], "episodes=2"],
     _register_policy("picky", "tests.bad_input_cases.limits:refuses_task"),
     "policy 'picky' cannot be built for task 't1': ValueError: no checkpoint for task 't1'"),
]

DOC_ROWS = [
    ("non-utf8-locale", "`LC_ALL=C PYTHONUTF8=0 evalsuite evaluate ... policies=[ones:group=β]` "
     "(tests/test_received_folder.py)", "no error: labels keep their UTF-8 in every file; the console escapes what "
     "it cannot show (`group=\\u03b2`)"),
    ("report-missing-journal", "`evalsuite report RUN` with episodes.jsonl deleted (tests/test_received_folder.py)",
     "evalsuite: error: TMP/run/episodes.jsonl is missing: no episode to report; results.json and the report are "
     "left as they were (restore the journal, or rerun the evaluation)"),
    ("failed-start-leaves-no-plan", "a policy that refuses to build (tests/test_received_folder.py)",
     "its one-line error; no plan.json or blinding.json written, so the corrected command starts afresh"),
    ("symlinked-output", "any file evalsuite writes planted as a link (tests/test_received_folder.py)",
     "evalsuite: error: TMP/run/report.md is a symbolic link; evalsuite never writes through a link - remove it "
     "and rerun"),
    ("received-pickle", "`evalsuite video RUN` whose blinding.json names a pickle (tests/test_received_folder.py)",
     "evalsuite: error: policy A (robomimic:TMP/model.pth): its file TMP/model.pth is a pickle: loading it runs "
     "code from the file, and this command was not told to; if you trust that file, pass trust=[TMP/model.pth] to "
     "this command"),
]
