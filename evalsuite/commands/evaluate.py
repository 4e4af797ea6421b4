"""`evalsuite evaluate`: policies on a suite's tasks, paired and blinded, into a run folder."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence
from typing import Any

from evalsuite.commands.options import (
    MAX_EPISODES,
    Option,
    Values,
    boolean,
    default_out,
    folder,
    integer,
    listing,
    non_negative,
    number,
    one_of,
    parse,
    parse_policy,
    parse_tags,
    tracking_uri,
)
from evalsuite.errors import UsageError
from evalsuite.request import Design, EvaluateRequest, Execution, Tracking, Video, option_key
from evalsuite.results import Results

SUITE = (
    Option("suite", "suite id (see `evalsuite list`)"),
    Option("policies", "[id, id:key=value, ...] (default: the suite's default policies)", parse=listing),
    Option("tasks", "[task, ...], all, or Meta-World's difficulty groups (default: the suite's default tasks)",
           parse=listing),
)
# Besides these, each suite takes the options its plugin declares (SuiteSpec.options: e.g. obs=pointcloud on
# Meta-World, init_states= on robomimic, an MDP family's design and worst-case search); `evalsuite list` shows them.
def planned_effect(key: str, value: str) -> tuple[float, ...]:
    """P_BASELINE:DELTA[:DISCORDANCE], as ``evalsuite plan`` takes them: both success rates inside
    (0, 1); the discordance (share of pairs that disagree) defaults to independent outcomes."""
    try:
        parts = tuple(float(x) for x in value.split(":"))
    except ValueError:
        parts = ()
    if len(parts) not in (2, 3):
        raise UsageError(f"{key}={value!r} is not P_BASELINE:DELTA[:DISCORDANCE] (e.g. 0.7:0.1 or 0.7:0.1:0.3)")
    p_baseline, delta = parts[:2]
    if not (0 < p_baseline < 1 and 0 < p_baseline + delta < 1 and delta != 0):
        raise UsageError(f"{key}={value!r}: need 0 < p_baseline < 1, 0 < p_baseline + delta < 1 and delta != 0")
    if len(parts) == 3 and not abs(delta) <= parts[2] <= 1:
        raise UsageError(f"{key}={value!r}: the discordance must lie in [|delta|, 1]")
    return parts


STOPPING = (
    Option("stopping", "fixed | sequential (stop a task once every pair of policies is decided)", "fixed",
           one_of("fixed", "sequential")),
    Option("alpha", "stopping=sequential: error rate of the decisions, over all pairs and looks", "0.05",
           number(0.0, 1.0)),
    Option("margin", "stopping=sequential: also stop a pair once |difference| < margin (equivalent)",
           parse=number(0.0, 1.0)),
    Option("metric", "stopping=sequential: success | progress (decide on paired progress scores; betting "
           "e-processes)", "success", one_of("success", "progress")),
    Option("planned", "stopping=sequential metric=success: P_BASELINE:DELTA[:DISCORDANCE] the run was planned for "
           "(as given to `evalsuite plan`); bets tuned to it decide sooner at that effect, valid at any",
           parse=planned_effect),
    Option("max_episodes", "stopping=sequential: cap on initial conditions per task", "200", integer(1, MAX_EPISODES)),
    Option("round_size", "stopping=sequential: initial conditions per round", "10", integer(1, MAX_EPISODES)),
)
DESIGN = (
    Option("episodes", "initial conditions per task (default: the suite's)", parse=integer(1, MAX_EPISODES)),
    Option("seed", "root seed", "0", integer(0)),
    Option("out", "run folder (default: reports/<suite>-<hash of the request>)", parse=folder),
    Option("max_steps", "cap on every task's step limit", parse=integer(1)),
    Option("contract", "error | warn: a policy whose stated conventions (gripper sign, image range or orientation, "
           "control mode, ...) differ from the suite's is refused before episode 1, or runs with the mismatch "
           "recorded in plan.json and the report", "error", one_of("error", "warn")),
)


def _parsers() -> dict[str, Any]:
    """The parsers the request's parts name for their fields (evalsuite/request.py)."""
    return {"count": integer(1, 4096), "zero_or_count": integer(0, 4096), "cpus": integer(1, 4096),
            "positive": number(0.0),
            "non_negative": non_negative, "executor": one_of("local", "ray"),
            "video": one_of("none", "sample", "failures", "all"), "tracking_uri": tracking_uri, "tags": parse_tags,
            "text": lambda key, value: value}


def options_of(part: type) -> tuple[Option, ...]:
    """The command-line options a part of the request declares on its fields."""
    parsers = _parsers()
    return tuple(Option(option_key(f), f.metadata["help"], f.metadata["text"], parsers[f.metadata["parse"]])
                 for f in dataclasses.fields(part) if "help" in f.metadata)


def from_values(part: type, values: Values) -> Any:
    """The part from parsed values: the keys it declares that were given or have a default; the
    rest keep the dataclass's defaults."""
    return part(**{f.name: values[option_key(f)] for f in dataclasses.fields(part)
                   if "help" in f.metadata and option_key(f) in values})


PARALLEL = options_of(Execution)  # declared with the request's parts (evalsuite/request.py)


def _statistics() -> tuple[Option, ...]:
    from evalsuite.stats.intervals import INTERVAL_METHODS
    from evalsuite.stats.multiple import CORRECTIONS

    return (
        Option("level", "confidence level (default: 0.95)", parse=number(0.0, 1.0)),
        Option("interval", " | ".join(INTERVAL_METHODS) + " (default: wilson)", parse=one_of(*INTERVAL_METHODS)),
        Option("correction", " | ".join(CORRECTIONS) + " (default: holm)", parse=one_of(*CORRECTIONS)),
        Option("bootstrap_reps", "bootstrap resamples (default: 10000)", parse=integer(100, 1_000_000)),
    )


STATISTICS = _statistics()
ATTEMPTS = Option("max_attempts", "attempts per trial when episodes error (default: 3)", parse=integer(1))
PROGRESS = Option("progress", "true | false (default: whether stderr is a terminal)", parse=boolean)
TRACKING = (*options_of(Tracking), PROGRESS)
VIDEO = options_of(Video)
OPTIONS = (*SUITE, *STOPPING, *DESIGN, *PARALLEL, *STATISTICS, ATTEMPTS, *TRACKING, *VIDEO)


def suite_options(args: Sequence[str], targets: Sequence[str] = ("env", "search")) -> tuple[Option, ...]:
    """The options the plugin of the suite named in ``args`` (``suite=ID``) declares, as options of
    this command: their values reach the plugin as typed, and it validates them."""
    from evalsuite import registry

    suite_id = next((a.partition("=")[2] for a in args if a.startswith("suite=")), "")
    if not suite_id:
        return ()
    spec = registry.suites.get(suite_id)
    return tuple(Option(o.name, f"suite {spec.id}: {o.help}", o.default, _plugin_parser(o.parse))
                 for o in spec.options if o.target in targets)


def _plugin_parser(entry_point: str) -> Callable[[str, str], Any]:
    """A suite option's own parser, imported when a value is read (text as typed without one)."""
    if not entry_point:
        return lambda key, value: value

    def parse_value(key: str, value: str) -> Any:
        from evalsuite.specs import load_entry_point

        return load_entry_point(entry_point)(key, value)
    return parse_value


def parse_request(args: Sequence[str], options: Sequence[Option] = OPTIONS,
                  targets: Sequence[str] = ("env", "search")) -> Values:
    """``args`` against the command's own options and those of the chosen suite; a key that belongs
    to other suites says so."""
    from evalsuite import registry

    accepted = (*options, *suite_options(args, targets))
    names = {o.name for o in accepted}
    for arg in args:
        key = arg.partition("=")[0]
        owners = sorted(s.id for s in registry.suites.all().values() if key in {o.name for o in s.options})
        if key not in names and owners:
            suite_id = next((a.partition("=")[2] for a in args if a.startswith("suite=")), "")
            raise UsageError(f"{key}= is an option of suite{'s' if len(owners) > 1 else ''} {', '.join(owners)}, "
                             f"not of {'suite ' + repr(suite_id) if suite_id else 'this command'}")
    return parse(args, accepted)


def analysis_options(v: Values) -> dict[str, Any]:
    """The statistics keys given (a report re-analysed keeps its saved options for the others)."""
    return {o.name: v[o.name] for o in (*STATISTICS, ATTEMPTS) if o.name in v.given}


def request(v: Values) -> EvaluateRequest:
    """An EvaluateRequest from parsed ``evaluate`` options (shared with ``select`` and ``compose``)."""
    from evalsuite import registry
    from evalsuite.analysis import AnalysisOptions
    from evalsuite.plan import Stopping

    if "suite" not in v:
        raise UsageError("missing suite=...; see `evalsuite list` for the suites")
    suite = registry.suites.get(v["suite"])
    if "policies" in v:
        policies = [parse_policy(p) for p in v["policies"]]
    elif suite.default_policies:
        policies = [parse_policy(p) for p in suite.default_policies]
    else:
        raise UsageError(f"missing policies=[...]; suite {suite.id!r} has no default policies")
    sequential = v.get("stopping") == "sequential"
    sequential_given = [o.name for o in STOPPING[1:] if o.name in v.given]
    if not sequential and sequential_given:
        raise UsageError(f"{sequential_given[0]}= applies to stopping=sequential only")
    episodes = v.get("episodes")
    stopping = Stopping()
    if sequential:
        if "episodes" in v.given:
            raise UsageError("with stopping=sequential give max_episodes=, not episodes=")
        if "planned" in v and v["metric"] != "success":
            raise UsageError("planned= tunes the bets on successes: it applies to metric=success only")
        stopping = Stopping("sequential", alpha=v["alpha"], round_size=v["round_size"], margin=v.get("margin"),
                            metric=v["metric"], planned=v.get("planned"))
        episodes = v["max_episodes"]
    declared = {o.name: o.target for o in suite.options}
    fields = {"suite": v["suite"], "tasks": v.get("tasks"), "policies": [p.label for p in policies],
              "episodes": episodes, "seed": v["seed"], "max_steps": v.get("max_steps"),
              "suite_options": {k: v[k] for k, target in declared.items() if target == "env" and k in v},
              "stopping": stopping.to_dict()}
    search = {k: v[k] for k, target in declared.items() if target == "search" and k in v}
    design = Design(tasks=tuple(v["tasks"]) if "tasks" in v else None, episodes=episodes, seed=v["seed"],
                    max_steps=v.get("max_steps"), suite_options=fields["suite_options"], stopping=stopping,
                    contract=v.get("contract", "error"))
    return EvaluateRequest(
        suite=fields["suite"], policies=policies, out=v["out"] if "out" in v else default_out(fields), design=design,
        execution=from_values(Execution, v), analysis=AnalysisOptions(**analysis_options(v)),
        tracking=from_values(Tracking, v), video=from_values(Video, v),
        search=search if suite.worst_case_search and search else None, progress=v.get("progress", sys.stderr.isatty()))


def summary(results: Results) -> str:
    """The console table at the end of a run: per task and policy, the means over tasks, then the
    paired comparison asked for - each pair's difference over tasks (or on the one task), with its
    interval and, per task, the corrected p-value. Columns as wide as the longest label."""
    tw = max([24, *(len(t) for t in results.tasks), len("mean over tasks")])
    pw = max([28, *(len(p) for p in results.policies)])
    lines = [f"{'task':<{tw}} {'policy':<{pw}} {'rate':>6}  CI ({results.options.interval})"]
    for r in results.per_task:
        rate = "n/a" if r.rate is None else f"{r.rate:.2f}"
        errors = f", {r.policy_errors} policy errors counted as failures" if r.policy_errors else ""
        if r.missing and r.worst_case:
            w = r.worst_case
            errors += (f", {r.missing} missing (infrastructure); counted as failures: {w.rate or 0:.2f} "
                       f"[{w.ci_low:.2f}, {w.ci_high:.2f}]")
        lines.append(f"{r.task:<{tw}} {r.policy:<{pw}} {rate:>6}  [{r.ci_low:.2f}, {r.ci_high:.2f}]  "
                     f"({r.successes}/{r.n}{errors})")
    for a in results.aggregate:
        lines.append(f"{'mean over tasks':<{tw}} {a.policy:<{pw}} {a.mean:>6.2f}  [{a.ci_low:.2f}, {a.ci_high:.2f}]")
    return "\n".join(lines + _paired_lines(results))


def _paired_lines(results: Results) -> list[str]:
    """``A - B: +0.12 [0.03, 0.21] ...`` for each pair of policies (over tasks when there are several)."""
    level = f"{100 * results.options.level:g}%"
    lines = [f"paired {d.policy_a} - {d.policy_b} (mean over tasks): {d.difference:+.2f} "
             f"[{d.ci_low:.2f}, {d.ci_high:.2f}] ({level})" for d in results.mean_differences]
    if not lines:  # one task: the pair itself, with the exact test
        lines = [f"paired {p.policy_a} - {p.policy_b} on {p.task}: {p.difference:+.2f} [{p.ci_low:.2f}, "
                 f"{p.ci_high:.2f}] ({level}), p = {p.p_adjusted:.3g} ({p.correction}), {p.n_pairs} pairs"
                 for p in results.pairwise if p.difference is not None]
    return lines


def run(args: list[str]) -> int:
    """Evaluate policies on a suite: blind, paired, resumable; results, report and MLflow."""
    from evalsuite.harness import evaluate

    results = evaluate(request(parse_request(args)))
    print(summary(results))
    return 0
