"""Policy servers for ``executor=ray``: many environment actors, few inference actors.

The shape of large-behaviour-model evaluation: simulators are cheap and many, the policy is
expensive and wants a GPU and big batches. With ``inference_actors=N`` each environment actor
(a ``Shard``) gets ``RemotePolicy`` proxies instead of policies; every ``reset``/``act`` goes to
one ``InferenceServer``, which holds each (code, task) policy once and answers the ``act``
requests that arrive together - from all its environment actors - with one batched call.

Per-episode state (noise generators, observation history) lives on the server, keyed by slot;
each environment actor's slots are offset so they never collide. Batching does not change what an
episode sees: policies keep their state per slot and seed it from the episode (``reset``).

Faults: a server that dies is restarted by Ray with its policies rebuilt; calls made meanwhile,
and later calls for episodes whose state died with it, raise ``InfrastructureError`` - those
episodes are recorded as infrastructure errors and retried, none lost, none counted twice.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from numpy.typing import NDArray

from evalsuite.interfaces import InfrastructureError, Observation, PolicyRequirements

if TYPE_CHECKING:
    from evalsuite.runner.executor import PolicyFactory

Answer = tuple[str, Any]  # ("ok", value) or ("raise", the exception to raise where it is received)

SLOTS_PER_SHARD = 1_000_000  # slot offset between environment actors
# How long the first queued request waits for the others to make a full batch. Without a window two
# actors fall out of phase (one steps while the other is served) and their requests never meet.
BATCH_WINDOW_S = 0.01


class InferenceServer:
    """Runs in a Ray actor (async: requests are served concurrently, so they can be batched)."""

    def __init__(self, make_policy: PolicyFactory, threads: int, full_batch: int) -> None:
        from evalsuite.runner.parallel import limit_threads

        limit_threads(threads)
        self.make_policy, self.full_batch = make_policy, full_batch  # rows: its actors' slots together
        self._arrived = asyncio.Event()
        self._queues: dict[tuple[str, str], list[tuple[Observation, NDArray[Any], asyncio.Future[Answer]]]] = {}
        self._draining: set[tuple[str, str]] = set()
        self._episodes: set[tuple[str, str, int]] = set()  # slots reset on this incarnation
        self.calls = self.rows = self.max_rows = self.max_requests = 0

    async def describe(self, code: str, task: str) -> Answer:
        return _guarded(lambda: (self.make_policy(code, task).requirements, self.make_policy(code, task).fingerprint()))

    async def reset(self, code: str, task: str, seed: int, slot: int) -> Answer:
        self._episodes.add((code, task, slot))
        return _guarded(lambda: self.make_policy(code, task).reset(seed, slot))

    async def episode_info(self, code: str, task: str, slot: int) -> Answer:
        from evalsuite.runner.executor import EpisodeInfoPolicy

        policy = self.make_policy(code, task)
        return _guarded(lambda: cast(EpisodeInfoPolicy, policy).episode_info(slot) if policy.requirements.episode_info
                        else {})

    async def act(self, code: str, task: str, observations: Observation, slots: NDArray[Any]) -> Answer:
        if any((code, task, int(s)) not in self._episodes for s in slots):
            return "raise", InfrastructureError("the inference server restarted mid-episode; the episode's state is lost")
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        key = (code, task)
        self._queues.setdefault(key, []).append((observations, slots, future))
        self._arrived.set()
        if key not in self._draining:
            self._draining.add(key)
            asyncio.ensure_future(self._drain(key))
        return await future

    async def _drain(self, key: tuple[str, str]) -> None:
        """Answer every queued request of one policy with one call; requests that arrive while it
        computes form the next batch."""
        loop = asyncio.get_running_loop()
        try:
            while self._queues.get(key):
                deadline = loop.time() + BATCH_WINDOW_S
                while sum(len(s) for _, s, _ in self._queues[key]) < self.full_batch and loop.time() < deadline:
                    self._arrived.clear()
                    try:
                        await asyncio.wait_for(self._arrived.wait(), deadline - loop.time())
                    except TimeoutError:
                        break
                batch, self._queues[key] = self._queues[key], []
                obs = {k: np.concatenate([o[k] for o, _, _ in batch]) for k in batch[0][0]}
                slots = np.concatenate([s for _, s, _ in batch])
                answer = _guarded(functools.partial(self._act_now, key, obs, slots))
                self.calls, self.rows = self.calls + 1, self.rows + len(slots)
                self.max_rows, self.max_requests = max(self.max_rows, len(slots)), max(self.max_requests, len(batch))
                rows = answer[0] == "ok" and answer[1].ndim > 0 and len(answer[1]) == len(slots)
                start = 0
                for _, s, future in batch:  # a wrong-shaped answer goes back whole: the runner refuses it
                    if not future.done():
                        future.set_result(("ok", answer[1][start:start + len(s)]) if rows else answer)
                    start += len(s)
        finally:
            self._draining.discard(key)

    def _act_now(self, key: tuple[str, str], obs: Observation, slots: NDArray[Any]) -> NDArray[Any]:
        """One batched call of a policy."""
        return np.asarray(self.make_policy(*key).act(obs, slots))

    async def stats(self) -> dict[str, int]:
        return {"calls": self.calls, "rows": self.rows, "max_rows": self.max_rows, "max_requests": self.max_requests,
                "pid": os.getpid()}


def _guarded(call: Callable[[], Any]) -> Answer:
    """A policy's exception travels back as a value, so the environment actor re-raises exactly
    it (a policy error stays a policy error; Ray would wrap it)."""
    try:
        return "ok", call()
    except Exception as exc:
        return "raise", exc


def _answer(ref: Any) -> Any:  # ref: a Ray object reference of an Answer
    import ray
    from ray.exceptions import RayError

    try:
        kind, value = ray.get(ref)
    except RayError as exc:
        raise InfrastructureError(f"inference server lost ({type(exc).__name__})") from None
    if kind == "raise":
        raise value
    return value


class RemotePolicy:
    """A policy whose every call runs on an inference server (``Policy`` protocol)."""

    def __init__(self, server: Any, code: str, task: str, offset: int) -> None:  # server: a Ray actor handle
        self.server, self.code, self.task, self.offset = server, code, task, offset
        self.requirements: PolicyRequirements
        self._fingerprint: str
        self.requirements, self._fingerprint = _answer(server.describe.remote(code, task))

    def reset(self, seed: int, slot: int) -> None:
        _answer(self.server.reset.remote(self.code, self.task, seed, slot + self.offset))

    def act(self, observations: Observation, slots: NDArray[Any]) -> NDArray[Any]:
        actions = _answer(self.server.act.remote(self.code, self.task, observations, np.asarray(slots) + self.offset))
        return cast(NDArray[Any], actions)

    def episode_info(self, slot: int) -> dict[str, Any]:
        info = _answer(self.server.episode_info.remote(self.code, self.task, slot + self.offset))
        return cast(dict[str, Any], info)

    def fingerprint(self) -> str:
        return self._fingerprint


@dataclass
class RemotePolicies:
    """The ``make_policy`` of an environment actor served by ``server``: one proxy per (code, task)."""

    server: Any
    shard: int
    _cache: dict[tuple[str, str], RemotePolicy] | None = None

    def __call__(self, code: str, task: str) -> RemotePolicy:
        if self._cache is None:
            self._cache = {}
        if (code, task) not in self._cache:
            self._cache[code, task] = RemotePolicy(self.server, code, task, self.shard * SLOTS_PER_SHARD)
        return self._cache[code, task]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cache": None}
