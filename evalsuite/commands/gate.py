"""`evalsuite gate`: did the candidate regress against the baseline? Exit 0 pass, 1 regressed,
3 inconclusive (see evalsuite/gate.py)."""

from __future__ import annotations

import sys

from evalsuite.commands.evaluate import TRACKING
from evalsuite.commands.options import (
    MAX_EPISODES,
    Option,
    boolean,
    default_out,
    folder,
    integer,
    number,
    one_of,
    parse,
    policy,
)
from evalsuite.errors import UsageError

OPTIONS = (
    Option("baseline", "run folder | mlflow:RUN_ID | mlflow-tag:KEY=VALUE"),
    Option("candidate", "run folder | mlflow:RUN_ID | mlflow-tag:KEY=VALUE"),
    Option("candidate_policy", "a policy to evaluate now on the baseline's initial conditions (id[:key=value])",
           parse=policy),
    Option("suite", "optional check: the baseline's suite"),
    Option("baseline_label", "the baseline policy when its run has several"),
    Option("candidate_label", "the candidate policy when its run has several"),
    Option("margin", "largest drop in success that still passes (0.05 = 5 points)", "0.05", number(0.0, 1.0)),
    Option("alpha", "error rate of a false pass (each task non-inferior at alpha) and of any false REGRESSED "
           "(alpha/tasks)", "0.05", number(0.0, 0.5)),
    Option("inconclusive", "fail (exit 3) | pass (exit 0)", "fail", one_of("fail", "pass")),
    Option("sequential", "true: evaluate the candidate in rounds until decided or budget is spent", "false", boolean),
    Option("budget", "with sequential=true: most candidate episodes per task", parse=integer(1, MAX_EPISODES)),
    Option("round_size", "with sequential=true: initial conditions per round", "10", integer(1, MAX_EPISODES)),
    Option("out", "gate folder (default: reports/gate-<hash of the request>)", parse=folder),
    Option("batch_size", "parallel episodes", "8", integer(1, 4096)),
    Option("env_workers", "environment subprocesses (0: in-process)", parse=integer(0)),
    *(o for o in TRACKING if o.name != "tags"),
)


def run(args: list[str]) -> int:
    """Exit 0 when the candidate passes, 1 when it regressed, 3 when inconclusive (see evalsuite/gate.py)."""
    from evalsuite.gate import GateOptions, GateRequest, run_gate

    v = parse(args, OPTIONS)
    if "baseline" not in v:
        raise UsageError("missing baseline=RUN; usage: evalsuite gate baseline=RUN candidate=RUN [margin=0.05]")
    if ("candidate" in v) == ("candidate_policy" in v):
        raise UsageError("give exactly one of candidate=RUN and candidate_policy=ID")
    for key in ("budget", "round_size"):
        if key in v.given and not v["sequential"]:
            raise UsageError(f"{key}= applies to sequential=true only")
    options = GateOptions(margin=v["margin"], alpha=v["alpha"], inconclusive_passes=v["inconclusive"] == "pass")
    raw = {a.partition("=")[0]: a.partition("=")[2] for a in args}  # the folder name hashes the request as typed
    out = v["out"] if "out" in v else default_out(
        {k: value for k, value in raw.items() if k not in ("progress", "tracking_uri")}, prefix="gate")
    result = run_gate(GateRequest(
        baseline=v["baseline"], out=out, candidate=v.get("candidate"), candidate_policy=v.get("candidate_policy"),
        suite=v.get("suite"), baseline_label=v.get("baseline_label"), candidate_label=v.get("candidate_label"),
        options=options, sequential=v["sequential"], budget=v.get("budget"), round_size=v["round_size"],
        batch_size=v["batch_size"], env_workers=v.get("env_workers"), tracking_uri=v["tracking_uri"],
        experiment=v["experiment"], progress=v.get("progress", sys.stderr.isatty())))
    print((out / "summary.md").read_text(), end="")
    print(f"gate: {result['verdict']} (exit {result['exit_code']}); verdicts in {out / 'results.json'}")
    exit_code: int = result["exit_code"]
    return exit_code
