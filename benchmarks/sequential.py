"""Sequential stopping by simulation: error rates with equal policies, and the average number of
paired episodes to a decision against the fixed-n design of the same power (Connor's n).

    python benchmarks/sequential.py [--sims 10000] [--cap 400]
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import norm

from evalsuite.stats.power import n_paired
from evalsuite.stats.sequential import first_rejection


def pairs(rng, sims, n, p_a, p_b, rho):
    z = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=(sims, n))
    return z[..., 0] < norm.ppf(p_a), z[..., 1] < norm.ppf(p_b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sims", type=int, default=10_000)
    parser.add_argument("--cap", type=int, default=400)
    parser.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"equal rates, looking after every pair up to {args.cap} ({args.sims} comparisons each):")
    for p in (0.5, 0.7, 0.9):
        for rho in (0.0, 0.5, 0.8):
            a, b = pairs(rng, args.sims, args.cap, p, p, rho)
            rate = np.mean(first_rejection(a, b, alpha=args.alpha) > 0)
            print(f"  p={p:.1f} rho={rho:.1f}: false decisions {rate:.4f} (alpha {args.alpha})")
    print("\nreal differences (A better), average pairs to decision vs fixed-n of the same power:")
    for p_a, p_b, rho in ((0.8, 0.7, 0.5), (0.9, 0.7, 0.5), (0.85, 0.7, 0.0), (0.85, 0.7, 0.7)):
        a, b = pairs(rng, args.sims, args.cap, p_a, p_b, rho)
        stops = first_rejection(a, b, alpha=args.alpha)
        power = np.mean(stops > 0)
        used = np.where(stops > 0, stops, args.cap).mean()
        psi = np.mean(a != b)
        fixed = n_paired(p_b, p_a - p_b, alpha=args.alpha, power=min(power, 0.99), discordance=psi).n
        print(f"  {p_a:.2f} vs {p_b:.2f} rho={rho:.1f} (discordance {psi:.3f}): power {power:.3f} within "
              f"{args.cap}; mean pairs used {used:.0f}; fixed-n for that power {fixed}; "
              f"saving {100 * (1 - used / fixed):+.0f}%")


if __name__ == "__main__":
    main()
