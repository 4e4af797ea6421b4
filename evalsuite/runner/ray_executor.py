"""The same plan on a Ray cluster: environment actors that load each policy once, the driver alone
writing the journal.

    evalsuite evaluate ... executor=ray [ray_address=auto|HOST:PORT] [workers=8] [worker_cpus=1] [worker_gpus=0]
                           [inference_actors=1 inference_cpus=1 inference_gpus=1]

Each actor is a ``Shard`` (``evalsuite.runner.parallel``): its own environments and policies, whole
episodes in lock-step batches of ``batch_size``. The driver keeps two chunks of trials queued per
actor and writes every record as its chunk returns. An actor that dies (its node lost, its process
killed, out of memory) or whose chunk outlives the time limit is replaced; the trials it held are
recorded as infrastructure errors and retried by the harness - none lost, none counted twice.
Without an address Ray is started on this machine (loopback only) and stopped at the end.

With ``inference_actors=N`` the policies run on N policy servers instead (``runner.inference``),
each batching the requests of the environment actors it serves; environment actors then need no
GPU and one CPU each.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any

from evalsuite.errors import UsageError
from evalsuite.journal import EpisodeRecord
from evalsuite.plan import Trial
from evalsuite.runner.executor import WALL_CLOCK_FACTOR, RunContext, add_time, batches, no_time
from evalsuite.runner.parallel import Shard, lost

PLACEMENT_TIMEOUT_S = 180.0  # actors must start (imports, environments) within this


def _ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise UsageError("executor=ray needs Ray: pip install 'evalsuite[ray]'") from None
    return ray


@dataclass
class RayExecutor:
    address: str | None = None  # None: a local Ray on this machine; "auto" or HOST:PORT: a running cluster
    workers: int = 2
    batch_size: int = 1
    worker_cpus: float = 1.0
    worker_gpus: float = 0.0
    in_flight: int = 2
    inference_actors: int = 0  # > 0: policies run on these servers, environment actors only simulate
    inference_cpus: float = 1.0
    inference_gpus: float = 0.0
    progress: Callable[[dict[str, Any]], None] | None = None  # called with counts as records arrive
    _actors: list[Any] = field(default_factory=list)
    _started_ray: bool = False
    _remote: Any = None
    _servers: list[Any] = field(default_factory=list)
    _next_shard: int = 0
    times: dict[str, float] = field(default_factory=no_time)  # summed over the actors' chunks

    def _connect(self) -> None:
        ray = _ray()
        if ray.is_initialized():
            return
        env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in [os.getcwd(), *sys.path] if p and os.path.isdir(p)),
                            "RAY_DEDUP_LOGS": "0"}}
        try:
            if self.address is None:
                cpus = self.workers * self.worker_cpus + self.inference_actors * self.inference_cpus
                ray.init(num_cpus=max(1, math.ceil(cpus)), include_dashboard=False,
                         _node_ip_address="127.0.0.1", runtime_env=env, log_to_driver=False,
                         configure_logging=False)
                self._started_ray = True
            else:
                ray.init(address=self.address, runtime_env=env, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UsageError(f"ray_address={self.address!r}: cannot connect to a Ray cluster ({exc}); accepted: "
                             "auto (RAY_ADDRESS or a local `ray start`), HOST:PORT, or leave it out for a local Ray"
                             ) from None

    def _new_actor(self, ctx: RunContext) -> Any:  # a Ray actor handle (untyped)
        if self._remote is None:  # the actor class, declared to Ray once
            self._remote = _ray().remote(num_cpus=self.worker_cpus, num_gpus=self.worker_gpus, max_restarts=0)(Shard)
        if self._servers:  # this actor's policies are proxies to one server
            from evalsuite.runner.inference import RemotePolicies

            ctx = replace(ctx, make_policy=RemotePolicies(self._servers[self._next_shard % len(self._servers)],
                                                          self._next_shard))
            self._next_shard += 1
        return self._remote.remote(ctx, self.batch_size, max(1, int(self.worker_cpus)))

    def _start_servers(self, ctx: RunContext) -> None:
        """Policy servers, restarted by Ray if they die (their policies rebuilt from the factory)."""
        from evalsuite.runner.inference import InferenceServer

        server = _ray().remote(num_cpus=self.inference_cpus, num_gpus=self.inference_gpus, max_restarts=-1,
                               max_task_retries=0, max_concurrency=1000)(InferenceServer)
        full_batch = math.ceil(self.workers / self.inference_actors) * self.batch_size
        self._servers = [server.remote(ctx.make_policy, max(1, int(self.inference_cpus)), full_batch)
                         for _ in range(self.inference_actors)]

    def _start(self, ctx: RunContext) -> None:
        self._connect()
        if getattr(self, "_ctx_id", None) != id(ctx.make_policy):
            self.close_actors()
            self._ctx_id = id(ctx.make_policy)
            if self.inference_actors:
                self._start_servers(ctx)
        while len(self._actors) < self.workers:
            self._actors.append(self._new_actor(ctx))
        ray = _ray()
        pending = [a.ping.remote() for a in self._actors] + [s.stats.remote() for s in self._servers]
        ready, _ = ray.wait(pending, num_returns=len(pending), timeout=PLACEMENT_TIMEOUT_S)
        if len(ready) < len(pending):  # chunks for an actor the cluster cannot place would wait forever
            self.close_actors()
            raise UsageError(f"workers={self.workers} with worker_cpus={self.worker_cpus:g} worker_gpus="
                             f"{self.worker_gpus:g}, inference_actors={self.inference_actors} with inference_cpus="
                             f"{self.inference_cpus:g} inference_gpus={self.inference_gpus:g}: only {len(ready)} "
                             f"of {len(pending)} actors could be placed within "
                             f"{PLACEMENT_TIMEOUT_S:g} s; the cluster has {ray.cluster_resources()}")

    def run(self, trials: Sequence[Trial], ctx: RunContext, on_record: Callable[[EpisodeRecord], None]) -> None:
        ray = _ray()
        from ray.exceptions import RayError

        self._start(ctx)
        together = self.workers if self.inference_actors else 1  # actors sharing a server: the same policy at once
        dispatch = _Dispatch(self, ray, RayError, ctx, on_record, batches(trials, self.batch_size, together))
        while dispatch.todo or dispatch.running:
            dispatch.fill()
            ready, _ = ray.wait(list(dispatch.running), num_returns=1, timeout=5.0)
            for ref in ready:
                dispatch.collect(ref)
            dispatch.expire()

    def summary(self) -> dict[str, Any]:
        """Where the actors' time went; per policy server (this incarnation): batched calls, rows
        served, the largest batch."""
        if not self._servers:
            return {"time": dict(self.times)}
        from ray.exceptions import RayError

        try:
            return {"time": dict(self.times),
                    "inference_servers": _ray().get([s.stats.remote() for s in self._servers], timeout=30)}
        except RayError as exc:
            return {"time": dict(self.times), "inference_servers": f"unavailable ({type(exc).__name__})"}

    def close_actors(self) -> None:
        if self._actors or self._servers:
            ray = _ray()
            for a in [*self._actors, *self._servers]:
                with contextlib.suppress(Exception):
                    ray.kill(a, no_restart=True)
            self._actors, self._servers = [], []

    def close(self) -> None:
        self.close_actors()
        if self._started_ray:
            _ray().shutdown()
            self._started_ray = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class _Dispatch:
    """One ``RayExecutor.run``: chunks of trials kept queued on the actors, their records passed on as
    they return; an actor lost or over its time limit is replaced and its chunks recorded as lost."""

    executor: RayExecutor
    ray: ModuleType
    ray_error: type[Exception]
    ctx: RunContext
    on_record: Callable[[EpisodeRecord], None]
    todo: list[list[Trial]]
    running: dict[Any, tuple[int, list[Trial], float]] = field(default_factory=dict)  # ref -> (actor, chunk, start)
    done_count: int = 0

    def fill(self) -> None:
        """Keep ``in_flight`` chunks queued on every actor while there are chunks to run."""
        for i in range(len(self.executor._actors)):
            while self.todo and sum(1 for j, _, _ in self.running.values() if j == i) < self.executor.in_flight:
                self.submit(i)

    def submit(self, i: int) -> None:
        chunk = self.todo.pop(0)
        attempts = {t.trial_id: self.ctx.attempts.get(t.trial_id, 1) for t in chunk}
        self.running[self.executor._actors[i].run.remote(chunk, attempts)] = (i, chunk, time.monotonic())

    def collect(self, ref: Any) -> None:
        """The records of a finished chunk; a chunk whose actor is gone replaces that actor."""
        i, chunk, _ = self.running.pop(ref)
        try:
            records, spent, _ = self.ray.get(ref, timeout=60)  # actions: not recorded on Ray
        except self.ray_error as exc:  # the actor, its node or the object is gone: charge, replace
            self.running[ref] = (i, chunk, 0.0)  # charged with the actor's other chunks below
            self.replace_actor(i, f"Ray worker lost ({type(exc).__name__})")
            return
        add_time(self.executor.times, spent)
        for r in records:
            self.on_record(r)
        self.done_count += len(records)
        if self.executor.progress:
            self.executor.progress({"episodes": self.done_count,
                                    "in_flight": sum(len(c) for _, c, _ in self.running.values())})

    def expire(self) -> None:
        """Replace the actors whose chunks outlive the time limit."""
        limit = WALL_CLOCK_FACTOR * self.ctx.episode_timeout_s
        for ref, (i, chunk, t0) in list(self.running.items()):
            if ref in self.running and time.monotonic() - t0 > limit * len(chunk):
                self.replace_actor(i, f"chunk still running after {WALL_CLOCK_FACTOR} x the episode time limit "
                                      "per trial")

    def replace_actor(self, i: int, why: str) -> None:
        for ref, (j, chunk, _) in list(self.running.items()):
            if j == i:
                self.running.pop(ref)
                for r in lost(chunk, self.ctx.attempts, f"infrastructure error: {why}"):
                    self.on_record(r)
        with contextlib.suppress(Exception):  # already gone
            self.ray.kill(self.executor._actors[i], no_restart=True)
        self.executor._actors[i] = self.executor._new_actor(self.ctx)
