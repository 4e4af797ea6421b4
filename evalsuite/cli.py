"""Command line: ``evalsuite COMMAND key=value ...`` (the override syntax of Hydra).

    evalsuite evaluate suite=metaworld-smoke policies=[scripted,noisy-scripted] episodes=20 seed=0 out=runs/demo
    evalsuite report RUN_DIR [interval=jeffreys level=0.9 correction=bh]
    evalsuite sync RUN_DIR tracking_uri=http://127.0.0.1:5000
    evalsuite list
    evalsuite plan p_baseline=0.7 delta=0.1 [alpha=0.05 power=0.8 design=paired|independent discordance=0.2 pilot=RUN_DIR]
    evalsuite plan p_baseline=0.8 delta=0.15 margin=0.05 [tasks=3]   (episodes for the regression gate)
    evalsuite gate baseline=RUN (candidate=RUN | candidate_policy=ID) [margin=0.05 alpha=0.05 sequential=true budget=N]
    evalsuite select suite=metaworld-smoke policies=[mlp-bc:ckpt/a,mlp-bc:ckpt/b] episodes=50 [fresh_seed=N]
    evalsuite compose suite=metaworld tasks=[drawer-open] members=[dp3,dp3@path/to/other] episodes=30 fresh_episodes=50
    evalsuite evaluate suite=metaworld-family/pick-place policies=[scripted,dp3] [vary=[obs_noise,action_noise]]
    evalsuite train policy=mp1 suite=metaworld task=hammer demos=10 seed=0 out=checkpoints/mp1-hammer [iters=3000]
    evalsuite demos suite=robomimic task=lift n=200 out=data/lift.hdf5 [seed=0 expert=scripted]

A policy is ``id``, ``id:ARG`` (its positional parameter, e.g. a checkpoint path) or
``id:key=value[:key=value]``. A user mistake prints one line naming the bad value and what is
accepted, and exits with code 2. ``gate`` exits 0 (pass), 1 (regressed) or 3 (inconclusive).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from evalsuite.errors import UsageError, choices

EVALUATE_KEYS = {
    "suite": "suite id (see `evalsuite list`)",
    "policies": "[id, id:key=value, ...]",
    "tasks": "[task, ...] (default: the suite's default tasks)",
    "init_states": "robomimic HDF5 dataset whose stored initial states the episodes start from",
    "obs": "observation mode of the suite: metaworld state | pointcloud; robomimic low_dim | image",
    "sampler": "MDP families: sobol | lhs | grid (grids include the range ends)",
    "mdps": "MDP families: MDPs drawn from the family besides the nominal one (grid: about this many)",
    "vary": "MDP families: [axis, ...] that vary (default: all); the others stay nominal",
    "design_seed": "MDP families: seed of the Sobol / Latin-hypercube design",
    "points": "MDP families: a JSON list of {axis: value} MDPs to run instead of a sampled design",
    "worst_case": "MDP families: cem (default: CEM search + same-budget grid per policy) | none",
    "generations": "worst-case search: CEM generations", "population": "worst-case search: candidates a generation",
    "episodes_per_point": "worst-case search: episodes per candidate",
    "fresh_episodes": "worst-case search: episodes re-running each winner on fresh initial conditions",
    "stopping": "fixed | sequential (stop a task once every pair of policies is decided)",
    "alpha": "error rate of the sequential decisions, over all pairs and looks",
    "margin": "with stopping=sequential: also stop a pair once |difference| < margin (equivalent)",
    "max_episodes": "cap on initial conditions per task with stopping=sequential",
    "round_size": "initial conditions per round with stopping=sequential",
    "episodes": "initial conditions per task",
    "seed": "root seed",
    "out": "run folder (default: reports/<suite>-<hash of the request>)",
    "max_steps": "cap on every task's step limit",
    "batch_size": "parallel episodes",
    "env_workers": "environment subprocesses stepped in lock-step (0: in-process)",
    "workers": "whole-episode workers: processes here, or Ray actors with executor=ray (0: lock-step)",
    "executor": "local | ray",
    "cpus": "cores evalsuite may use: inference threads x processes stay within (default: all)",
    "ray_address": "executor=ray: auto | HOST:PORT of a running cluster (default: start Ray on this machine)",
    "worker_cpus": "executor=ray: CPUs per actor", "worker_gpus": "executor=ray: GPUs per actor",
    "inference_actors": "executor=ray: policy servers that batch the requests of all actors (0: policies in the actors)",
    "inference_cpus": "executor=ray: CPUs per policy server", "inference_gpus": "executor=ray: GPUs per policy server",
    "timeout": "seconds of policy inference per episode before it counts as a policy error",
    "level": "confidence level",
    "interval": "wilson | clopper-pearson | jeffreys",
    "correction": "holm | bh | none",
    "bootstrap_reps": "bootstrap resamples",
    "max_attempts": "attempts per trial when episodes error",
    "tracking_uri": "default (sqlite in the working directory) | none | sqlite:///PATH | http://HOST:PORT",
    "experiment": "MLflow experiment name",
    "tags": "[key=value,...] MLflow tags of the run (a gate finds it by baseline=mlflow-tag:key=value)",
    "progress": "true | false",
}
REPORT_KEYS = ("level", "interval", "correction", "bootstrap_reps")


def parse_overrides(args: list[str], accepted: dict[str, str] | tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise UsageError(f"argument {arg!r} is not key=value; accepted keys: {choices(accepted)}")
        if key not in accepted:
            raise UsageError(f"unknown key {key!r}; accepted: {choices(accepted)}")
        if key in out:
            raise UsageError(f"key {key!r} given twice")
        out[key] = value
    return out


def parse_list(key: str, value: str) -> list[str]:
    value = value.strip()
    if value.startswith("["):
        if not value.endswith("]"):
            raise UsageError(f"{key}={value!r}: a list must look like [a,b,c]")
        value = value[1:-1]
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise UsageError(f"{key}={value!r}: the list is empty")
    return items


def parse_int(key: str, value: str, minimum: int | None = None) -> int:
    try:
        number = int(value)
    except ValueError:
        raise UsageError(f"{key}={value!r} is not an integer") from None
    if minimum is not None and number < minimum:
        raise UsageError(f"{key}={number} must be >= {minimum}")
    return number


def parse_float(key: str, value: str, low: float | None = None, high: float | None = None) -> float:
    try:
        number = float(value)
    except ValueError:
        raise UsageError(f"{key}={value!r} is not a number") from None
    if (low is not None and not number > low) or (high is not None and not number < high):
        raise UsageError(f"{key}={value!r} must be in ({low}, {high})")
    return number


def parse_bool(key: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise UsageError(f"{key}={value!r} is not a boolean; accepted: true, false")


def parse_tags(value: str) -> dict[str, str]:
    tags = {}
    for item in parse_list("tags", value):
        name, sep, val = item.partition("=")
        if not sep or not name:
            raise UsageError(f"tags: {item!r} is not key=value; e.g. tags=[role=baseline,branch=main]")
        tags[name] = val
    return tags


def _coerce(policy_id: str, name: str, value: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            return parse_bool(f"{policy_id}:{name}", value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except ValueError:
        raise UsageError(f"policy {policy_id!r}: {name}={value!r} is not a {type(default).__name__}") from None
    return value


def parse_policy(text: str):
    """``id[:ARG][:key=value...]`` -> PolicyEntry, checked against the registry."""
    from evalsuite import registry
    from evalsuite.harness import resolve_policy
    from evalsuite.plan import PolicyEntry

    policy_id, *parts = text.split(":")
    spec = registry.policies.get(policy_id)
    params: dict[str, Any] = {}
    for part in parts:
        name, sep, value = part.partition("=")
        if not sep:
            if spec.positional is None:
                raise UsageError(f"policy {policy_id!r} takes no positional argument (got {part!r}); "
                                 f"use key=value with keys: {choices(spec.params) or '(none)'}")
            name, value = spec.positional, part
        params[name] = _coerce(policy_id, name, value, spec.params.get(name))
    entry = PolicyEntry(policy_id, params)
    resolve_policy(entry)
    return entry


def default_out(fields: dict[str, Any], prefix: str | None = None) -> Path:
    """Deterministic: the same request resumes in the same folder, another gets a new one."""
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return Path("reports") / f"{prefix or fields['suite']}-{digest}"


def parse_analysis_options(kv: dict[str, str]) -> dict[str, Any]:
    """The statistics keys shared by `evaluate` and `report`, validated; only those given."""
    from evalsuite.stats.intervals import INTERVAL_METHODS
    from evalsuite.stats.multiple import CORRECTIONS

    out: dict[str, Any] = {}
    if "level" in kv:
        out["level"] = parse_float("level", kv["level"], 0.0, 1.0)
    for key, accepted in (("interval", INTERVAL_METHODS), ("correction", CORRECTIONS)):
        if key in kv:
            if kv[key] not in accepted:
                raise UsageError(f"{key}={kv[key]!r}; accepted: {choices(accepted)}")
            out[key] = kv[key]
    if "bootstrap_reps" in kv:
        out["bootstrap_reps"] = parse_int("bootstrap_reps", kv["bootstrap_reps"], 100)
    if "max_attempts" in kv:
        out["max_attempts"] = parse_int("max_attempts", kv["max_attempts"], 1)
    return out


def parallel_options(kv: dict[str, str]) -> dict[str, Any]:
    """Executor keys of ``evaluate``, validated; only those given."""
    from evalsuite.harness import EXECUTORS

    out: dict[str, Any] = {}
    executor = kv.get("executor", "local")
    if executor not in EXECUTORS:
        raise UsageError(f"executor={executor!r}; accepted: {choices(EXECUTORS)}")
    out["executor"] = executor
    ray_keys = [k for k in ("ray_address", "worker_cpus", "worker_gpus", "inference_actors", "inference_cpus",
                            "inference_gpus") if k in kv]
    if ray_keys and executor != "ray":
        raise UsageError(f"{ray_keys[0]}= applies to executor=ray only")
    if "workers" in kv:
        out["workers"] = parse_int("workers", kv["workers"], 0)
        if out["workers"] and "env_workers" in kv and int(kv["env_workers"]):
            raise UsageError("give workers= (whole episodes per process) or env_workers= (lock-step), not both")
    if "cpus" in kv:
        out["cpus"] = parse_int("cpus", kv["cpus"], 1)
    if "ray_address" in kv:
        out["ray_address"] = kv["ray_address"]
    for key in ("worker_cpus", "inference_cpus"):
        if key in kv:
            out[key] = parse_float(key, kv[key], 0.0)
    if "inference_actors" in kv:
        out["inference_actors"] = parse_int("inference_actors", kv["inference_actors"], 0)
    for key in ("worker_gpus", "inference_gpus"):
        if key in kv:
            gpus = float(kv[key]) if kv[key].replace(".", "", 1).isdigit() else -1.0
            if gpus < 0:
                raise UsageError(f"{key}={kv[key]!r} must be a number >= 0")
            out[key] = gpus
    return out


def evaluate_request(kv: dict[str, str]):
    """An EvaluateRequest from validated ``evaluate`` keys (shared with ``select``)."""
    from evalsuite.analysis import AnalysisOptions
    from evalsuite.harness import EvaluateRequest

    if "suite" not in kv:
        raise UsageError("missing suite=...; see `evalsuite list` for the suites")
    from evalsuite import registry

    suite = registry.suites.get(kv["suite"])
    if "policies" in kv:
        policies = [parse_policy(p) for p in parse_list("policies", kv["policies"])]
    elif suite.default_policies:
        policies = [parse_policy(p) for p in suite.default_policies]
    else:
        raise UsageError(f"missing policies=[...]; suite {suite.id!r} has no default policies")
    options = AnalysisOptions(**parse_analysis_options(kv))
    tracking = kv.get("tracking_uri", "default")
    if tracking != "none":
        from evalsuite.tracking import resolve_uri

        resolve_uri(tracking)
    stopping_rule = kv.get("stopping", "fixed")
    if stopping_rule not in ("fixed", "sequential"):
        raise UsageError(f"stopping={stopping_rule!r}; accepted: fixed, sequential")
    sequential_keys = [k for k in ("alpha", "max_episodes", "round_size", "margin") if k in kv]
    if stopping_rule == "fixed" and sequential_keys:
        raise UsageError(f"{sequential_keys[0]}= applies to stopping=sequential only")
    if stopping_rule == "sequential":
        if "episodes" in kv:
            raise UsageError("with stopping=sequential give max_episodes=, not episodes=")
        stopping = {"rule": "sequential", "alpha": parse_float("alpha", kv.get("alpha", "0.05"), 0.0, 1.0),
                    "round_size": parse_int("round_size", kv.get("round_size", "10"), 1)}
        if "margin" in kv:
            stopping["margin"] = parse_float("margin", kv["margin"], 0.0, 1.0)
        kv["episodes"] = kv.get("max_episodes", "200")
    else:
        stopping = {"rule": "fixed"}
    request_fields = {
        "suite": kv["suite"],
        "tasks": parse_list("tasks", kv["tasks"]) if "tasks" in kv else None,
        "policies": [p.label for p in policies],
        "episodes": parse_int("episodes", kv["episodes"], 1) if "episodes" in kv else None,
        "seed": parse_int("seed", kv.get("seed", "0"), 0),
        "max_steps": parse_int("max_steps", kv["max_steps"], 1) if "max_steps" in kv else None,
        "suite_options": {k: kv[k] for k in ("init_states", "obs", *FAMILY_OPTIONS) if k in kv},
        "stopping": stopping,
    }
    out = Path(kv["out"]) if "out" in kv else default_out(request_fields)
    request = EvaluateRequest(
        suite=request_fields["suite"], policies=policies, out=out, tasks=request_fields["tasks"],
        episodes=request_fields["episodes"], seed=request_fields["seed"], max_steps=request_fields["max_steps"],
        suite_options=request_fields["suite_options"], stopping=stopping,
        batch_size=parse_int("batch_size", kv.get("batch_size", "8"), 1),
        env_workers=parse_int("env_workers", kv["env_workers"], 0) if "env_workers" in kv else None,
        episode_timeout_s=parse_float("timeout", kv.get("timeout", "600"), 0.0),
        **parallel_options(kv),
        options=options, tracking_uri=None if tracking == "none" else tracking,
        experiment=kv.get("experiment", "evalsuite"), tags=parse_tags(kv["tags"]) if "tags" in kv else {},
        progress=parse_bool("progress", kv.get("progress", "true" if sys.stderr.isatty() else "false")),
        worst_case=worst_case_request(kv, suite),
    )
    return request


FAMILY_OPTIONS = ("sampler", "mdps", "vary", "design_seed", "points")
SEARCH_KEYS = {"generations": 4, "population": 8, "episodes_per_point": 4, "fresh_episodes": 40}


def worst_case_request(kv: dict[str, str], suite) -> dict[str, int] | None:
    """The worst-case search settings of an evaluation: on for MDP families unless worst_case=none."""
    mode = kv.get("worst_case", "cem")
    if mode not in ("cem", "none"):
        raise UsageError(f"worst_case={mode!r}; accepted: cem, none")
    is_family = bool(suite.kwargs.get("family"))
    given = [k for k in ("worst_case", "points", *SEARCH_KEYS) if k in kv]
    if not is_family and given:
        raise UsageError(f"{given[0]}= applies to MDP family suites only (e.g. suite=metaworld-family/pick-place)")
    if not is_family or mode == "none":
        return None
    return {k: parse_int(k, kv.get(k, str(v)), 1) for k, v in SEARCH_KEYS.items()}


def cmd_evaluate(args: list[str]) -> int:
    from evalsuite.harness import evaluate

    results = evaluate(evaluate_request(parse_overrides(args, EVALUATE_KEYS)))
    print(_summary(results))
    return 0


SELECT_KEYS = {**{k: v for k, v in EVALUATE_KEYS.items()
                  if k not in ("stopping", "alpha", "max_episodes", "round_size", "margin", "worst_case", *SEARCH_KEYS)},
               "policies": "[candidate, candidate, ...] (e.g. checkpoints: [mlp-bc:ckpt/10,mlp-bc:ckpt/20])",
               "seed": "root seed of the selection initial conditions",
               "fresh_seed": "root seed of the confirmation run (default: derived from seed)"}


def cmd_select(args: list[str]) -> int:
    """Choose among candidates on one set of initial conditions, report the choice on fresh ones."""
    from evalsuite.select import run_select

    kv = parse_overrides(args, SELECT_KEYS)
    fresh = parse_int("fresh_seed", kv.pop("fresh_seed"), 0) if "fresh_seed" in kv else None
    request = evaluate_request(kv)
    request.worst_case = None  # selection compares candidates; no worst-case search per candidate
    if "out" not in kv:
        request.out = request.out.with_name("select-" + request.out.name)
    run_select(request, fresh)
    print((request.out / "select.md").read_text(), end="")
    print(f"select: {request.out / 'select.json'}")
    return 0


def _summary(results: dict[str, Any]) -> str:
    lines = [f"{'task':<24} {'policy':<28} {'rate':>6}  CI ({results['options']['interval']})"]
    for r in results["per_task"]:
        rate = "n/a" if r["rate"] is None else f"{r['rate']:.2f}"
        errors = f", {r['policy_errors']} policy errors counted as failures" if r["policy_errors"] else ""
        if r["missing"]:
            w = r["worst_case"]
            errors += (f", {r['missing']} missing (infrastructure); counted as failures: {w['rate']:.2f} "
                       f"[{w['ci_low']:.2f}, {w['ci_high']:.2f}]")
        lines.append(f"{r['task']:<24} {r['policy']:<28} {rate:>6}  [{r['ci_low']:.2f}, {r['ci_high']:.2f}]  "
                     f"({r['successes']}/{r['n']}{errors})")
    for a in results["aggregate"]:
        lines.append(f"{'mean over tasks':<24} {a['policy']:<28} {a['mean']:>6.2f}  [{a['ci_low']:.2f}, {a['ci_high']:.2f}]")
    return "\n".join(lines)


def _run_dir(args: list[str], command: str) -> tuple[Path, list[str]]:
    if not args or "=" in args[0]:
        raise UsageError(f"usage: evalsuite {command} RUN_DIR [key=value ...]")
    run_dir = Path(args[0])
    if not (run_dir / "plan.json").exists():
        raise UsageError(f"{run_dir} is not a run folder (no plan.json)")
    return run_dir, args[1:]


def cmd_report(args: list[str]) -> int:
    """One run folder: results and report again. Several: one paired comparison of their policies."""
    from evalsuite.harness import rebuild_report

    folders = [a for a in args if "=" not in a]
    if len(folders) > 1:
        from evalsuite.combine import combine_runs

        rest = [a for a in args if "=" in a]
        kv = parse_overrides(rest, (*REPORT_KEYS, "out"))
        if "out" not in kv:
            raise UsageError("several run folders: name the combined report's folder with out=DIR")
        for folder in folders:
            if not (Path(folder) / "plan.json").exists():
                raise UsageError(f"{folder} is not a run folder (no plan.json)")
        out = Path(kv.pop("out"))
        combine_runs([Path(f) for f in folders], out)
        rebuild_report(out, parse_analysis_options(kv))
        return 0
    run_dir, rest = _run_dir(args, "report")
    rebuild_report(run_dir, parse_analysis_options(parse_overrides(rest, REPORT_KEYS)))
    return 0


def cmd_sync(args: list[str]) -> int:
    from evalsuite import tracking

    run_dir, rest = _run_dir(args, "sync")
    kv = parse_overrides(rest, ("tracking_uri", "experiment"))
    if not (run_dir / "results.json").exists():
        raise UsageError(f"{run_dir} has no results.json yet; run `evalsuite report {run_dir}` first")
    uri = kv.get("tracking_uri", "default")
    return 0 if tracking.log_or_explain(run_dir, uri, kv.get("experiment", "evalsuite")) else 1


def cmd_demos(args: list[str]) -> int:
    """Successful scripted-expert episodes, written as robomimic HDF5 (robosuite) or DP3 fields (Meta-World)."""
    from evalsuite import demos, registry

    kv = parse_overrides(args, ("suite", "task", "n", "out", "seed", "expert", "obs"))
    for key in ("suite", "task", "n", "out"):
        if key not in kv:
            raise UsageError(f"missing {key}=...; usage: evalsuite demos suite=robomimic task=lift n=200 out=data/lift.hdf5")
    suite = registry.suites.get(kv["suite"])
    suite.task(kv["task"])
    expert = kv.get("expert", "scripted")
    registry.policies.get(expert)
    n = parse_int("n", kv["n"], 1)
    out = Path(kv["out"])
    if out.suffix not in (".hdf5", ".h5"):
        raise UsageError(f"out={kv['out']!r}: demos are written as HDF5; use a .hdf5 file name")
    result = demos.collect(suite.id, kv["task"], n, seed=parse_int("seed", kv.get("seed", "0"), 0), expert=expert,
                           suite_options={"obs": kv["obs"]} if "obs" in kv else None)
    if len(result.episodes) < n:
        print(f"warning: only {len(result.episodes)} of {result.attempted} expert episodes succeeded", file=sys.stderr)
    robomimic_layout = suite.simulator == "robosuite"
    (demos.write_robomimic_hdf5 if robomimic_layout else demos.write_dp3_hdf5)(result, out)
    print(f"{out}: {len(result.episodes)} successful demos of {result.attempted} attempts "
          f"({'robomimic' if robomimic_layout else 'DP3-field'} layout)")
    return 0


def cmd_plan(args: list[str]) -> int:
    """Episodes needed to detect ``delta`` from ``p_baseline`` (paired: pairs; independent: per policy)."""
    import json

    from evalsuite.stats import power as pw

    kv = parse_overrides(args, ("p_baseline", "delta", "alpha", "power", "design", "discordance", "pilot", "margin",
                                "tasks"))
    for key in ("p_baseline", "delta"):
        if key not in kv:
            raise UsageError(f"missing {key}=...; usage: evalsuite plan p_baseline=0.7 delta=0.1 [design=paired]")
    design = kv.get("design", "paired")
    if design not in pw.DESIGNS:
        raise UsageError(f"design={design!r}; accepted: {choices(pw.DESIGNS)}")
    p0 = parse_float("p_baseline", kv["p_baseline"], 0.0, 1.0)
    delta = parse_float("delta", kv["delta"], -1.0, 1.0)
    alpha = parse_float("alpha", kv.get("alpha", "0.05"), 0.0, 1.0)
    power = parse_float("power", kv.get("power", "0.8"), 0.0, 1.0)
    discordance, source = None, "assumed independent outcomes per initial condition"
    if "discordance" in kv:
        discordance, source = parse_float("discordance", kv["discordance"], 0.0, 1.0), "given"
    if "pilot" in kv:
        results_path = Path(kv["pilot"]) / "results.json"
        if not results_path.exists():
            raise UsageError(f"pilot={kv['pilot']!r} has no results.json; give a finished run folder")
        pairs = json.loads(results_path.read_text())["pairwise"]
        n_pairs = sum(p["n_pairs"] for p in pairs)
        if n_pairs == 0:
            raise UsageError(f"pilot={kv['pilot']!r} has no paired episodes (it needs at least two policies)")
        discordance = pw.discordance_from_pairs(sum(p["a_only"] + p["b_only"] for p in pairs), n_pairs)
        source = f"estimated from {n_pairs} pilot pairs"
    try:
        paired = pw.n_paired(p0, delta, alpha=alpha, power=power, discordance=discordance)
        independent = pw.n_independent(p0, delta, alpha=alpha, power=power)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if "margin" in kv:  # a gate: both sides of its error, sized per task
        from evalsuite.stats.margin import n_gate, n_gate_pass

        margin = parse_float("margin", kv["margin"], 0.0, 1.0)
        n_tasks = parse_int("tasks", kv.get("tasks", "1"), 1)
        pass_each = power ** (1 / n_tasks)  # every task must pass (intersection-union test)
        try:
            n_catch = n_gate(p0, abs(delta), margin, alpha=alpha / n_tasks, power=power, discordance=discordance)
            n_pass = n_gate_pass(p0, margin, alpha=alpha, power=pass_each, discordance=discordance)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        print(f"`evalsuite gate margin={margin:g} alpha={alpha:g}` over {n_tasks} task(s), exact tests "
              f"({'discordance ' + format(discordance, '.3f') + ', ' + source if discordance is not None else source}):")
        print(f"  {n_catch} pairs per task to call a drop {p0:g} -> {p0 - abs(delta):g} REGRESSED with power {power:g} "
              f"(alpha/{n_tasks} per task)")
        print(f"  {n_pass} pairs per task for an equivalent candidate (also {p0:g}) to PASS with probability "
              f"{power:g} overall ({pass_each:.3f} per task, alpha {alpha:g} per task)")
        print(f"  a baseline of {max(n_catch, n_pass)} initial conditions per task does both")
        return 0
    chosen = paired if design == "paired" else independent
    unit = "pairs (every policy on each initial condition)" if design == "paired" else "episodes per policy"
    print(f"{chosen.n} {unit} to detect {p0:g} -> {p0 + delta:g} with alpha={alpha:g} (two-sided), power={power:g}")
    print(f"  paired: {paired.n} pairs at discordance {paired.discordance:.3f} ({source}); "
          f"independent: {independent.n} per policy")
    return 0


GATE_KEYS = {
    "baseline": "run folder | mlflow:RUN_ID | mlflow-tag:KEY=VALUE",
    "candidate": "run folder | mlflow:RUN_ID | mlflow-tag:KEY=VALUE",
    "candidate_policy": "a policy to evaluate now on the baseline's initial conditions (id[:key=value])",
    "suite": "optional check: the baseline's suite",
    "baseline_label": "the baseline policy when its run has several",
    "candidate_label": "the candidate policy when its run has several",
    "margin": "largest drop in success that still passes (0.05 = 5 points)",
    "alpha": "error rate of a false pass (each task non-inferior at alpha) and of any false REGRESSED (alpha/tasks)",
    "inconclusive": "fail (exit 3) | pass (exit 0)",
    "sequential": "true: evaluate the candidate in rounds until decided or budget is spent",
    "budget": "with sequential=true: most candidate episodes per task",
    "round_size": "with sequential=true: initial conditions per round",
    "out": "gate folder (default: reports/gate-<hash of the request>)",
    "batch_size": "parallel episodes",
    "env_workers": "environment subprocesses (0: in-process)",
    "tracking_uri": "default | none | sqlite:///PATH | http://HOST:PORT",
    "experiment": "MLflow experiment name (also where mlflow-tag: looks)",
    "progress": "true | false",
}


def cmd_gate(args: list[str]) -> int:
    """Exit 0 when the candidate passes, 1 when it regressed, 3 when inconclusive (see evalsuite/gate.py)."""
    from evalsuite.gate import GateOptions, GateRequest, run_gate

    kv = parse_overrides(args, GATE_KEYS)
    if "baseline" not in kv:
        raise UsageError("missing baseline=RUN; usage: evalsuite gate baseline=RUN candidate=RUN [margin=0.05]")
    if ("candidate" in kv) == ("candidate_policy" in kv):
        raise UsageError("give exactly one of candidate=RUN and candidate_policy=ID")
    inconclusive = kv.get("inconclusive", "fail")
    if inconclusive not in ("fail", "pass"):
        raise UsageError(f"inconclusive={inconclusive!r}; accepted: fail, pass")
    sequential = parse_bool("sequential", kv.get("sequential", "false"))
    for key in ("budget", "round_size"):
        if key in kv and not sequential:
            raise UsageError(f"{key}= applies to sequential=true only")
    tracking = kv.get("tracking_uri", "default")
    if tracking != "none":
        from evalsuite.tracking import resolve_uri

        resolve_uri(tracking)
    options = GateOptions(margin=parse_float("margin", kv.get("margin", "0.05"), 0.0, 1.0),
                          alpha=parse_float("alpha", kv.get("alpha", "0.05"), 0.0, 0.5),
                          inconclusive_passes=inconclusive == "pass")
    out = Path(kv["out"]) if "out" in kv else default_out(
        {k: v for k, v in kv.items() if k not in ("progress", "tracking_uri")}, prefix="gate")
    result = run_gate(GateRequest(
        baseline=kv["baseline"], out=out, candidate=kv.get("candidate"),
        candidate_policy=parse_policy(kv["candidate_policy"]) if "candidate_policy" in kv else None,
        suite=kv.get("suite"), baseline_label=kv.get("baseline_label"), candidate_label=kv.get("candidate_label"),
        options=options, sequential=sequential,
        budget=parse_int("budget", kv["budget"], 1) if "budget" in kv else None,
        round_size=parse_int("round_size", kv.get("round_size", "10"), 1),
        batch_size=parse_int("batch_size", kv.get("batch_size", "8"), 1),
        env_workers=parse_int("env_workers", kv["env_workers"], 0) if "env_workers" in kv else None,
        tracking_uri=None if tracking == "none" else tracking, experiment=kv.get("experiment", "evalsuite"),
        progress=parse_bool("progress", kv.get("progress", "true" if sys.stderr.isatty() else "false"))))
    print((out / "summary.md").read_text(), end="")
    print(f"gate: {result['verdict']} (exit {result['exit_code']}); verdicts in {out / 'results.json'}")
    return result["exit_code"]


COMPOSE_KEYS = {**{k: v for k, v in SELECT_KEYS.items() if k != "policies"},
                "members": "[family[@checkpoint], family[@checkpoint]] (two generative policies)",
                "weights": "[0.1,0.2,...] weights of the first member to try (default 0.1..0.9)",
                "fresh_episodes": "episodes per task of the confirmation on fresh initial conditions",
                "steps": "shared sampling steps", "schedule": "auto | ddim | uniform", "mix": "velocity | native"}


def cmd_compose(args: list[str]) -> int:
    """GPC weight search: choose w on some initial conditions, confirm against both members on fresh ones."""
    from evalsuite.compose import run_compose

    kv = parse_overrides(args, COMPOSE_KEYS)
    if "members" not in kv:
        raise UsageError("missing members=[...]; usage: evalsuite compose suite=metaworld tasks=[pick-place] "
                         "members=[dp3,mp1] episodes=30 fresh_episodes=50")
    members = parse_list("members", kv.pop("members").replace("+", ","))
    weights = [parse_float("weights", w, 0.0, 1.0) for w in parse_list("weights", kv.pop("weights", "[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9]"))]
    fresh_episodes = parse_int("fresh_episodes", kv.pop("fresh_episodes", "50"), 1)
    fresh = parse_int("fresh_seed", kv.pop("fresh_seed"), 0) if "fresh_seed" in kv else None
    gpc_params = {}
    if "steps" in kv:
        gpc_params["steps"] = parse_int("steps", kv.pop("steps"), 1)
    for key, accepted in (("schedule", ("auto", "ddim", "uniform")), ("mix", ("velocity", "native"))):
        if key in kv:
            gpc_params[key] = _choice(key, kv.pop(key), accepted)
    kv["policies"] = "[" + ",".join(m.replace("@", ":checkpoint=", 1) for m in members) + "]"
    request = evaluate_request(kv)
    request.worst_case = None
    if "out" not in kv:
        request.out = request.out.with_name("compose-" + request.out.name)
    run_compose(request, members, weights, fresh_episodes=fresh_episodes, fresh_seed=fresh,
                gpc_params=gpc_params)
    print((request.out / "compose.md").read_text(), end="")
    return 0


def cmd_export(args: list[str]) -> int:
    """The episodes of a run folder as a table: `evalsuite export RUN format=csv|parquet [out=FILE]`."""
    from evalsuite.api import export

    run_dir, rest = _run_dir(args, "export")
    kv = parse_overrides(rest, ("format", "out"))
    print(f"episodes: {export(run_dir, kv.get('format', 'csv'), kv.get('out'))}")
    return 0


def _choice(key: str, value: str, accepted: tuple[str, ...]) -> str:
    if value not in accepted:
        raise UsageError(f"{key}={value!r}; accepted: {choices(accepted)}")
    return value


def cmd_list(args: list[str]) -> int:
    from evalsuite import registry

    if args:
        raise UsageError(f"`evalsuite list` takes no arguments, got {args[0]!r}")
    print("suites:")
    for spec in registry.suites.all().values():
        print(f"  {spec.id:<18} {len(spec.tasks):>3} tasks  {spec.description}")
        print("      tasks: " + ", ".join(f"{t.id}" + (f" ({','.join(t.tags)})" if t.tags else "") for t in spec.tasks))
    print("policies:")
    for spec in registry.policies.all().values():
        params = ", ".join(f"{k}={v}" for k, v in spec.params.items())
        extra = f" [{spec.positional}]" if spec.positional else ""
        print(f"  {spec.id:<18}{extra} {spec.description}" + (f"  (params: {params})" if params else ""))
    return 0


COMMANDS = {"evaluate": cmd_evaluate, "report": cmd_report, "sync": cmd_sync, "list": cmd_list, "demos": cmd_demos,
            "plan": cmd_plan, "gate": cmd_gate, "select": cmd_select, "compose": cmd_compose, "export": cmd_export}


def command_help(command: str, extra: dict[str, Any]) -> str:
    """`evalsuite CMD --help`: what the command does and every key it takes, from the same tables
    the parser checks against."""
    keys = {"evaluate": EVALUATE_KEYS, "select": SELECT_KEYS, "gate": GATE_KEYS, "compose": COMPOSE_KEYS,
            "report": {k: EVALUATE_KEYS[k] for k in REPORT_KEYS} | {"out": "with several run folders: the combined "
                                                                       "report's folder"},
            "export": {"format": "csv | parquet", "out": "file to write (default: RUN/episodes.FORMAT)"}}.get(command)
    if command in extra:  # a plugin's command: its function's docstring, and its module's KEYS table if any
        try:
            function = extra[command].load()
            keys = getattr(importlib.import_module(function.__module__), "KEYS", None)
        except Exception:  # the command itself will say why it cannot load
            function, keys = None, None
    else:
        function = COMMANDS[command]
    doc = (function.__doc__ or "").strip().splitlines()[0] if function is not None and function.__doc__ else ""
    lines = [f"evalsuite {command}" + (f": {doc}" if doc else "")]
    if keys:
        width = max(len(k) for k in keys) + 2
        lines += ["", "keys (key=value):"] + [f"  {k:<{width}}{v}" for k, v in keys.items()]
    return "\n".join(lines)


def plugin_commands() -> dict[str, Any]:
    """Commands that plugins add through the ``evalsuite.commands`` entry-point group (the built-in
    policies add ``train``), loaded only when named."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group="evalsuite.commands") if ep.name not in COMMANDS}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0 if argv else 2
    command, args = argv[0], argv[1:]
    extra = plugin_commands()
    if command not in COMMANDS and command not in extra:
        print(f"evalsuite: error: unknown command {command!r}; accepted: {choices([*COMMANDS, *extra])}",
              file=sys.stderr)
        return 2
    if any(a in ("-h", "--help") for a in args):
        print(command_help(command, extra))
        return 0
    try:
        if command in extra:
            try:
                run = extra[command].load()
            except Exception as exc:  # a broken plugin names itself in one line
                raise UsageError(f"command {command!r} ({extra[command].value}) failed to load: "
                                 f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}") from exc
            return run(args)
        return COMMANDS[command](args)
    except UsageError as exc:
        print(f"evalsuite: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an unwritable or full output folder, a file that cannot be read
        where = f": {exc.filename}" if exc.filename else ""
        print(f"evalsuite: error: {exc.strerror or exc}{where}; episodes already journaled are kept - fix this "
              "and rerun the same command to resume", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("evalsuite: interrupted; finished episodes are in the journal - rerun the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
