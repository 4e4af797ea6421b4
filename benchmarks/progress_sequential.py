"""Episodes to a decision on the same paired episodes: fixed-n binary vs sequential binary vs
sequential progress (betting e-processes), at the planned effect 0.80 vs 0.70 success.

    OMP_NUM_THREADS=1 python benchmarks/progress_sequential.py [--sims 10000] [--cap 400]

Simulation (the assumptions every number below rests on):
- Each initial condition i has a latent difficulty pair (z_A, z_B), standard normal with
  correlation rho (default 0.5, as in benchmarks/sequential.py): policy X succeeds when
  z_X < Phi^-1(p_X), p_A = 0.80, p_B = 0.70 under H1 and p_A = p_B = 0.70 under H0.
- Progress is 1 on a success. On a failure it is the Beta(k m_X, k (1 - m_X)) quantile at
  1 - u_X, u_X = (Phi(z_X) - p_X) / (1 - p_X) in (0, 1): the closer an initial condition was to
  success for that policy the further it got (so progress is paired and correlated like success).
  A better policy also fails "closer": m_A = 0.60 vs m_B = 0.50 under H1 (k = 4), m_A = m_B = 0.50
  under H0. The size of that second effect is an assumption: with m_A = m_B (progress carries no
  information beyond success) the progress test loses to the binary ones, shown last.
- All designs see the same simulated pairs, in the same order; alpha = 0.05 two-sided.
- Fixed-n binary: the exact McNemar test on the first n pairs, n = Connor's n for power 0.80 at
  the true discordance (``evalsuite.stats.power.n_paired``), i.e. the plan.
- Sequential designs look after every pair, up to ``--cap`` pairs; an undecided run costs the cap.
  "Tuned" bets know the planned effect: for binary the planned p_B, delta and discordance (as
  ``evalsuite plan`` has them), for progress the planned mean and second moment of the progress
  difference, computed here from an independent pilot simulation of the same model.
- Two comparisons per sequential design: (a) open-ended up to the cap: mean pairs used against the
  fixed-n design with the power the sequential design reached (Connor's n, capped at power 0.99);
  (b) truncated at the power of the planned fixed-n design (the exact test reaches a little under
  the nominal 0.80): the cap T is the smallest with that power on the first half of the
  simulations, and the mean pairs used, min(stop, T), on the second half is compared with the
  planned fixed n directly. (b) is the stricter comparison: same power, same alpha, same n planned.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from evalsuite.stats import betting, sequential
from evalsuite.stats.power import n_paired


@dataclass(frozen=True)
class Scenario:
    p_a: float
    p_b: float
    m_a: float  # mean progress of a failure
    m_b: float
    rho: float = 0.5
    k: float = 4.0


def simulate(rng: np.random.Generator, s: Scenario, sims: int, n: int) -> dict[str, np.ndarray]:
    """Success (bool) and progress in [0, 1] for both policies, (sims, n) each."""
    z = rng.standard_normal((2, sims, n))
    za = z[0]
    zb = s.rho * z[0] + np.sqrt(1 - s.rho**2) * z[1]
    out: dict[str, np.ndarray] = {}
    for name, zx, p, m in (("a", za, s.p_a, s.m_a), ("b", zb, s.p_b, s.m_b)):
        u = stats.norm.cdf(zx)
        success = u < p
        depth = np.clip((u - p) / (1 - p), 0.0, 1.0)  # 0: failed by a hair, 1: hopeless
        progress = np.ones_like(u)
        fail = ~success
        progress[fail] = stats.beta.ppf(1 - depth[fail], s.k * m, s.k * (1 - m))
        out[f"success_{name}"] = success
        out[f"progress_{name}"] = progress
    return out


def mcnemar_exact_rejects(a: np.ndarray, b: np.ndarray, n: int, alpha: float) -> np.ndarray:
    wins_a = np.sum(a[:, :n] & ~b[:, :n], axis=1)
    wins_b = np.sum(~a[:, :n] & b[:, :n], axis=1)
    m = wins_a + wins_b
    p = np.where(m > 0, np.minimum(1.0, 2 * stats.binom.cdf(np.minimum(wins_a, wins_b), np.maximum(m, 1), 0.5)), 1.0)
    return p < alpha


def designs(data: dict[str, np.ndarray], plan: dict[str, Any], alpha: float) -> dict[str, np.ndarray]:
    """Stopping pair (or -1) of every sequential design on the same pairs."""
    a, b = data["success_a"], data["success_b"]
    d_prog = data["progress_a"] - data["progress_b"]
    return {
        "sequential binary, mixture (today)": sequential.first_rejection(a, b, alpha=alpha),
        "sequential binary, plain plug-in bet": betting.discordant_first_rejection(a, b, alpha=alpha),
        "sequential binary, tuned bet": betting.discordant_first_rejection(a, b, alpha=alpha,
                                                                          effect=plan["binary"]),
        "sequential binary, tuned constant bet": betting.discordant_first_rejection(
            a, b, alpha=alpha, effect=plan["binary"], prior_weight=float("inf")),
        "sequential progress, plain plug-in bet": betting.first_rejection(d_prog, alpha=alpha),
        "sequential progress, plain ONS bet": betting.first_rejection(d_prog, alpha=alpha, strategy="ons"),
        "sequential progress, tuned bet": betting.first_rejection(d_prog, alpha=alpha, effect=plan["progress"]),
        "sequential progress, tuned constant bet": betting.first_rejection(
            d_prog, alpha=alpha, effect=plan["progress"], prior_weight=float("inf")),
    }


def make_plan(s: Scenario, alpha: float, rng: np.random.Generator) -> dict[str, Any]:
    pilot = simulate(rng, s, 50, 4000)  # an independent pilot of the planned model
    psi = float(np.mean(pilot["success_a"] != pilot["success_b"]))
    d = pilot["progress_a"] - pilot["progress_b"]
    return {
        "psi": psi,
        "n_fixed": n_paired(s.p_b, s.p_a - s.p_b, alpha=alpha, power=0.8, discordance=psi).n,
        "binary": betting.PlannedEffect.binary(s.p_b, s.p_a - s.p_b, psi),
        "progress": betting.PlannedEffect.from_pilot(d),
    }


def report_h1(stops: dict[str, np.ndarray], fixed_power: float, psi: float, plan: dict[str, Any], s: Scenario,
              cap: int, alpha: float) -> None:
    n_fixed = plan["n_fixed"]
    print(f"  {'design':40s} {'power':>6s} {'mean':>6s} {'median':>6s} {'x fixed':>8s} | "
          f"{'T':>6s} {'power':>6s} {'mean':>6s} {'x plan n':>8s}")
    print(f"  {'fixed-n binary (exact McNemar, plan)':40s} {fixed_power:6.3f} {n_fixed:6d} {n_fixed:6d} "
          f"{1.0:8.2f} | {n_fixed:6d} {fixed_power:6.3f} {n_fixed:6d} {1.0:8.2f}")
    for name, st in stops.items():
        used = np.where(st > 0, st, cap)
        power = float(np.mean(st > 0))
        same_power = n_paired(s.p_b, s.p_a - s.p_b, alpha=alpha, power=min(power, 0.99), discordance=psi).n
        half = len(st) // 2
        first, second = st[:half], st[half:]
        t_cap = _truncation(first, fixed_power)
        if t_cap is None:
            trunc = f"{'-':>6s} {'-':>6s} {'-':>6s} {'-':>8s}"
        else:
            used2 = np.where((second > 0) & (second <= t_cap), second, t_cap)
            p2 = float(np.mean((second > 0) & (second <= t_cap)))
            trunc = f"{t_cap:6d} {p2:6.3f} {used2.mean():6.0f} {used2.mean() / n_fixed:8.2f}"
        print(f"  {name:40s} {power:6.3f} {used.mean():6.0f} {np.median(used):6.0f} "
              f"{used.mean() / same_power:8.2f} | {trunc}")


def _truncation(stops: np.ndarray, power: float) -> int | None:
    hits = np.sort(stops[stops > 0])
    k = int(np.ceil(power * len(stops)))
    return int(hits[k - 1]) if k <= len(hits) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sims", type=int, default=10_000)
    parser.add_argument("--cap", type=int, default=400)
    parser.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args()
    start = time.perf_counter()
    rng = np.random.default_rng(2026)
    h1 = Scenario(0.80, 0.70, 0.60, 0.50)
    plan = make_plan(h1, args.alpha, np.random.default_rng(1))
    print(__doc__)
    print(f"plan: discordance {plan['psi']:.3f}, fixed n (power 0.80) {plan['n_fixed']}; planned progress "
          f"difference mean {plan['progress'].mean:.3f}, E[d^2] {plan['progress'].second_moment:.3f} "
          f"(binary: 0.100, {plan['psi']:.3f})\n")
    scenarios = (
        ("H1 as planned: 0.80 vs 0.70 success, failures reach 0.60 vs 0.50", h1),
        ("H1 at half the planned effect: 0.75 vs 0.70, failures 0.55 vs 0.50 (the plan is wrong)",
         Scenario(0.75, 0.70, 0.55, 0.50)),
        ("H1, success effect only: 0.80 vs 0.70, failures 0.50 vs 0.50 (progress adds only noise)",
         Scenario(0.80, 0.70, 0.50, 0.50)),
    )
    for title, s in scenarios:
        data = simulate(rng, s, args.sims, args.cap)
        fixed = mcnemar_exact_rejects(data["success_a"], data["success_b"], plan["n_fixed"], args.alpha)
        print(f"{title} ({args.sims} simulations, cap {args.cap}):")
        psi = float(np.mean(data["success_a"] != data["success_b"]))
        print("  left: open-ended to the cap; x fixed = mean / fixed n of the same power (Connor's n at the "
              f"true delta and discordance {psi:.3f})")
        print("  right: truncated at T for the power of the fixed-n design; x plan n = mean / planned fixed n")
        report_h1(designs(data, plan, args.alpha), float(np.mean(fixed)), psi, plan, s, args.cap, args.alpha)
        print()
    print(f"H0, type I error (two-sided alpha {args.alpha}) with looks after every pair up to {args.cap}:")
    nulls = (("equal policies: 0.70, failures 0.50", Scenario(0.70, 0.70, 0.50, 0.50)),
             ("equal policies: 0.90, failures 0.30, rho 0.8", Scenario(0.90, 0.90, 0.30, 0.30, rho=0.8)),
             ("equal policies: 0.50, failures 0.20, rho 0", Scenario(0.50, 0.50, 0.20, 0.20, rho=0.0)))
    se = np.sqrt(args.alpha * (1 - args.alpha) / args.sims)
    for title, s in nulls:
        data = simulate(rng, s, args.sims, args.cap)
        fixed = mcnemar_exact_rejects(data["success_a"], data["success_b"], plan["n_fixed"], args.alpha)
        rates = {"fixed-n binary (exact McNemar, plan)": float(np.mean(fixed))}
        rates.update({k: float(np.mean(v > 0)) for k, v in designs(data, plan, args.alpha).items()})
        print(f"  {title}  (Monte-Carlo s.e. at alpha: {se:.4f})")
        for name, rate in rates.items():
            print(f"    {name:40s} {rate:.4f}")
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
