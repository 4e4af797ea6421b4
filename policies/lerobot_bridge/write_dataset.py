"""Write demonstrations handed over in a plain .npz file as a LeRobotDataset, with LeRobot's own writer.

    python write_dataset.py DEMOS.npz OUT_FOLDER [--repo-id evalsuite/demos] [--videos]

Runs inside the LeRobot environment and imports nothing of evalsuite: evalsuite records the episodes
in its own environment (numpy < 2) and this script turns them into the on-disk format of whichever
lerobot is installed (``LeRobotDataset.create``, ``add_frame``, ``save_episode``, ``finalize``), so
``lerobot-train --dataset.root=OUT_FOLDER`` reads them.

The .npz (no pickles): ``action`` (N, A) float32, ``observation.state`` (N, D) float32, optional
``observation.images.<camera>`` (N, H, W, 3) uint8, ``episode_ends`` (E,) (cumulative frame
counts), optional ``task`` (N,) str (each frame's instruction, else ``meta``'s for all), and
``meta``, a JSON string: ``fps``, ``task`` (the instruction), ``robot_type``, ``names`` (feature ->
component names), ``environment_state`` (true: also write the state as
``observation.environment_state``, which ACT needs when there is no image), ``extra`` (name -> dtype,
``string``, ``bool`` or ``float32``: further per-frame fields, each an (N,) array in the file, written
as features of shape (1,)) and ``info`` (written to ``meta/evalsuite.json``: where the episodes came
from).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

STATE, ENV_STATE, IMAGES = "observation.state", "observation.environment_state", "observation.images."


def features_of(arrays: dict[str, np.ndarray], meta: dict, videos: bool) -> dict[str, dict]:
    """LeRobot's feature spec for what the file holds (dtype, shape, component names)."""
    names = meta.get("names", {})
    features: dict[str, dict] = {}
    for key, values in arrays.items():
        if key.startswith(IMAGES):
            features[key] = {"dtype": "video" if videos else "image", "shape": values.shape[1:],
                             "names": ["height", "width", "channels"]}
        elif key in (STATE, "action"):
            features[key] = {"dtype": "float32", "shape": values.shape[1:], "names": names.get(key)}
    if meta.get("environment_state"):
        features[ENV_STATE] = {**features[STATE], "names": names.get(STATE)}
    for key, dtype in meta.get("extra", {}).items():
        features[key] = {"dtype": dtype, "shape": (1,), "names": None}
    return features


def value_of(feature: dict, values: np.ndarray, row: int):
    """One frame's value of a feature as LeRobot's add_frame validates it (an extra field: a str, or (1,))."""
    if feature["dtype"] == "string":
        return str(values[row])
    if tuple(feature["shape"]) == (1,) and values.ndim == 1:
        return values[row:row + 1]
    return values[row]


def write(npz: Path, out: Path, repo_id: str, videos: bool) -> dict:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    with np.load(npz, allow_pickle=False) as handle:
        arrays = {key: handle[key] for key in handle.files}
    meta = json.loads(str(arrays.pop("meta")))
    ends = [int(e) for e in arrays.pop("episode_ends")]
    tasks = arrays.pop("task", None)
    features = features_of(arrays, meta, videos)
    dataset = LeRobotDataset.create(repo_id=repo_id, fps=int(meta["fps"]), features=features, root=out,
                                    robot_type=meta.get("robot_type"), use_videos=videos)
    start = 0
    for end in ends:
        for row in range(start, end):
            frame = {key: value_of(features[key], arrays[key], row) for key in arrays if key in features}
            if ENV_STATE in features:
                frame[ENV_STATE] = arrays[STATE][row]
            frame["task"] = str(tasks[row]) if tasks is not None else meta["task"]
            dataset.add_frame(frame)
        dataset.save_episode()
        start = end
    dataset.finalize()
    (out / "meta" / "evalsuite.json").write_text(json.dumps(meta.get("info", {}), indent=2) + "\n")
    return {"root": str(out), "episodes": dataset.meta.total_episodes, "frames": dataset.meta.total_frames,
            "codebase_version": dataset.meta.info["codebase_version"], "features": sorted(features)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("npz", type=Path)
    parser.add_argument("out", type=Path, help="the dataset folder to create (must not exist)")
    parser.add_argument("--repo-id", default="evalsuite/demos", help="the name LeRobot records (never pushed)")
    parser.add_argument("--videos", action="store_true", help="cameras as MP4 video (default: PNG images)")
    args = parser.parse_args(argv)
    if args.out.exists():
        parser.error(f"{args.out} exists; LeRobotDataset.create writes a new folder")
    print(json.dumps(write(args.npz, args.out, args.repo_id, args.videos)))


if __name__ == "__main__":
    main()
