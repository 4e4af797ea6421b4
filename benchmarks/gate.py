"""The regression gate by simulation: false REGRESSED rates when nothing changed, false passes at
the margin (the exact test against the one-sided Newcombe rule it replaced), power at the planned
n, pairs for an unchanged policy to pass, and the sequential gate's episodes to a verdict.

    python benchmarks/gate.py [--sims 10000]

Fixed-n verdicts come from ``paired_verdict_table`` (what ``paired_decision`` returns for every
outcome), so a simulated comparison is a table look-up; "exact" figures enumerate the sample space.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from scipy.special import gammaln, xlogy

from evalsuite.stats import margin as mg
from evalsuite.stats.paired import newcombe_paired_interval
from evalsuite.stats.sequential import log_wealth_mean

PASSING = (mg.NON_INFERIOR, mg.IMPROVED)


def paired(rng, p_base, p_cand, p_both, n, sims):
    cell = rng.choice(4, size=(sims, n), p=[p_both, p_cand - p_both, p_base - p_both, 1 - p_cand - p_base + p_both])
    return (cell == 0) | (cell == 1), (cell == 0) | (cell == 2)


def table_verdicts(cand, base, margin, alpha, alpha_claims=None):
    table = mg.paired_verdict_table(cand.shape[1], margin=margin, alpha=alpha, alpha_claims=alpha_claims)
    return table[np.sum(cand & ~base, axis=1), np.sum(~cand & base, axis=1)]


def rates(verdicts):
    return {v: float(np.mean(verdicts == v)) for v in mg.VERDICTS}


def exact_pass(n, p10, p01, margin, alpha):
    b, c = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    rest = np.maximum(n - b - c, 0)
    log_p = (gammaln(n + 1) - gammaln(b + 1) - gammaln(c + 1) - gammaln(rest + 1) + xlogy(b, p10) + xlogy(c, p01)
             + xlogy(rest, 1 - p10 - p01))
    prob = np.where(b + c <= n, np.exp(log_p), 0.0)
    return float(prob[np.isin(mg.paired_verdict_table(n, margin=margin, alpha=alpha), PASSING)].sum())


def old_newcombe_pass(cand, base, margin, alpha):
    """The replaced rule: one-sided Newcombe lower bound at level 1 - alpha above -margin."""
    passed = 0
    for c, b in zip(cand, base, strict=False):
        both, c_only, b_only = int(np.sum(c & b)), int(np.sum(c & ~b)), int(np.sum(~c & b))
        low, _ = newcombe_paired_interval(both, c_only, b_only, c.size - both - c_only - b_only, level=1 - 2 * alpha)
        passed += low > -margin
    return passed / len(cand)


def sequential_first(diffs, null, alternative, alpha, chunk=2000):
    out = []
    for start in range(0, diffs.shape[0], chunk):
        hit = log_wealth_mean(diffs[start:start + chunk], null, alternative=alternative) >= math.log(1 / alpha)
        out.append(np.where(hit.any(-1), hit.argmax(-1) + 1, -1))
    return np.concatenate(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sims", type=int, default=10_000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    alpha, margin, sims = 0.05, 0.05, args.sims
    print(f"gate, margin {margin}, alpha {alpha} (one task), {sims} simulated comparisons each; "
          f"method: {mg.PAIRED_EXACT}")
    print("fixed n, candidate = baseline (false REGRESSED):")
    for p, p_both, n in [(0.8, 0.64, 40), (0.8, 0.75, 120), (0.5, 0.25, 100), (0.5, 0.45, 200), (0.95, 0.93, 60)]:
        r = rates(table_verdicts(*paired(rng, p, p, p_both, n, sims), margin, alpha))
        rho = (p_both - p * p) / (p * (1 - p))
        print(f"  p={p} corr={rho:.2f} n={n}: REGRESSED {r[mg.REGRESSED]:.4f}, NON-INFERIOR or better "
              f"{r[mg.NON_INFERIOR] + r[mg.IMPROVED]:.3f}, INCONCLUSIVE {r[mg.INCONCLUSIVE]:.3f}")

    print("candidate exactly one margin worse (false pass; must be <= alpha): exact test vs one-sided Newcombe")
    for n, p_b, psi, level in [(120, 0.55, 0.05, alpha / 3), (60, 0.55, 0.07, alpha), (200, 0.8, 0.3, alpha)]:
        p10, p01 = (psi - margin) / 2, (psi + margin) / 2
        cand, base = paired(rng, p_b, p_b - margin, p_b - p01, n, sims)
        new = float(np.isin(table_verdicts(cand, base, margin, level), PASSING).mean())
        old = old_newcombe_pass(cand, base, margin, level)
        exact = exact_pass(n, p10, p01, margin, level)
        print(f"  n={n} p_b={p_b} discordance={psi} alpha={level:.4f}: exact test {new:.4f} (enumerated {exact:.4f}, "
              f"{exact / level:.2f}x alpha); old Newcombe {old:.4f} ({old / level:.2f}x alpha)")

    print("planned n (n_gate, power 0.8), a drop below p=0.8:")
    p = 0.8
    for drop in (0.15, 0.10):
        for p_both in (p * (p - drop), p - drop - 0.02):
            psi = p + (p - drop) - 2 * p_both
            t0 = time.perf_counter()
            n = mg.n_gate(p, drop, margin, alpha=alpha, discordance=psi)
            planned_in = time.perf_counter() - t0
            exact = mg.gate_power(n, (psi - drop) / 2, (psi + drop) / 2, margin=margin, alpha=alpha, claim="regressed")
            r = rates(table_verdicts(*paired(rng, p, p - drop, p_both, n, sims), margin, alpha))
            cand, base = paired(rng, p, p - drop, p_both, 2 * n, sims)
            first = sequential_first(cand.astype(float) - base, -margin, "less", alpha)
            caught = first > 0
            print(f"  drop {drop:.2f} discordance {psi:.2f}: n={n} (planned in {planned_in:.1f}s), REGRESSED exact "
                  f"{exact:.3f}, simulated {r[mg.REGRESSED]:.3f}; sequential (cap 2n) caught {caught.mean():.3f}, "
                  f"mean pairs to REGRESSED {first[caught].mean():.0f} ({first[caught].mean() / n:.2f} of n)")

    print("pairs per task to catch a drop below p=0.8 (n_gate, independent outcomes, power 0.8):")
    for drop in (0.15, 0.10):
        for level in (alpha, alpha / 3):
            t0 = time.perf_counter()
            n = mg.n_gate(0.8, drop, margin, alpha=level)
            print(f"  drop {drop:.2f} alpha {level:.4f}: {n} ({time.perf_counter() - t0:.1f}s)")
    print("pairs per task for an unchanged policy to pass (n_gate_pass, power 0.8):")
    for p, psi in [(0.8, None), (0.9, None), (0.95, None), (1.0, 0.0)]:
        for level in (alpha, alpha / 3):
            t0 = time.perf_counter()
            n = mg.n_gate_pass(p, margin, alpha=level, discordance=psi)
            disc = 2 * p * (1 - p) if psi is None else psi
            print(f"  p={p} discordance {disc:.3f} alpha {level:.4f}: {n} ({time.perf_counter() - t0:.1f}s)")

    print("sequential, candidate = baseline, looking after every pair up to 400:")
    for p, p_both in [(0.8, 0.64), (0.8, 0.75), (0.5, 0.25)]:
        cand, base = paired(rng, p, p, p_both, 400, sims)
        first = sequential_first(cand.astype(float) - base, -margin, "less", alpha)
        ni = sequential_first(cand.astype(float) - base, -margin, "greater", alpha)
        print(f"  p={p} p_both={p_both}: false REGRESSED {np.mean(first > 0):.4f}; NON-INFERIOR within 400 "
              f"{np.mean(ni > 0):.3f}, median pairs {np.median(ni[ni > 0]) if (ni > 0).any() else float('nan'):.0f}")


if __name__ == "__main__":
    main()
