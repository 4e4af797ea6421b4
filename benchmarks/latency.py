"""Inference latency per action chunk of the shipped policy families (CPU), batch 1 and 16.

Each family's shipped Meta-World drawer-open checkpoint (same UNet widths) samples a chunk from
two observation frames; the median of repeated calls is reported with the ratios dp3 / mp1 and
flowpolicy / mp1 (the papers report MP1 ~19x faster than DP3 on a GPU).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from evalsuite_policies.chunked import DEFAULT_CHECKPOINTS, DEFAULT_STEPS, load_checkpoint

REPO = Path(__file__).resolve().parents[1]

FAMILIES = ("dp3", "flowpolicy", "mp1", "dm1")  # the defaults a bare family name loads
# further shipped models, timed where their checkpoints exist (other widths / architectures)
OTHERS = {"ebt": "ebt/metaworld/drawer-open", "lbm": "lbm/metaworld/multitask"}


def latency_ms(model, batch: int, steps: int, reps: int = 20) -> float:
    c = model.config
    obs = {k: torch.randn(batch, c.n_obs_steps, *shape) for k, (_, shape) in c.obs.items()}
    if c.family == "lbm":
        obs["language"] = torch.randn(batch, 384)
    noise = torch.randn(batch, c.horizon, c.action_dim)
    model.sample(obs, noise, steps)  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        model.sample(obs, noise, steps)
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
    torch.set_num_threads(1)
    rows = {}
    for family in FAMILIES:
        model, _ = load_checkpoint(REPO / DEFAULT_CHECKPOINTS[family] / "drawer-open")
        steps = DEFAULT_STEPS[family]
        rows[family] = (steps, latency_ms(model, 1, steps), latency_ms(model, 16, steps))
    for family, sub in OTHERS.items():
        folder = REPO / "policies" / "checkpoints" / sub
        if (folder / "config.json").exists():
            model, _ = load_checkpoint(folder)
            steps = DEFAULT_STEPS[family]
            rows[family] = (steps, latency_ms(model, 1, steps), latency_ms(model, 16, steps))
    print("inference latency per action chunk (CPU, 1 thread, median of 20; ebt: NFE is the descent cap)")
    for family, (nfe, b1, b16) in rows.items():
        print(f"  {family:<11} NFE {nfe:>2}   batch 1: {b1:7.2f} ms   batch 16: {b16:7.2f} ms")
    for other in ("dp3", "flowpolicy"):
        print(f"  {other} / mp1: batch 1 {rows[other][1] / rows['mp1'][1]:.1f}x, "
              f"batch 16 {rows[other][2] / rows['mp1'][2]:.1f}x")


if __name__ == "__main__":
    main()
