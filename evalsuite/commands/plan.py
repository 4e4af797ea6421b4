"""`evalsuite plan`: episodes needed before running them - to detect a difference, or for a gate."""

from __future__ import annotations

from pathlib import Path

from evalsuite.commands.options import Option, Values, integer, number, one_of, parse
from evalsuite.errors import UsageError
from evalsuite.results import RESULTS_FILE
from evalsuite.results import load as load_results


def _options() -> tuple[Option, ...]:
    from evalsuite.stats import power as pw

    return (Option("p_baseline", "success rate of the baseline, in [0, 1] (1: a policy that never fails)",
                   parse=_rate),
            Option("delta", "difference to detect, candidate - baseline (negative: a drop); with margin=, the drop "
                   "the gate must catch (its size: either sign)", parse=number(-1.0, 1.0)),
            Option("alpha", "two-sided error rate", "0.05", number(0.0, 1.0)),
            Option("power", "probability of detecting delta", "0.8", number(0.0, 1.0)),
            Option("design", " | ".join(pw.DESIGNS), "paired", one_of(*pw.DESIGNS)),
            Option("discordance", "paired: share of initial conditions where the two policies differ "
                   "(default: independent outcomes)", parse=number(0.0, 1.0)),
            Option("pilot", "a finished run folder whose paired episodes estimate the discordance"),
            Option("margin", "size a regression gate with this margin instead", parse=number(0.0, 1.0)),
            Option("tasks", "with margin=: tasks the gate decides over", "1", integer(1)))


def _rate(key: str, value: str) -> float:
    """A success rate in the closed interval [0, 1] (the edges are real policies: 100% and 0%)."""
    try:
        rate = float(value)
    except ValueError:
        raise UsageError(f"{key}={value!r} is not a number") from None
    if not 0.0 <= rate <= 1.0:
        raise UsageError(f"{key}={value!r} must be in [0, 1]")
    return rate


OPTIONS = _options()


def run(args: list[str]) -> int:
    """Episodes needed to detect ``delta`` from ``p_baseline`` (paired: pairs; independent: per policy)."""
    from evalsuite.stats import power as pw

    v = parse(args, OPTIONS)
    for key in ("p_baseline", "delta"):
        if key not in v:
            raise UsageError(f"missing {key}=...; usage: evalsuite plan p_baseline=0.7 delta=0.1 [design=paired]")
    p0, delta, alpha, power = v["p_baseline"], v["delta"], v["alpha"], v["power"]
    discordance, source = v.get("discordance"), "given" if "discordance" in v else \
        "assumed independent outcomes per initial condition"
    if "pilot" in v:
        if not (Path(v["pilot"]) / RESULTS_FILE).exists():
            raise UsageError(f"pilot={v['pilot']!r} has no results.json; give a finished run folder")
        pairs = load_results(Path(v["pilot"])).pairwise
        n_pairs = sum(p.n_pairs for p in pairs)
        if n_pairs == 0:
            raise UsageError(f"pilot={v['pilot']!r} has no paired episodes (it needs at least two policies)")
        discordance = pw.discordance_from_pairs(sum(p.a_only + p.b_only for p in pairs), n_pairs)
        source = f"estimated from {n_pairs} pilot pairs"
    if "margin" in v:  # a gate: both sides of its error, sized per task
        return _plan_gate(v, p0, abs(delta), alpha, power, discordance, source)
    try:
        paired = pw.n_paired(p0, delta, alpha=alpha, power=power, discordance=discordance)
        independent = pw.n_independent(p0, delta, alpha=alpha, power=power)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    chosen = paired if v["design"] == "paired" else independent
    unit = "pairs (every policy on each initial condition)" if v["design"] == "paired" else "episodes per policy"
    print(f"{chosen.n} {unit} to detect {p0:g} -> {p0 + delta:g} with alpha={alpha:g} (two-sided), power={power:g}")
    print(f"  paired: {paired.n} pairs at discordance {paired.discordance:.3f} ({source}); "
          f"independent: {independent.n} per policy")
    alpha_key = f" alpha={alpha:g}" if alpha != 0.05 else ""
    psi = f":{paired.discordance:.3f}" if discordance is not None else ""
    print(f"  sequential instead: stopping=sequential planned={p0:g}:{delta:g}{psi}{alpha_key} bets on this effect and "
          "often stops well before the fixed n; keep max_episodes above it (benchmarks/progress_sequential.py)")
    return 0


def _plan_gate(v: Values, p0: float, drop: float, alpha: float, power: float, discordance: float | None,
               source: str) -> int:
    """``evalsuite plan ... margin=``: pairs per task for the gate to catch a drop of ``drop`` and
    to pass an unchanged candidate."""
    if not 0 < drop <= p0:
        raise UsageError(f"delta={drop:g} must be a drop the baseline can have: 0 < |delta| <= p_baseline={p0:g}")
    from evalsuite.stats.margin import n_gate, n_gate_pass

    margin, n_tasks = v["margin"], v["tasks"]
    pass_each = power ** (1 / n_tasks)  # every task must pass (intersection-union test)
    try:
        n_catch = n_gate(p0, drop, margin, alpha=alpha / n_tasks, power=power, discordance=discordance)
        n_pass = n_gate_pass(p0, margin, alpha=alpha, power=pass_each, discordance=discordance)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(f"`evalsuite gate margin={margin:g} alpha={alpha:g}` over {n_tasks} task(s), exact tests "
          f"({'discordance ' + format(discordance, '.3f') + ', ' + source if discordance is not None else source}):")
    print(f"  {n_catch} pairs per task to call a drop {p0:g} -> {p0 - drop:g} REGRESSED with power {power:g} "
          f"(alpha/{n_tasks} per task)")
    print(f"  {n_pass} pairs per task for an equivalent candidate (also {p0:g}) to PASS with probability "
          f"{power:g} overall ({pass_each:.3f} per task, alpha {alpha:g} per task)")
    print(f"  a baseline of {max(n_catch, n_pass)} initial conditions per task does both")
    return 0
