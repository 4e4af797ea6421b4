"""What videos cost: the same plan with ``video=none`` and with the default ``video=sample``, in one
run of this script, as the ratio of wall times (goal: videos add <= 15%).

    python benchmarks/videos.py [--suite metaworld-smoke] [--episodes 10] [--policies scripted,noisy-scripted,random]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time


def timed(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "evalsuite", "evaluate", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--suite", default="metaworld-smoke")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--policies", default="scripted,noisy-scripted,random")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = [f"suite={args.suite}", f"policies=[{args.policies}]", f"episodes={args.episodes}", "tracking_uri=none",
                "progress=false"]
        without = timed([*base, "video=none", f"out={tmp}/none"])
        with_videos = timed([*base, "video=sample", f"out={tmp}/sample"])
        videos = len([f for f in os.listdir(f"{tmp}/sample/videos") if f.endswith(".mp4")])
    print(f"{args.suite}, {args.episodes} episodes x {args.policies}, {os.cpu_count()} cores")
    print(f"  video=none:   {without:7.1f} s")
    print(f"  video=sample: {with_videos:7.1f} s ({videos} videos)")
    print(f"  ratio: {with_videos / without:.2f}x (videos add {100 * (with_videos / without - 1):.0f}%; goal <= 15%)")


if __name__ == "__main__":
    main()
