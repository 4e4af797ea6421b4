"""`evalsuite train`: the built-in policy families' training command, plugged into the CLI through
the ``evalsuite.commands`` entry point (the core knows no policy family)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalsuite.commands.options import choice as _choice
from evalsuite.commands.options import parse_bool, parse_float, parse_int, parse_list, parse_overrides
from evalsuite.errors import UsageError, choices
from evalsuite.specs import SuiteSpec

if TYPE_CHECKING:
    from evalsuite_policies.train import Demos

KEYS = {
    "policy": "dp3 | flowpolicy | mp1 | dm1 | ebt | lbm",
    "suite": "suite id", "task": "task id", "tasks": "[task, ...] (lbm: one multitask policy on all of them)",
    "obs": "metaworld state | pointcloud (DP3's point_cloud + agent_pos): what demos are collected with and "
           "what the policy reads (obs=state also trains low-dim on point-cloud demos)",
    "demos": "N (collect N scripted-expert demos, cached in OUT/demos.hdf5) or an HDF5 file from `evalsuite demos`",
    "seed": "seed of demos, initialization and batches", "out": "checkpoint folder",
    "iters": "training iterations", "batch_size": "windows per batch", "lr": "AdamW learning rate",
    "horizon": "action-chunk length", "n_obs_steps": "observation frames", "n_action_steps": "actions executed per chunk",
    "down_dims": "[64,128,256] (CPU default) | [512,1024,2048] (papers)", "variant": "dm1 dispersive variant",
    "storage": "float32 | float16 (weights stored at half size)",
    "device": "cpu | cuda (where to train)", "deadline": "stop training after this many seconds",
    "progress": "true | false",
}


def _training_demos(kv: dict[str, str], suite, task: str, out: Path, seed: int, cache_name: str):
    """The demonstrations of one task: an HDF5 file, or N scripted-expert demos collected (and cached)."""
    from evalsuite import demos as demo_mod
    from evalsuite_policies import train as tr

    if kv["demos"].isdigit():
        path = out / cache_name
        if not path.exists():
            n = parse_int("demos", kv["demos"], 1)
            result = demo_mod.collect(suite.id, task, n, seed=seed, expert="scripted",
                                      suite_options={"obs": kv["obs"]} if "obs" in kv else None)
            robomimic_layout = suite.demos_format == "robomimic"
            (demo_mod.write_robomimic_hdf5 if robomimic_layout else demo_mod.write_dp3_hdf5)(result, path)
            print(f"{path}: {len(result.episodes)} expert demos of {result.attempted} attempts")
    else:
        path = Path(kv["demos"])
        if not path.exists():
            raise UsageError(f"demos={kv['demos']!r}: no such file; give a number of demos or an HDF5 file")
    return tr.load_demos(path, obs=kv.get("obs"))


def train_command(args: list[str]) -> int:
    """Train a policy family on scripted demos; writes a safetensors + JSON checkpoint folder."""
    kv = _parsed(args)
    from evalsuite_policies import train as tr

    family, suite, tasks = _family_suite_tasks(kv)
    seed = parse_int("seed", kv.get("seed", "0"), 0)
    out = Path(kv["out"])
    if kv.get("obs", "state") not in ("state", "pointcloud"):
        raise UsageError(f"obs={kv['obs']!r}; accepted: pointcloud, state")
    per_task = {t: _training_demos(kv, suite, t, out, seed, "demos.hdf5" if len(tasks) == 1 else f"demos-{t}.hdf5")
                for t in tasks}
    instructions = _with_instructions(per_task) if family == "lbm" else {}
    demos = tr.Demos([ep for d in per_task.values() for ep in d.episodes], next(iter(per_task.values())).obs_kinds,
                     ", ".join(d.source for d in per_task.values()))
    config = _model_config(kv, family, demos, suite, tasks, instructions)
    tr.train(config, demos, out, iters=parse_int("iters", kv.get("iters", "3000"), 1),
             batch_size=parse_int("batch_size", kv.get("batch_size", "64"), 2),
             lr=parse_float("lr", kv.get("lr", "3e-4"), 0.0, 1.0), seed=seed,
             half=_choice("storage", kv.get("storage", "float32"), ("float32", "float16")) == "float16",
             device=_device(kv.get("device", "cpu")),
             deadline_s=parse_float("deadline", kv["deadline"], 0.0) if "deadline" in kv else None,
             progress=parse_bool("progress", kv.get("progress", "true" if sys.stderr.isatty() else "false")))
    return 0


def _parsed(args: list[str]) -> dict[str, str]:
    """The command's key=value arguments, every required key present (``task`` from ``tasks``)."""
    kv = parse_overrides(args, KEYS)
    if "tasks" in kv and "task" not in kv:
        kv["task"] = parse_list("tasks", kv["tasks"])[0]
    for key in ("policy", "suite", "task", "demos", "out"):
        if key not in kv:
            raise UsageError(f"missing {key}=...; usage: evalsuite train policy=mp1 suite=metaworld task=hammer "
                             "demos=10 seed=0 out=checkpoints/mp1-hammer")
    return kv


def _family_suite_tasks(kv: dict[str, str]) -> tuple[str, SuiteSpec, list[str]]:
    """The trainable family, its suite and the tasks it trains on (several only for lbm), checked."""
    from evalsuite import registry
    from evalsuite_policies import chunked

    family = kv["policy"]
    if family not in chunked.FAMILY_CHUNKING:
        raise UsageError(f"policy={family!r} is not trainable here; accepted: {choices(chunked.FAMILY_CHUNKING)}")
    suite = registry.suites.get(kv["suite"])
    tasks = parse_list("tasks", kv["tasks"]) if "tasks" in kv else [kv["task"]]
    if len(tasks) > 1 and family != "lbm":
        raise UsageError(f"tasks={tasks}: only the multitask lbm policy trains on several tasks; give task=...")
    if len(tasks) > 1 and not kv["demos"].isdigit():
        raise UsageError("with several tasks give demos=N (collected per task), not one file")
    for task in tasks:
        suite.task(task)
    return family, suite, tasks


def _with_instructions(per_task: dict[str, Demos]) -> dict[str, str]:
    """lbm: every demonstration gets its task's instruction, embedded, as its ``language``
    observation (in place); returns task -> instruction."""
    import numpy as np

    from evalsuite_policies.lbm import embed_instruction, instruction_for

    instructions = {}
    for t, d in per_task.items():
        instructions[t] = instruction_for(t)
        language = embed_instruction(instructions[t])
        for obs, _ in d.episodes:
            obs["language"] = np.tile(language, (len(next(iter(obs.values()))), 1))
    return instructions


def _model_config(kv: dict[str, str], family: str, demos: Demos, suite: SuiteSpec, tasks: list[str],
                  instructions: dict[str, str]) -> Any:  # ModelConfig, EBTConfig or LBMConfig
    """The family's model configuration: shapes from the demos, chunking from the family's defaults
    or the command line."""
    from evalsuite_policies import chunked, generative

    horizon, n_obs, n_act = chunked.FAMILY_CHUNKING[family]
    variant = kv.get("variant", "infonce-l2")
    if variant not in generative.DISPERSIVE_VARIANTS:
        raise UsageError(f"variant={variant!r}; accepted: {choices(generative.DISPERSIVE_VARIANTS)}")
    first_obs = demos.episodes[0][0]
    common = dict(
        family=family, obs={k: (kind, tuple(first_obs[k].shape[1:])) for k, kind in demos.obs_kinds.items()},
        action_dim=int(demos.episodes[0][1].shape[1]),
        horizon=parse_int("horizon", kv.get("horizon", str(horizon)), 1),
        n_obs_steps=parse_int("n_obs_steps", kv.get("n_obs_steps", str(n_obs)), 1),
        n_action_steps=parse_int("n_action_steps", kv.get("n_action_steps", str(n_act)), 1),
        extra={"suite": suite.id, "task": kv["task"], "tasks": tasks})
    try:
        if family == "ebt":
            from evalsuite_policies.ebt import EBTConfig

            return EBTConfig(**common)
        if family == "lbm":
            from evalsuite_policies.lbm import LBMConfig

            return LBMConfig(**common, tasks=instructions)
        return chunked.ModelConfig(
            **common, dispersive_variant=variant,
            down_dims=tuple(parse_int("down_dims", d, 8)
                            for d in parse_list("down_dims", kv.get("down_dims", "[64,128,256]"))))
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _device(value: str) -> str:
    """cpu, or cuda where this torch build and machine have it (checked before any training)."""
    device = _choice("device", value, ("cpu", "cuda"))
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            built = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA device is visible"
            raise UsageError(f"device=cuda, but {built}; use device=cpu (or install a CUDA build of torch on a "
                             "machine with a GPU)")
    return device
