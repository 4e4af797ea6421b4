"""`evalsuite demos`: successful scripted-expert episodes as robomimic HDF5 (robosuite) or DP3
fields (Meta-World), for training."""

from __future__ import annotations

import sys

from evalsuite.commands.options import MAX_EPISODES, Option, folder, integer, parse
from evalsuite.errors import UsageError

OPTIONS = (Option("suite", "suite id"), Option("task", "task id"), Option("n", "successful demos to write",
                                                                          parse=integer(1, MAX_EPISODES)),
           Option("out", "HDF5 file to write (.hdf5)", parse=folder), Option("seed", "root seed", "0", integer(0)),
           Option("expert", "the policy that demonstrates", "scripted"),
           Option("obs", "observation mode of the suite (e.g. pointcloud)"))


def run(args: list[str]) -> int:
    """Successful scripted-expert episodes, written as robomimic HDF5 (robosuite) or DP3 fields (Meta-World)."""
    from evalsuite import demos, registry

    v = parse(args, OPTIONS)
    for key in ("suite", "task", "n", "out"):
        if key not in v:
            raise UsageError(f"missing {key}=...; usage: evalsuite demos suite=robomimic task=lift n=200 out=data/lift.hdf5")
    suite = registry.suites.get(v["suite"])
    suite.task(v["task"])
    registry.policies.get(v["expert"])
    out = v["out"]
    if out.suffix not in (".hdf5", ".h5"):
        raise UsageError(f"out={v['out']!r}: demos are written as HDF5; use a .hdf5 file name")
    result = demos.collect(suite.id, v["task"], v["n"], seed=v["seed"], expert=v["expert"],
                           suite_options={"obs": v["obs"]} if "obs" in v else None)
    if not result.episodes:  # nothing to write: an empty file would look like a dataset
        raise UsageError(f"expert={v['expert']!r} succeeded in none of {result.attempted} episodes of "
                         f"{v['task']!r}; demos keep successful episodes only - use an expert that solves the task "
                         "(e.g. expert=scripted)")
    if len(result.episodes) < v["n"]:
        print(f"warning: only {len(result.episodes)} of {result.attempted} expert episodes succeeded", file=sys.stderr)
    robomimic_layout = suite.demos_format == "robomimic"
    (demos.write_robomimic_hdf5 if robomimic_layout else demos.write_dp3_hdf5)(result, out)
    print(f"{out}: {len(result.episodes)} successful demos of {result.attempted} attempts "
          f"({'robomimic' if robomimic_layout else 'DP3-field'} layout)")
    return 0
