"""``evalsuite serve``: any registered policy behind openpi's websocket protocol (evalsuite/wire.py),
for a GPU box serving CPU simulators, a robot's computer asking a policy, or any client that speaks
the protocol (openpi-client's ``WebsocketClientPolicy``).

Each connection is a parallel slot with its own episode state (the policy's per-slot generator
and the observation history a policy with ``n_obs_steps > 1`` needs, padded with the first frame
as the harness pads it). Such a policy is served one action per request, as LeRobot's
``select_action`` is: the server keeps the rest of the chunk and records every step's observation,
so the history holds the frames the harness would give it in-process (answering whole chunks, it
would see only the frames at which a chunk was asked for). A policy that sees one frame gets its
whole chunk in one answer. The requests of all connections that arrive while the policy is busy
are answered together by one batched ``act`` - batching never changes what an episode sees, since
policies keep their state per slot - and a batch that fails is asked again one row at a time, so
one episode's failure is not its batch-mates'. A slot's episode is seeded by the client's
``evalsuite.episode_start`` message (what ``remote:`` sends, so remote and in-process runs agree);
a client that never sends it gets seed ``seed + the connection's number``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import itertools
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import numpy as np
from numpy.typing import NDArray

from evalsuite import wire
from evalsuite.interfaces import EnvInfo, Policy


@dataclass
class _Slot:
    number: int
    history: deque[dict[str, NDArray[Any]]] | None = None
    queue: deque[NDArray[Any]] = field(default_factory=deque)  # step mode: the chunk's actions still to send


@dataclass
class _Request:
    slot: int
    observation: dict[str, NDArray[Any]]
    reply: asyncio.Future[NDArray[Any]] = field(repr=False)


class PolicyServer:
    """One policy for one task, served to any number of connections."""

    def __init__(self, policy: Policy, info: EnvInfo, metadata: dict[str, Any], seed: int = 0) -> None:
        self.policy, self.info, self.seed = policy, info, seed
        self.layout = wire.Layout.of(info.obs_shapes)
        self.n_obs = max(1, policy.requirements.n_obs_steps)
        self.metadata = {**metadata, wire.EPISODE_START: True, "wire": self.layout.to_dict()}
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="policy")  # one call at a time
        self._free: list[int] = []
        self._next_slot = itertools.count()
        self._connections = itertools.count()
        self._pending: list[_Request] = []
        self._draining = False
        self.calls = self.rows = 0

    async def _call(self, fn: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn)

    def _claim(self) -> int:
        return self._free.pop(0) if self._free else next(self._next_slot)

    async def handle(self, connection: Any) -> None:
        """One connection: the metadata, then request after request until the client leaves."""
        from websockets.exceptions import ConnectionClosed

        slot = _Slot(self._claim())
        number = next(self._connections)
        try:
            await connection.send(wire.pack(self.metadata))
            started = False
            async for frame in connection:
                if isinstance(frame, str):
                    raise wire.WireError("a text frame: requests are binary msgpack maps")
                message = wire.unpack(frame)
                if wire.EPISODE_START in message:
                    start = message[wire.EPISODE_START]
                    seed = start.get("seed") if isinstance(start, dict) else None
                    if not isinstance(seed, int):
                        raise wire.WireError(f"{wire.EPISODE_START} needs an integer seed, got {seed!r}")
                    await self._start(slot, seed)
                    started = True
                    await connection.send(wire.pack({"ok": True}))
                    continue
                if not started:
                    await self._start(slot, self.seed + number)
                    started = True
                actions = await self._act(slot, self.layout.decode(message, self.info.obs_shapes))
                await connection.send(wire.pack({"actions": actions}))
        except ConnectionClosed:
            pass
        except Exception:  # the protocol's way: the traceback as a text frame, then a close
            try:
                await connection.send(traceback.format_exc())
                await connection.close(1011, "internal error")
            except ConnectionClosed:
                pass
        finally:
            self._free.append(slot.number)
            self._free.sort()

    async def _start(self, slot: _Slot, seed: int) -> None:
        slot.history = None
        slot.queue.clear()
        await self._call(lambda: self.policy.reset(seed, slot.number))

    async def _act(self, slot: _Slot, observation: dict[str, NDArray[Any]]) -> NDArray[Any]:
        if slot.history is None:
            slot.history = deque([observation] * self.n_obs, maxlen=self.n_obs)
        else:
            slot.history.append(observation)
        if slot.queue:
            return slot.queue.popleft()[None]
        stacked = ({k: np.stack([o[k] for o in slot.history]) for k in observation} if self.n_obs > 1
                   else observation)
        reply: asyncio.Future[NDArray[Any]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Request(slot.number, stacked, reply))
        if not self._draining:
            self._draining = True
            asyncio.ensure_future(self._drain())
        chunk = await reply
        if self.n_obs == 1:
            return chunk
        slot.queue.extend(chunk[1:])
        return chunk[:1]

    async def _drain(self) -> None:
        """Answer what is pending with one call, then what arrived meanwhile, until nothing is left."""
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    chunks = await self._call(functools.partial(self._infer, batch))
                except Exception:
                    if len(batch) == 1:
                        raise
                    for request in batch:  # ask again one row at a time: one failure is not the batch's
                        try:
                            (chunk,) = await self._call(functools.partial(self._infer, [request]))
                            request.reply.set_result(chunk)
                        except Exception as exc:
                            request.reply.set_exception(exc)
                    continue
                for request, chunk in zip(batch, chunks, strict=True):
                    request.reply.set_result(chunk)
        except Exception as exc:
            for request in batch:
                if not request.reply.done():
                    request.reply.set_exception(exc)
        finally:
            self._draining = False
            if self._pending:  # arrived after the loop ended
                self._draining = True
                asyncio.ensure_future(self._drain())

    def _infer(self, batch: list[_Request]) -> list[NDArray[Any]]:
        observations = {k: np.stack([r.observation[k] for r in batch]) for k in batch[0].observation}
        out = np.asarray(self.policy.act(observations, np.asarray([r.slot for r in batch])))
        self.calls, self.rows = self.calls + 1, self.rows + len(batch)
        if out.ndim not in (2, 3) or out.shape[0] != len(batch):
            raise ValueError(f"the policy returned actions of shape {out.shape} for {len(batch)} rows")
        return [row if out.ndim == 3 else row[None] for row in out]

    def close(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)


def health_check(connection: Any, request: Any) -> Any:
    """``GET /healthz``: 200 while the server runs (websockets' process_request hook)."""
    if request.path == "/healthz":
        return connection.respond(HTTPStatus.OK, "OK\n")
    return None


async def run_server(server: PolicyServer, host: str, port: int, ready: Callable[[int], None]) -> None:
    """Serve until cancelled; ``ready(port)`` once listening (the port chosen when 0 was asked)."""
    from websockets.asyncio.server import serve

    async with serve(server.handle, host, port, process_request=health_check, max_size=wire.MAX_FRAME_BYTES,
                     compression=None) as listening:
        bound = next(iter(listening.sockets)).getsockname()[1]
        ready(int(bound))
        await asyncio.Future()  # until cancelled (Ctrl-C)
