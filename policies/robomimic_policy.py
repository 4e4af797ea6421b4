"""Checkpoints users already have: robomimic policies, loaded through robomimic's own loader.

A robomimic checkpoint is a pickled dict, and loading it executes code (``torch.load`` with
``weights_only=False``). evalsuite does that only for the checkpoints it ships and for a path the
user names explicitly (``policies=[robomimic:path/to/model.pth]``) - never for a file it found.

Non-recurrent algorithms (BC, BC-Gaussian, ...) are batched: the observations of all parallel
episodes go through one forward pass, normalized as robomimic's ``RolloutPolicy`` does.
Recurrent ones (BC-RNN) keep one hidden state and run one episode at a time (``batch_size=1``).

``train_checkpoint`` trains one with robomimic's own training script (``robomimic.scripts.train``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from pathlib import Path

import numpy as np

from evalsuite import trust
from evalsuite.errors import UsageError
from evalsuite.interfaces import PolicyRequirements
from evalsuite.specs import SuiteSpec, TaskSpec
from evalsuite_policies._util import config_fingerprint, flush_denormals
from evalsuite_suites.compat import prepare_robomimic

SHIPPED = Path(__file__).parent / "checkpoints"


def load_trusted_checkpoint(path: Path) -> dict:
    """torch.load of a pickle: callers pass only shipped files or paths the user named."""
    import torch

    return torch.load(str(path), map_location="cpu", weights_only=False)  # trusted: see module docstring


class RobomimicPolicy:
    def __init__(self, path: Path) -> None:
        prepare_robomimic()
        import robomimic.utils.file_utils as FileUtils
        import torch

        self.path = Path(path)
        if not self.path.is_file():
            raise UsageError(f"robomimic checkpoint {str(path)!r} does not exist")
        try:
            ckpt = load_trusted_checkpoint(self.path)
            if not isinstance(ckpt, dict) or "shape_metadata" not in ckpt or "algo_name" not in ckpt:
                raise ValueError("no robomimic algo_name / shape_metadata inside")
            with contextlib.redirect_stdout(io.StringIO()):  # robomimic prints its observation spec
                self.rollout, self.ckpt = FileUtils.policy_from_checkpoint(ckpt_dict=ckpt,
                                                                         device=torch.device("cpu"))
        except Exception as exc:  # a damaged file, another format, another library's pickle
            reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
            raise UsageError(f"robomimic checkpoint {str(path)!r} is not a robomimic model.pth ({reason}); give a "
                             "checkpoint written by robomimic's train script") from None
        self.algo = self.rollout.policy
        self.recurrent = hasattr(self.algo, "_rnn_hidden_state")
        shapes = self.ckpt["shape_metadata"]["all_shapes"]
        self.obs_keys = list(shapes)
        self.requirements = PolicyRequirements(
            obs_shapes={k: tuple(v) if not k.endswith("_image") else None for k, v in shapes.items()},
            action_dim=int(self.ckpt["shape_metadata"]["ac_dim"]))
        self._fingerprint = config_fingerprint({"policy": "robomimic", "algo": self.ckpt["algo_name"]},
                                               hashlib.sha256(self.path.read_bytes()).digest())
        self._torch = torch

    def reset(self, seed: int, slot: int) -> None:
        self.rollout.start_episode()

    def act(self, observations: dict[str, np.ndarray], slots: np.ndarray) -> np.ndarray:
        if self.recurrent:
            if len(slots) != 1:
                raise UsageError("recurrent robomimic policies run one episode at a time: use batch_size=1")
            return self.rollout({k: observations[k][0] for k in self.obs_keys})[None]
        import robomimic.utils.obs_utils as ObsUtils

        torch = self._torch
        with torch.no_grad():
            obs = {k: torch.as_tensor(np.asarray(observations[k]), dtype=torch.float32) for k in self.obs_keys}
            obs = {k: ObsUtils.process_obs(v, obs_key=k) for k, v in obs.items()}  # images: HWC uint8 -> CHW float
            stats = self.rollout.obs_normalization_stats
            if stats is not None:
                obs = ObsUtils.normalize_obs(obs, obs_normalization_stats=stats)
            return self.algo.get_action(obs_dict=obs).cpu().numpy()

    def fingerprint(self) -> str:
        return self._fingerprint


def load_policy(task: TaskSpec, suite: SuiteSpec, path: str = "") -> RobomimicPolicy:
    if not path:
        raise UsageError("robomimic needs a checkpoint: robomimic:path/to/model.pth")
    if Path(path).is_dir():
        raise UsageError(f"robomimic checkpoint {path!r} is a folder; give the model.pth file inside it "
                         "(robomimic writes them to <run>/models/model_epoch_N.pth)")
    if Path(path).is_file():
        trust.require(path, "robomimic checkpoint")  # the command line's consent, never a run folder's
    return RobomimicPolicy(Path(path))


def shipped_bc(task: TaskSpec, suite: SuiteSpec) -> RobomimicPolicy:
    """The BC checkpoint evalsuite ships for this task (trained here, see policies/checkpoints/README.md)."""
    path = SHIPPED / f"robomimic_bc_{task.id}.pth"
    if not path.exists():
        shipped = sorted(p.stem.removeprefix("robomimic_bc_") for p in SHIPPED.glob("robomimic_bc_*.pth"))
        raise UsageError(f"no shipped robomimic-bc checkpoint for task {task.id!r}; shipped: {', '.join(shipped)}")
    return RobomimicPolicy(path)


def train_checkpoint(dataset: Path, out_dir: Path, *, epochs: int, seed: int = 0, batch_size: int = 100) -> Path:
    """Train robomimic's BC (low-dim) with robomimic's own training loop; returns the last checkpoint."""
    if (Path(out_dir) / "bc").exists():  # robomimic would stop and ask on stdin
        raise UsageError(f"{Path(out_dir) / 'bc'} exists; train into an empty folder")
    prepare_robomimic()
    import torch
    from robomimic.config import config_factory
    from robomimic.scripts.train import train

    config = config_factory("bc")
    with config.values_unlocked():
        config.experiment.name = "bc"
        config.experiment.validate = False
        config.experiment.rollout.enabled = False
        config.experiment.save.enabled = True
        config.experiment.save.every_n_epochs = epochs
        config.experiment.save.on_best_rollout_success_rate = False
        config.experiment.logging.terminal_output_to_txt = False
        config.experiment.logging.log_tb = False
        config.train.data = str(dataset)
        config.train.output_dir = str(out_dir)
        config.train.num_epochs = epochs
        config.train.batch_size = batch_size
        config.train.seed = seed
        config.train.num_data_workers = 0
        config.train.hdf5_cache_mode = "all"
        config.train.hdf5_filter_key = "train"
        config.observation.modalities.obs.low_dim = [
            "robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "object"]
    torch.set_num_threads(1)
    flush_denormals()
    train(config, device=torch.device("cpu"))
    return max(Path(out_dir).glob("bc/*/models/model_epoch_*.pth"), key=lambda p: p.stat().st_mtime)


if __name__ == "__main__":
    import sys

    checkpoint = train_checkpoint(Path(sys.argv[1]), Path(sys.argv[2]), epochs=int(sys.argv[3]))
    print(checkpoint)
