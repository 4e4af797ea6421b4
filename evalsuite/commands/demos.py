"""`evalsuite demos`: successful scripted-expert episodes as robomimic HDF5 (robosuite) or DP3
fields (Meta-World), or with format=lerobot as a LeRobotDataset folder, for training."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalsuite.commands.options import MAX_EPISODES, Option, folder, integer, one_of, parse
from evalsuite.errors import UsageError

if TYPE_CHECKING:
    from evalsuite.specs import SuiteSpec

OPTIONS = (Option("suite", "suite id"), Option("task", "task id"), Option("n", "successful demos to write",
                                                                          parse=integer(1, MAX_EPISODES)),
           Option("out", "HDF5 file to write (.hdf5), or with format=lerobot a new folder", parse=folder),
           Option("seed", "root seed", "0", integer(0)),
           Option("expert", "the policy that demonstrates", "scripted"),
           Option("obs", "observation mode of the suite (e.g. pointcloud)"),
           Option("format", "hdf5 (robomimic's layout or DP3's fields, by suite) or lerobot (a LeRobotDataset, "
                            "written by lerobot in its own environment: `nox -s lerobot_env`)", "hdf5",
                  one_of("hdf5", "lerobot")),
           Option("python", "format=lerobot: the LeRobot environment's python (default: $EVALSUITE_LEROBOT_PYTHON, "
                            "else .nox/lerobot of the source checkout)"),
           Option("fps", "format=lerobot: frames per second recorded (default: 80 for Meta-World, 20 for robosuite)",
                  parse=integer(1, 10_000)))


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
    if v["format"] == "lerobot":
        lerobot_options = _lerobot_options(suite, v)  # refused before any episode runs
    elif out.suffix not in (".hdf5", ".h5"):
        raise UsageError(f"out={v['out']!r}: demos are written as HDF5; use a .hdf5 file name (or format=lerobot)")
    else:
        for key in ("python", "fps"):
            if key in v:
                raise UsageError(f"{key}= is for format=lerobot; this writes HDF5")
    result = demos.collect(suite.id, v["task"], v["n"], seed=v["seed"], expert=v["expert"],
                           suite_options={"obs": v["obs"]} if "obs" in v else None)
    if not result.episodes:  # nothing to write: an empty file would look like a dataset
        raise UsageError(f"expert={v['expert']!r} succeeded in none of {result.attempted} episodes of "
                         f"{v['task']!r}; demos keep successful episodes only - use an expert that solves the task "
                         "(e.g. expert=scripted)")
    if len(result.episodes) < v["n"]:
        print(f"warning: only {len(result.episodes)} of {result.attempted} expert episodes succeeded", file=sys.stderr)
    if v["format"] == "lerobot":
        return _write_lerobot(result, out, v, lerobot_options)
    robomimic_layout = suite.demos_format == "robomimic"
    (demos.write_robomimic_hdf5 if robomimic_layout else demos.write_dp3_hdf5)(result, out)
    print(f"{out}: {len(result.episodes)} successful demos of {result.attempted} attempts "
          f"({'robomimic' if robomimic_layout else 'DP3-field'} layout)")
    return 0


def _lerobot_options(suite: SuiteSpec, v: dict[str, Any]) -> dict[str, Any]:
    """What format=lerobot needs, checked up front: a new folder, the LeRobot environment, a frame rate."""
    from evalsuite import demos

    if v["out"].exists():
        raise UsageError(f"out={str(v['out'])!r} exists; format=lerobot writes a new dataset folder")
    if v["out"].suffix in (".hdf5", ".h5"):
        raise UsageError(f"out={str(v['out'])!r}: format=lerobot writes a folder, not an HDF5 file")
    demos.lerobot_python(v.get("python", ""))
    fps, robot_type = demos.LEROBOT_SIMULATORS.get(suite.simulator, (v.get("fps"), suite.simulator or "unknown"))
    if "fps" not in v and fps is None:
        raise UsageError(f"format=lerobot: suite {suite.id!r} has no known control rate; give fps=...")
    return {"fps": v.get("fps", fps), "robot_type": robot_type, "python": v.get("python", "")}


def _write_lerobot(result: Any, out: Path, v: dict[str, Any], options: dict[str, Any]) -> int:
    from evalsuite import __version__, demos, registry
    from evalsuite.runner.envs import env_info

    suite = registry.suites.get(v["suite"])
    task = suite.task(v["task"])
    shapes = {k: tuple(s) for k, s in env_info(suite, task.id, task.max_steps).obs_shapes.items()}
    info = {"suite": suite.id, "task": task.id, "expert": v["expert"], "seed": v["seed"],
            "kept": len(result.episodes), "attempted": result.attempted,
            "ic_seeds": [str(e.ic_seed) for e in result.episodes], "evalsuite": __version__}
    summary = demos.write_lerobot_dataset(result, out, shapes, instruction=task.instruction or task.id.replace("-", " "), info=info,
                                          **options)
    print(f"{out}: {summary['episodes']} successful demos of {result.attempted} attempts, {summary['frames']} frames "
          f"(LeRobotDataset {summary['codebase_version']}: {', '.join(summary['features'])})")
    return 0
