"""The plugin's specs: what evalsuite lists, checks and builds. Entry points are "module:attr"
strings imported only when a policy or task is built, so `evalsuite list` stays fast."""

from evalsuite.specs import PolicySpec, SuiteOption, SuiteSpec, TaskSpec

POLICIES = [
    PolicySpec(
        id="template-reach",
        entry_point="evalsuite_plugin_template.policy:ReachPolicy",
        description="proportional controller moving the hand to the goal, plus Gaussian noise (template)",
        params={"gain": 10.0, "noise": 0.1},  # defaults; users override them: template-reach:noise=0
    ),
]

SUITES = [
    SuiteSpec(
        id="template-reach",
        entry_point="evalsuite_plugin_template.suite:ReachEnv",
        tasks=(TaskSpec("reach-near", 100, ("easy",)), TaskSpec("reach-far", 150, ("hard",))),
        description="a point hand reaching a goal, no simulator (template)",
        default_episodes=10,
        default_policies=("template-reach", "random"),
        # `evalsuite evaluate suite=template-reach tolerance=0.02`: checked by parse_tolerance as the
        # command line is read, then passed to ReachEnv(task_id, max_steps, tolerance=0.02).
        options=(SuiteOption("tolerance", "success distance to the goal, in metres (0, 0.5)", default="0.05",
                             parse="evalsuite_plugin_template.suite:parse_tolerance"),),
    ),
]
