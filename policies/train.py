"""Training a ChunkModel of any family on demonstrations written by ``evalsuite demos``.

Windows of ``horizon`` steps are cut from every demonstration, padded with the first/last step
at the edges (n_obs_steps - 1 before, n_action_steps - 1 after, as Chi et al.'s sampler does);
the first ``n_obs_steps`` observations of a window condition the model, all its actions are the
target. AdamW, an EMA of the weights (the EMA is what is saved and evaluated), a rich progress bar,
the loss curve (``loss.json``, ``loss.png``), and ``resume.pt`` every ``save_every`` iterations,
so an interrupted training continues where it stopped with the same batches.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evalsuite import fsio
from evalsuite_policies._util import flush_denormals
from evalsuite_policies.chunked import ModelConfig, build_model, save_checkpoint


@dataclass
class Demos:
    episodes: list[tuple[dict[str, np.ndarray], np.ndarray]]  # (obs key -> (L, ...), actions (L, A))
    obs_kinds: dict[str, str]
    source: str


def load_demos(path: Path, obs: str | None = None) -> Demos:
    """DP3-field HDF5 (Meta-World: ``data/full_state`` -> obs ``state``; with ``data/point_cloud``, DP3's
    inputs ``point_cloud`` and ``agent_pos`` (``data/state``) instead, unless ``obs="state"``) or
    robomimic HDF5."""
    import h5py

    episodes = []
    with h5py.File(path, "r") as f:
        if "meta/episode_ends" in f:
            ends = np.asarray(f["meta/episode_ends"])
            states, actions = np.asarray(f["data/full_state"]), np.asarray(f["data/action"])
            clouds = np.asarray(f["data/point_cloud"]) if "data/point_cloud" in f else None
            agent = np.asarray(f["data/state"]) if "data/state" in f else None
            starts = np.concatenate([[0], ends[:-1]])
            for a, b in zip(starts, ends, strict=False):
                if clouds is not None and obs != "state":
                    frames = {"point_cloud": clouds[a:b], "agent_pos": agent[a:b]}
                else:
                    frames = {"state": states[a:b]}
                episodes.append((frames, actions[a:b]))
        else:
            names = sorted(f["data"], key=lambda n: int(n.split("_")[-1]))
            for name in names:
                g = f["data"][name]
                episodes.append(({k: np.asarray(g["obs"][k]) for k in g["obs"]}, np.asarray(g["actions"])))
    if not episodes:
        raise ValueError(f"{path} holds no demonstrations")
    kinds = {k: ("pointcloud" if k == "point_cloud" else "image" if k.endswith("_image") else "lowdim")
             for k in episodes[0][0]}
    return Demos(episodes, kinds, str(path))


def windows(demos: Demos, horizon: int, n_obs_steps: int, n_action_steps: int) -> list[tuple[int, int]]:
    """(episode, start) of every window; start may be negative or run past the end (padded)."""
    out = []
    for e, (_, actions) in enumerate(demos.episodes):
        for start in range(-(n_obs_steps - 1), len(actions) - horizon + n_action_steps):
            out.append((e, start))
    return out


def gather(demos: Demos, picks: list[tuple[int, int]], horizon: int, n_obs_steps: int, keys: list[str]):
    obs = {k: [] for k in keys}
    acts = []
    for e, start in picks:
        ep_obs, ep_act = demos.episodes[e]
        idx = np.clip(np.arange(start, start + horizon), 0, len(ep_act) - 1)
        acts.append(ep_act[idx])
        for k in keys:
            obs[k].append(ep_obs[k][idx[:n_obs_steps]])
    return ({k: torch.as_tensor(np.stack(v), dtype=torch.float32) for k, v in obs.items()},
            torch.as_tensor(np.stack(acts), dtype=torch.float32))


def train(config: ModelConfig, demos: Demos, out: Path, *, iters: int = 3000, batch_size: int = 64, lr: float = 3e-4,
          weight_decay: float = 1e-6, ema_decay: float = 0.995, seed: int = 0, save_every: int = 500,
          half: bool = False, progress: bool = True, device: str = "cpu", deadline_s: float | None = None,
          log=print) -> dict[str, Any]:
    """Train (or resume) and write the EMA checkpoint to ``out``; returns the training summary.
    ``device``: where the model trains (random draws stay on the CPU generator, so a seed gives the
    same batches anywhere); ``deadline_s``: stop early after that many seconds (the summary says so)."""
    torch.manual_seed(seed)
    flush_denormals()
    keys = list(config.obs) + (["language"] if config.family == "lbm" else [])
    model = build_model(config)
    for k in config.obs:
        if config.obs[k][0] != "image":
            model.normalizer.fit(k, np.concatenate([ep[0][k] for ep in demos.episodes]))
    model.normalizer.fit("action", np.concatenate([ep[1] for ep in demos.episodes]))
    model.to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=iters, eta_min=lr * 0.1)
    all_windows = windows(demos, config.horizon, config.n_obs_steps, config.n_action_steps)
    gen = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    step, elapsed = 0, 0.0
    resume = out / "resume.pt"
    if resume.exists():
        state = torch.load(resume, weights_only=True, map_location="cpu")  # tensors and numbers only
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        gen.set_state(state["gen"])
        step, losses, elapsed = int(state["step"]), list(state["losses"]), float(state["elapsed"])
        log(f"resuming training at iteration {step}/{iters}")
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter() - elapsed
    bar = _bar(progress, iters, step)
    model.train()
    stopped_early = False
    while step < iters:
        if deadline_s is not None and time.perf_counter() - started > deadline_s:
            stopped_early = True
            break
        picks = torch.randint(0, len(all_windows), (batch_size,), generator=gen).tolist()
        obs, actions = gather(demos, [all_windows[i] for i in picks], config.horizon, config.n_obs_steps, keys)
        obs, actions = {k: v.to(device) for k, v in obs.items()}, actions.to(device)
        loss = model.loss(obs, actions, generator=gen, target=ema)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        decay = min(ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters(), strict=False):
                pe.lerp_(pm, 1 - decay)
            for be, bm in zip(ema.buffers(), model.buffers(), strict=False):
                be.copy_(bm)
        losses.append(loss.item())
        if bar is not None:
            bar[0].update(bar[1], completed=step, loss=f"loss {np.mean(losses[-50:]):.4f}")
        if step % save_every == 0 or step == iters:
            torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                        "sched": sched.state_dict(), "gen": gen.get_state(), "step": step, "losses": losses,
                        "elapsed": time.perf_counter() - started}, resume)
    if bar is not None:
        bar[0].stop()
    summary = {"iters": step, "planned_iters": iters, "stopped_at_deadline": stopped_early, "device": device,
               "batch_size": batch_size, "lr": lr, "ema_decay": ema_decay, "seed": seed,
               "demos": demos.source, "n_demos": len(demos.episodes), "windows": len(all_windows),
               "final_loss": float(np.mean(losses[-50:])) if losses else None, "train_time_s": round(time.perf_counter() - started, 1)}
    ema.eval().to("cpu")
    save_checkpoint(ema, out, {"training": summary}, half=half)
    fsio.write_text(out / "loss.json", json.dumps(losses))
    _plot_losses(losses, out / "loss.png")
    final = "n/a" if summary["final_loss"] is None else f"{summary['final_loss']:.4f}"
    early = f" (stopped at the {deadline_s:g} s deadline)" if stopped_early else ""
    log(f"trained {config.family} for {step} iterations in {summary['train_time_s']} s{early}; final loss {final}; "
        f"checkpoint {out}")
    return summary


def _bar(enabled: bool, total: int, done: int):
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[loss]}"),
                   TimeRemainingColumn())
    bar.start()
    return bar, bar.add_task("train", total=total, completed=done, loss="")


def _plot_losses(losses: list[float], path: Path) -> None:
    from evalsuite.plotting import subplots

    fig, ax = subplots(figsize=(5, 3))
    ax.plot(losses, lw=0.5, alpha=0.5)
    if len(losses) >= 50:
        ax.plot(np.convolve(losses, np.ones(50) / 50, mode="valid"), lw=1.2)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    with fsio.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
