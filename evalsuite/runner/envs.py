"""Environment pools: one environment per (parallel slot, task), stepped as a batch.

``InProcessEnvs`` steps in the main process (right when the policy is the cost, as on
Meta-World); ``SubprocessEnvs`` spreads the slots over worker processes (right when the simulator
is the cost, as on robosuite). Both answer every request per slot with a result or an exception,
so one broken episode never stops the others.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import time
import traceback
from collections.abc import Iterator
from contextlib import AbstractContextManager
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import numpy as np
from numpy.typing import NDArray

from evalsuite.interfaces import EnvInfo, InfrastructureError, Observation, StepResult, TaskEnv
from evalsuite.specs import SuiteSpec, load_entry_point

ResetResult = tuple[Observation, dict[str, Any]]


class EpisodeError(Exception):
    """An environment failure, carrying a one-line reason (also across processes) and whose fault
    it is: ``policy`` (the simulator failed on the policy's action) or ``infrastructure``."""

    def __init__(self, reason: str, policy_fault: bool = False) -> None:
        super().__init__(reason)
        self.policy_fault = policy_fault

    def __reduce__(self) -> tuple[type[EpisodeError], tuple[str, bool]]:
        return EpisodeError, (str(self), self.policy_fault)


def _reason(exc: BaseException, where: bool = True) -> str:
    """One line: exception type, message and (``where``) the file and line it came from."""
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ and where else []
    at = f" at {last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno}" if last else ""
    return f"{type(exc).__name__}: {exc}{at}"


def build_env(suite: SuiteSpec, task_id: str, max_steps: int) -> TaskEnv:
    factory = load_entry_point(suite.entry_point)
    env: TaskEnv = factory(task_id, max_steps=max_steps, **suite.kwargs)
    return env


class InProcessEnvs:
    def __init__(self, suite: SuiteSpec, max_steps: dict[str, int]) -> None:
        self.suite = suite
        self.max_steps = max_steps
        self._envs: dict[tuple[int, str], TaskEnv] = {}
        self._task_of: dict[int, str] = {}
        self.build_s = 0.0  # seconds spent building environments

    def _env(self, slot: int, task: str) -> TaskEnv:
        if (slot, task) not in self._envs:
            started = time.perf_counter()
            self._envs[slot, task] = build_env(self.suite, task, self.max_steps[task])
            self.build_s += time.perf_counter() - started
        return self._envs[slot, task]

    def warm(self, pairs: list[tuple[int, str]]) -> None:
        """Build the environments of these (slot, task) pairs now rather than at first use."""
        for slot, task in pairs:
            self._env(slot, task)

    def reset(self, requests: dict[int, tuple[str, int, int]]) -> dict[int, ResetResult | EpisodeError]:
        out: dict[int, ResetResult | EpisodeError] = {}
        for slot, (task, ic_seed, ic_index) in requests.items():
            self._task_of[slot] = task
            try:
                out[slot] = self._env(slot, task).reset(ic_seed, ic_index)
            except Exception as exc:
                out[slot] = EpisodeError(f"reset failed: {_reason(exc)}")
        return out

    def step(self, actions: dict[int, NDArray[Any]]) -> dict[int, StepResult | EpisodeError]:
        out: dict[int, StepResult | EpisodeError] = {}
        for slot, action in actions.items():
            try:
                result = self._envs[slot, self._task_of[slot]].step(action)
            except InfrastructureError as exc:
                out[slot] = EpisodeError(f"infrastructure error in step: {_reason(exc)}")
            except Exception as exc:  # the simulator failed on the policy's action
                out[slot] = EpisodeError(f"simulator failed after the policy's action: {_reason(exc)}",
                                         policy_fault=True)
            else:
                unstable = [k for k, v in result.obs.items()
                            if np.asarray(v).dtype.kind == "f" and not np.isfinite(v).all()]
                out[slot] = (EpisodeError(f"simulator unstable after the policy's action: non-finite {unstable[0]!r}",
                                          policy_fault=True) if unstable else result)
        return out

    def close(self) -> None:
        for env in self._envs.values():
            with contextlib.suppress(Exception):  # closing is best effort; results are already journaled
                env.close()
        self._envs.clear()


def _worker(conn: Connection, suite: SuiteSpec, max_steps: dict[str, int]) -> None:
    envs = InProcessEnvs(suite, max_steps)
    try:
        while True:
            cmd, payload = conn.recv()
            if cmd == "reset":
                conn.send(envs.reset(payload))
            elif cmd == "step":
                conn.send(envs.step(payload))
            elif cmd == "warm":
                envs.warm(payload)
                conn.send(None)
            else:
                break
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        envs.close()


THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    """Environment variables set for what starts inside (child processes), then as they were."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def thread_env(n: int) -> AbstractContextManager[None]:
    """The BLAS/OpenMP thread variables at ``n`` for what starts inside (child processes, torch
    loaded later), then as they were."""
    return environ({k: str(n) for k in THREAD_VARS})


class SubprocessEnvs:
    """Slots spread over ``n_workers`` processes (slot s lives in worker s % n_workers)."""

    build_s = 0.0  # environments are built in the workers, within their first reset: not told apart

    def __init__(self, suite: SuiteSpec, max_steps: dict[str, int], n_workers: int) -> None:
        self.suite, self.max_steps, self.n_workers = suite, max_steps, n_workers
        self._ctx = mp.get_context("spawn")  # never fork a process that holds torch threads
        self._workers: list[tuple[BaseProcess, Connection] | None] = [None] * n_workers

    def _conn(self, w: int) -> Connection:
        """The connection of worker ``w``, started now if it is not running."""
        worker = self._workers[w]
        if worker is None:
            parent, child = self._ctx.Pipe()
            proc = self._ctx.Process(target=_worker, args=(child, self.suite, self.max_steps), daemon=True)
            with thread_env(1):  # a simulator worker needs one core, not thread pools competing with others
                proc.start()
            child.close()
            worker = self._workers[w] = (proc, parent)
        return worker[1]

    def _started(self, w: int) -> Connection:
        """The connection of worker ``w``, which a request has just been sent to."""
        worker = self._workers[w]
        assert worker is not None, f"environment worker {w} is not running"
        return worker[1]

    def _call(self, cmd: str, per_slot: dict[int, Any]) -> dict[int, Any]:
        by_worker: dict[int, dict[int, Any]] = {}
        for slot, item in per_slot.items():
            by_worker.setdefault(slot % self.n_workers, {})[slot] = item
        for w, items in by_worker.items():
            self._conn(w).send((cmd, items))
        out: dict[int, Any] = {}
        for w, items in by_worker.items():
            try:
                out.update(self._started(w).recv())
            except (EOFError, OSError) as exc:  # the worker died: its episodes fail, it restarts
                self._kill(w)
                out.update({slot: EpisodeError(f"environment worker died: {exc!r}") for slot in items})
        return out

    def warm(self, pairs: list[tuple[int, str]]) -> None:
        by_worker: dict[int, list[tuple[int, str]]] = {}
        for slot, task in pairs:
            by_worker.setdefault(slot % self.n_workers, []).append((slot, task))
        for w, items in by_worker.items():  # workers build in parallel
            self._conn(w).send(("warm", items))
        for w in by_worker:
            self._started(w).recv()

    def reset(self, requests: dict[int, tuple[str, int, int]]) -> dict[int, ResetResult | EpisodeError]:
        return self._call("reset", requests)

    def step(self, actions: dict[int, NDArray[Any]]) -> dict[int, StepResult | EpisodeError]:
        return self._call("step", actions)

    def _kill(self, w: int) -> None:
        worker = self._workers[w]
        if worker is not None:
            proc, conn = worker
            proc.kill()
            proc.join()
            conn.close()
            self._workers[w] = None

    def close(self) -> None:
        for w, entry in enumerate(self._workers):
            if entry is not None:
                try:
                    entry[1].send(("close", None))
                    entry[0].join(timeout=5)
                except (OSError, BrokenPipeError):
                    pass
                self._kill(w)


def env_info(suite: SuiteSpec, task_id: str, max_steps: int) -> EnvInfo:
    env = build_env(suite, task_id, max_steps)
    try:
        return env.info
    finally:
        env.close()
