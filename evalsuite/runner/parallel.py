"""Whole episodes in parallel: worker processes on this machine, or actors on a Ray cluster.

``LocalExecutor`` steps K episodes in lock-step in one process: right when one batched policy call
is the cost (dp3's ten network evaluations), wrong when the simulator is, since every step waits
for the slowest environment and for the policy. Here each worker runs its own ``LocalExecutor``
in-process - its own environments and its own copy of every policy, loaded once - on chunks of
trials sent by the driver, so the workers simulate and infer at the same time. The driver alone
writes the journal: records arrive per finished chunk, so a killed driver loses at most the chunks
in flight, which a resumed run simply runs again.

A worker that dies (killed, out of memory, a crashed simulator) or a chunk that outlives
``WALL_CLOCK_FACTOR`` x the episode time limit per trial breaks the pool: the chunks in flight are
run again one trial at a time, and the trial that breaks a worker alone is recorded as an
infrastructure error with its attempt number and retried by the harness like any other; nothing is
lost or counted twice.

Outcomes do not depend on which worker ran an episode: every episode is seeded by its trial.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from typing import Any

from numpy.typing import NDArray

from evalsuite.journal import ERROR, EpisodeRecord
from evalsuite.plan import Trial
from evalsuite.runner.envs import THREAD_VARS, thread_env
from evalsuite.runner.executor import WALL_CLOCK_FACTOR, LocalExecutor, RunContext, add_time, batches, no_time

STARTUP_S = 120.0  # a worker's start-up (imports, environments, policies) before its first chunk


def limit_threads(n: int) -> None:
    """Intra-op threads of torch and the BLAS libraries in this process (set before they start,
    and applied to torch at once if it is already loaded)."""
    os.environ.update({var: str(n) for var in THREAD_VARS})
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


@contextlib.contextmanager
def threads_limited(n: int) -> Iterator[None]:
    """``limit_threads`` for the duration of a run, then as it was."""
    torch_threads = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None
    with thread_env(n):
        limit_threads(n)
        try:
            yield
        finally:
            if torch_threads is not None:
                sys.modules["torch"].set_num_threads(torch_threads)


class Shard:
    """What runs in a worker: a lock-step executor over in-process environments, kept between
    chunks so environments and policies are built once."""

    def __init__(self, ctx: RunContext, batch_size: int, threads: int, record_actions: bool = False) -> None:
        limit_threads(threads)
        self.ctx = ctx
        self.executor = LocalExecutor(batch_size=batch_size, env_workers=0, record_actions=record_actions)

    def run(self, trials: list[Trial], attempts: dict[str, int]) -> tuple[list[EpisodeRecord], dict[str, float],
                                                                          dict[str, NDArray[Any]]]:
        """The chunk's records, where its time went (``executor.time_split``'s parts) and the actions
        its episodes took (when recorded)."""
        records: list[EpisodeRecord] = []
        self.executor.times, self.executor.actions = no_time(), {}
        self.executor.run(trials, replace(self.ctx, attempts=attempts), records.append)
        return records, self.executor.times, self.executor.actions

    def ping(self) -> int:
        return os.getpid()


def lost(trials: Sequence[Trial], attempts: dict[str, int], reason: str) -> list[EpisodeRecord]:
    """Infrastructure-error records for trials whose worker went away."""
    return [EpisodeRecord(trial_id=t.trial_id, task=t.task, policy_code=t.policy_code, ic_index=t.ic_index,
                          ic_seed=t.ic_seed, policy_seed=t.policy_seed, attempt=attempts.get(t.trial_id, 1),
                          status=ERROR, success=False, steps=0, episode_return=0.0, reason=reason, wall_time_s=0.0,
                          policy_fingerprint="") for t in trials]


# ---- worker processes on this machine -------------------------------------------------------------

_SHARD: Shard | None = None


def _start_shard(ctx: RunContext, batch_size: int, threads: int, record_actions: bool) -> None:
    global _SHARD
    _SHARD = Shard(ctx, batch_size, threads, record_actions)


def _run_chunk(trials: list[Trial], attempts: dict[str, int]) -> tuple[list[EpisodeRecord], dict[str, float],
                                                                       dict[str, NDArray[Any]]]:
    assert _SHARD is not None
    return _SHARD.run(trials, attempts)


@dataclass
class ProcessExecutor:
    """``workers`` processes, each running whole episodes (``batch_size`` at a time, lock-step
    within the process) with ``threads`` inference threads."""

    workers: int
    batch_size: int = 1
    threads: int = 1
    in_flight: int = 2  # chunks queued per worker, so none waits for the driver
    record_actions: bool = False  # keep each episode's actions in ``actions`` (as LocalExecutor)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        self._pool: ProcessPoolExecutor | None = None
        self._ctx_id: int | None = None
        self.times = no_time()  # summed over the workers' chunks
        self.actions: dict[str, NDArray[Any]] = {}

    def _start(self, ctx: RunContext) -> ProcessPoolExecutor:
        if self._pool is None or self._ctx_id != id(ctx.make_policy):
            self.close()
            import multiprocessing as mp

            self._pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"),
                                             initializer=_start_shard,
                                             initargs=(ctx, self.batch_size, self.threads, self.record_actions))
            self._ctx_id = id(ctx.make_policy)
        return self._pool

    def run(self, trials: Sequence[Trial], ctx: RunContext, on_record: Callable[[EpisodeRecord], None]) -> None:
        """Chunks in flight when a worker dies or hangs are run again, one trial at a time and one
        at a time, so only the trial that breaks a worker is charged (an infrastructure error,
        retried by the harness); the others cost nothing."""
        todo = batches(trials, self.batch_size)  # a chunk: one policy, one task
        suspects: list[list[Trial]] = []  # single trials to rerun alone after a broken pool
        running: dict[Any, tuple[list[Trial], float]] = {}
        limit = WALL_CLOCK_FACTOR * ctx.episode_timeout_s
        while todo or suspects or running:
            pool = self._start(ctx)
            capacity = 1 if suspects else self.workers * self.in_flight
            queue = suspects if suspects else todo
            try:
                while queue and len(running) < capacity:
                    chunk = queue.pop(0)
                    # the clock allows for the chunks queued ahead of it and a worker's start-up
                    ahead = len(running) // self.workers + 1
                    running[pool.submit(_run_chunk, chunk, {t.trial_id: ctx.attempts.get(t.trial_id, 1)
                                                            for t in chunk})] = (chunk, time.monotonic() + STARTUP_S
                                                                                 + limit * len(chunk) * (ahead - 1))
            except BrokenProcessPool:
                queue.insert(0, chunk)
            done, _ = wait(list(running), timeout=5.0, return_when=FIRST_COMPLETED)
            broken: list[list[Trial]] = []
            for future in done:
                chunk, _ = running.pop(future)
                try:
                    records, spent, actions = future.result()
                    add_time(self.times, spent)
                    self.actions.update(actions)
                except BrokenProcessPool:
                    broken.append(chunk)
                    continue
                except Exception as exc:  # the worker could not run the chunk at all
                    records = lost(chunk, ctx.attempts, f"infrastructure error: worker failed: {type(exc).__name__}")
                for r in records:
                    on_record(r)
            overdue = [c for f, (c, t0) in running.items() if time.monotonic() - t0 > limit * len(c)]
            if not (broken or overdue or (pool is self._pool and self._broken())):
                continue
            stuck = broken + [c for c, _ in running.values()]
            running.clear()
            self.close(kill=True)
            if len(stuck) == 1 and len(stuck[0]) == 1:  # alone, it broke its worker: it is the culprit
                why = "worker process died" if broken else (f"still running after {WALL_CLOCK_FACTOR} x the "
                                                            "episode time limit")
                for r in lost(stuck[0], ctx.attempts, f"infrastructure error: {why}"):
                    on_record(r)
            else:  # someone among these broke it: each again, alone
                suspects.extend([t] for c in stuck for t in c)

    def summary(self) -> dict[str, Any]:
        return {"time": dict(self.times)}

    def _broken(self) -> bool:
        return bool(self._pool is not None and getattr(self._pool, "_broken", False))

    def close(self, kill: bool = False) -> None:
        if self._pool is not None:
            if kill:
                for p in list((self._pool._processes or {}).values()):
                    p.kill()
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> ProcessExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
