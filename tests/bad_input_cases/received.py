"""A received run folder whose journal is not its plan's, and damaged checkpoint files (see
tests/bad_input_cases/__init__.py for the format)."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

from tests.conftest import REPO

EVAL = ["evaluate", "suite=fake", "policies=[ones]", "episodes=2", "max_steps=14", "tracking_uri=none",
        "progress=false"]
SHIPPED_DP3 = REPO / "policies" / "checkpoints" / "cpu-budget" / "dp3" / "seed0" / "drawer-open"


def _edit_record(change, line: int = 0):
    """Rewrite one journal record with ``change(record)``."""
    def setup(run: Path) -> None:
        lines = (run / "episodes.jsonl").read_text().splitlines()
        record = json.loads(lines[line])
        change(record)
        lines[line] = json.dumps(record)
        (run / "episodes.jsonl").write_text("\n".join(lines) + "\n")
    return setup


def _every_record_of_a_policy(change):
    def setup(run: Path) -> None:
        lines = [json.loads(x) for x in (run / "episodes.jsonl").read_text().splitlines()]
        code = lines[0]["policy_code"]
        for r in lines:
            if r["policy_code"] == code:
                change(r)
        (run / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return setup


def _remove_plan(run: Path) -> None:
    (run / "plan.json").unlink()
    (run / "blinding.json").unlink()


def _file(name: str, data: bytes | str):
    def setup(run: Path) -> None:
        target = run.parent / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data if isinstance(data, bytes) else data.encode())
    return setup


def _checkpoint_folder(config: str | None, weights: bytes | None):
    """A dp3 checkpoint folder beside the run: the shipped one's files, or these."""
    def setup(run: Path) -> None:
        folder = run.parent / "ckpt"
        shutil.copytree(SHIPPED_DP3, folder)
        if config is not None:
            (folder / "config.json").write_text(config)
        if weights is not None:
            (folder / "model.safetensors").write_bytes(weights)
    return setup


def _mlp_folder(run: Path) -> None:
    folder = run.parent / "mlp"
    folder.mkdir()
    (folder / "config.json").write_text('{"obs_dim": "many", "colour": 1}')
    (folder / "model.safetensors").write_bytes(b"")


METAWORLD = ["evaluate", "suite=metaworld-smoke", "tasks=[drawer-open]", "episodes=1", "tracking_uri=none",
             "progress=false", "video=none"]

CASES = [
    ("journal-foreign-seed", ["report", "{run}"], _edit_record(lambda r: r.update(ic_seed=r["ic_seed"] + 1)),
     "episodes.jsonl:1: ic_seed"),
    ("journal-foreign-trial", ["report", "{run}"], _edit_record(lambda r: r.update(trial_id="t9/00000/A", task="t9")),
     "episodes.jsonl:1: trial_id 't9/00000/A' is not a trial of the plan"),
    ("journal-status-contradicts-success", ["report", "{run}"],
     _edit_record(lambda r: r.update(status="success", success=False)),
     "episodes.jsonl:1: status 'success' contradicts success=false"),
    ("journal-two-fingerprints", ["report", "{run}"], _edit_record(lambda r: r.update(policy_fingerprint="other")),
     "(two policies under one code)"),
    ("resume-journal-without-plan", EVAL, _remove_plan, "holds episodes (episodes.jsonl) but no plan.json"),
    ("resume-changed-fingerprint", EVAL, _every_record_of_a_policy(lambda r: r.update(policy_fingerprint="ones-9.0")),
     "played its journaled episodes as 'ones-9.0' but is 'ones-1.0' now"),
    ("report-empty-journal", ["report", "{run}"], lambda run: (run / "episodes.jsonl").write_text(""),
     "episodes.jsonl is empty: no episode to report; results.json and the report are left as they were"),
    ("robomimic-folder", ["evaluate", "suite=robomimic", "tasks=[lift]", "policies=[robomimic:{tmp}]",
                          "tracking_uri=none"], None, "is a folder; give the model.pth file inside it"),
    ("official-random-bytes", [*METAWORLD, "policies=[dp3:{tmp}/random.ckpt:trust=true]"],
     _file("random.ckpt", bytes((i * 37 + 11) % 256 for i in range(512))),  # fixed "random" bytes: a stable doc
     "random.ckpt is not an official DP3/FlowPolicy/MP1 checkpoint"),
    ("official-foreign-pickle", [*METAWORLD, "policies=[dp3:{tmp}/other.ckpt:trust=true]"],
     _file("other.ckpt", pickle.dumps({"weights": [1, 2, 3]})), "other.ckpt is not an official DP3/FlowPolicy/MP1"),
    ("checkpoint-bad-config", [*METAWORLD, "policies=[dp3:{tmp}/ckpt]"], _checkpoint_folder("{not json", None),
     "config.json is not an evalsuite checkpoint config (JSONDecodeError"),
    ("checkpoint-empty-weights", [*METAWORLD, "policies=[dp3:{tmp}/ckpt]"], _checkpoint_folder(None, b""),
     "model.safetensors does not hold the weights of its config.json"),
    ("mlp-bc-garbage-config", [*METAWORLD, "policies=[mlp-bc:{tmp}/mlp]"], _mlp_folder,
     "config.json is not an mlp-bc config (TypeError"),
]
