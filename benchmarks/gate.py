"""The regression gate by simulation: false REGRESSED rates, power at the planned n, and the
sequential gate's episodes to a verdict against that fixed n.

    python benchmarks/gate.py [--sims 10000]
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from evalsuite.stats import margin as mg
from evalsuite.stats.sequential import log_wealth_mean


def paired(rng, p_base, p_cand, p_both, n, sims):
    cell = rng.choice(4, size=(sims, n), p=[p_both, p_cand - p_both, p_base - p_both, 1 - p_cand - p_base + p_both])
    return (cell == 0) | (cell == 1), (cell == 0) | (cell == 2)


def fixed_rates(cand, base, alpha, margin):
    verdicts = [mg.paired_decision(c, b, margin=margin, alpha=alpha).verdict for c, b in zip(cand, base)]
    return {v: verdicts.count(v) / len(verdicts) for v in mg.VERDICTS}


def sequential_first(diffs, null, alternative, alpha):
    hit = log_wealth_mean(diffs, null, alternative=alternative) >= math.log(1 / alpha)
    return np.where(hit.any(-1), hit.argmax(-1) + 1, -1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sims", type=int, default=10_000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    alpha, margin = 0.05, 0.05
    print(f"gate, margin {margin}, alpha {alpha} (one task), {args.sims} simulated comparisons each")
    print("fixed n, candidate = baseline (false REGRESSED):")
    for p, p_both, n in [(0.8, 0.64, 40), (0.8, 0.75, 120), (0.5, 0.25, 100), (0.5, 0.45, 200), (0.95, 0.93, 60)]:
        rates = fixed_rates(*paired(rng, p, p, p_both, n, args.sims), alpha, margin)
        rho = (p_both - p * p) / (p * (1 - p))
        print(f"  p={p} corr={rho:.2f} n={n}: REGRESSED {rates['REGRESSED']:.4f}, NON-INFERIOR or better "
              f"{rates['NON-INFERIOR'] + rates['IMPROVED']:.3f}, INCONCLUSIVE {rates['INCONCLUSIVE']:.3f}")
    p = 0.8
    for drop in (0.15, 0.10):
        for p_both in (p * (p - drop), p - drop - 0.02):
            psi = p + (p - drop) - 2 * p_both
            n = mg.n_gate(p, drop, margin, alpha=alpha, discordance=psi)
            rates = fixed_rates(*paired(rng, p, p - drop, p_both, n, args.sims), alpha, margin)
            cand, base = paired(rng, p, p - drop, p_both, 2 * n, args.sims)
            first = sequential_first(cand.astype(float) - base, -margin, "less", alpha)
            caught = first > 0
            print(f"  drop {drop:.2f} discordance {psi:.2f}: planned n={n}, fixed REGRESSED {rates['REGRESSED']:.3f} "
                  f"(planned 0.80); sequential (cap 2n) caught {caught.mean():.3f}, mean pairs to REGRESSED "
                  f"{first[caught].mean():.0f} ({first[caught].mean() / n:.2f} of n)")
    print("sequential, candidate = baseline, looking after every pair up to 400:")
    for p, p_both in [(0.8, 0.64), (0.8, 0.75), (0.5, 0.25)]:
        cand, base = paired(rng, p, p, p_both, 400, args.sims)
        first = sequential_first(cand.astype(float) - base, -margin, "less", alpha)
        ni = sequential_first(cand.astype(float) - base, -margin, "greater", alpha)
        print(f"  p={p} p_both={p_both}: false REGRESSED {np.mean(first > 0):.4f}; NON-INFERIOR within 400 "
              f"{np.mean(ni > 0):.3f}, median pairs {np.median(ni[ni > 0]) if (ni > 0).any() else float('nan'):.0f}")


if __name__ == "__main__":
    main()
