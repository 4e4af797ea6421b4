"""``policies=[remote:ws://HOST:PORT]``: a policy served anywhere, in its own environment, over
openpi's websocket protocol (evalsuite/wire.py), evaluated like a built-in.

Each parallel episode (slot) has its own connection, opened when the episode starts: a stateless
server sees independent requests; a stateful one learns that an episode started from the new
connection (and its seed, when its metadata asks for ``evalsuite.episode_start``). The rows of a
batch are sent together, then their replies read, so a server that serves connections
concurrently (or batches them, as ``evalsuite serve`` does) works on all of them at once.

Faults: a server that cannot be reached, does not answer in ``timeout`` seconds or drops the
connection is an infrastructure error (the episode is retried, the server's /healthz asked again
for the message); a traceback frame, a frame that is not the protocol, or actions that are
non-finite or misshapen are the policy's failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import urllib.request
import weakref
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from numpy.typing import NDArray

from evalsuite import wire
from evalsuite.errors import UsageError
from evalsuite.interfaces import InfrastructureError, Observation, PolicyRequirements

CONNECT_TIMEOUT_S = 10.0


class ServerError(RuntimeError):
    """The server answered with a traceback frame: the policy failed."""


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise UsageError(f"remote: url {url!r} is not a websocket address; e.g. remote:ws://127.0.0.1:8000")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise UsageError(f"remote: url {url!r} has a port that is not a number") from None
    return url


def health(url: str, timeout: float = 2.0) -> str:
    """What the server's ``GET /healthz`` says, for an infrastructure error's message."""
    parts = urlsplit(url)
    scheme = "https" if parts.scheme == "wss" else "http"
    try:
        with urllib.request.urlopen(f"{scheme}://{parts.netloc}/healthz", timeout=timeout) as answer:
            return f"/healthz answered {answer.status}"
    except Exception as exc:  # HTTPError, URLError, timeouts: all mean "not healthy now"
        return f"/healthz: {getattr(exc, 'code', None) or type(exc).__name__}"


class RemotePolicy:
    """The client. ``n_action_steps``: how much of each returned chunk is executed before asking
    again (0: all of it). ``rename_map``: evalsuite's wire names = the server's, joined by ``+``. ``timeout``: seconds
    to wait for one reply."""

    def __init__(self, task: Any, suite: Any, url: str = "", n_action_steps: int = 0, rename_map: str = "",
                 timeout: float = 30.0, instruction: str = "") -> None:
        if not url:
            raise UsageError("remote: give the server's address, e.g. remote:ws://127.0.0.1:8000")
        if n_action_steps < 0:
            raise UsageError(f"remote: n_action_steps={n_action_steps} must be >= 0 (0: the whole chunk)")
        if timeout <= 0:
            raise UsageError(f"remote: timeout={timeout:g} must be > 0 (seconds to wait for one reply)")
        self.url, self.n_action_steps, self.timeout = check_url(url), n_action_steps, float(timeout)
        self.rename = wire.parse_rename_map(rename_map)
        self.instruction = instruction or task.instruction or task.id.replace("-", " ")
        self.metadata = self._hello()
        info = _env_info(suite, task)
        self.layout = wire.Layout.of(info.obs_shapes)
        declared = self.metadata.get("action_dim")
        action_dim = int(declared) if isinstance(declared, int) and declared > 0 else info.action_dim
        contract = self.metadata.get("contract")
        self.requirements = PolicyRequirements(
            obs_shapes={}, action_dim=action_dim, chunked=True,
            notes={"server_metadata": _jsonable(self.metadata), "wire": self.layout.to_dict(),
                   "instruction": self.instruction, "n_action_steps": n_action_steps or "all"},
            contract=_suite_names(contract, self.layout) if isinstance(contract, dict) else {},
        )
        self._episode_start = bool(self.metadata.get(wire.EPISODE_START))
        self._connections: dict[int, Any] = {}
        weakref.finalize(self, _close_all, self._connections)  # at exit too, before websockets is torn down
        self._failed: dict[int, Exception] = {}  # a slot whose server failed: the same answer until it resets
        self._ready: dict[int, NDArray[Any]] = {}  # chunks received in a batch that failed for another slot
        digest = json.dumps([self.url, _jsonable(self.metadata), n_action_steps, self.rename, self.instruction],
                            sort_keys=True, default=str)
        self._fingerprint = hashlib.sha256(digest.encode()).hexdigest()[:16]

    def _connect(self) -> tuple[Any, dict[str, Any]]:
        """A connection and the metadata the server sends first."""
        from websockets.sync.client import connect

        try:
            connection = connect(self.url, open_timeout=CONNECT_TIMEOUT_S, max_size=wire.MAX_FRAME_BYTES,
                                 compression=None).__enter__()  # held across calls, closed by reset/close
        except Exception as exc:
            raise InfrastructureError(f"cannot connect to the policy server: {type(exc).__name__}: "
                                      f"{_first_line(exc)} ({health(self.url)})") from None
        try:
            return connection, self._receive(connection)
        except Exception:
            connection.close()
            raise

    def _hello(self) -> dict[str, Any]:
        """The server's metadata, read once when the policy is built; an unreachable server is a
        usage error here (one line, before any episode), an infrastructure error later."""
        try:
            connection, metadata = self._connect()
        except InfrastructureError as exc:
            raise UsageError(f"remote: {exc}; is the server running at {self.url}?") from None
        except (ServerError, wire.WireError) as exc:
            raise UsageError(f"remote: the server at {self.url} did not send its metadata: {exc}") from None
        connection.close()
        return metadata

    def _receive(self, connection: Any) -> dict[str, Any]:
        from websockets.exceptions import ConnectionClosed

        try:
            frame = connection.recv(timeout=self.timeout)
        except TimeoutError:
            raise InfrastructureError(f"no reply from the policy server in {self.timeout:g} s "
                                      f"({health(self.url)})") from None
        except ConnectionClosed as exc:
            if 1009 in (getattr(exc.sent, "code", None), getattr(exc.rcvd, "code", None)):  # a frame over max_size
                raise wire.WireError(f"the server sent a frame over {wire.MAX_FRAME_BYTES:,} bytes") from None
            raise InfrastructureError(f"the policy server closed the connection ({health(self.url)})") from None
        if isinstance(frame, str):
            lines = [line for line in frame.strip().splitlines() if line.strip()]
            raise ServerError(f"the server failed: {lines[-1][:300] if lines else '(empty traceback)'}")
        return wire.unpack(frame)

    def reset(self, seed: int, slot: int) -> None:
        """A new connection for the slot's new episode (and its seed, where the server asks for it)."""
        old = self._connections.pop(slot, None)
        if old is not None:
            old.close()
        self._failed.pop(slot, None)
        self._ready.pop(slot, None)
        connection, _ = self._connect()
        self._connections[slot] = connection
        if self._episode_start:
            try:
                connection.send(wire.pack({wire.EPISODE_START: {"seed": int(seed)}}))
                self._receive(connection)
            except Exception as exc:
                self._fail(slot, exc)
                raise

    def act(self, observations: Observation, slots: NDArray[Any]) -> NDArray[Any]:
        rows = [int(s) for s in slots]
        asked = [slot for slot in rows if slot not in self._ready and slot not in self._failed]
        for row, slot in enumerate(rows):
            if slot not in asked:
                continue
            message = self.layout.encode({k: v[row] for k, v in observations.items()}, self.instruction)
            try:
                self._connection(slot).send(wire.pack(wire.renamed(message, self.rename)))
            except Exception as exc:
                self._fail(slot, _sending_fault(exc, self.url))
        for slot in asked:
            if slot in self._failed:
                continue
            try:
                chunk = wire.actions_of(self._receive(self._connections[slot]))
                if chunk.ndim != 2:
                    raise wire.WireError(f"actions of shape {chunk.shape}, expected (chunk, action_dim)")
                self._ready[slot] = chunk[: self.n_action_steps] if self.n_action_steps else chunk
            except Exception as exc:
                self._fail(slot, exc)
        failed = [slot for slot in rows if slot in self._failed]
        if failed:
            raise self._failed[failed[0]]
        chunks = [self._ready.pop(slot) for slot in rows]
        horizon = min(len(c) for c in chunks)  # rows may differ; execute what every row has
        return np.stack([np.asarray(c[:horizon], dtype=np.float64) for c in chunks])

    def _connection(self, slot: int) -> Any:
        if slot not in self._connections:
            raise InfrastructureError("no connection for this episode (reset was not called)")
        return self._connections[slot]

    def _fail(self, slot: int, exc: Exception) -> None:
        """Remember a slot's fault (its batch-mates keep their chunks) and drop its connection."""
        self._failed[slot] = exc
        connection = self._connections.pop(slot, None)
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()

    def fingerprint(self) -> str:
        return self._fingerprint

    def close(self) -> None:
        _close_all(self._connections)


def _close_all(connections: dict[int, Any]) -> None:
    for connection in connections.values():
        with contextlib.suppress(Exception):
            connection.close()
    connections.clear()


def _sending_fault(exc: Exception, url: str) -> Exception:
    if isinstance(exc, InfrastructureError | wire.WireError):
        return exc
    return InfrastructureError(f"the policy server connection failed: {type(exc).__name__} ({health(url)})")


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [""])[0][:200]


def _env_info(suite: Any, task: Any) -> Any:
    from evalsuite.runner.envs import env_info

    return env_info(suite, task.id, task.max_steps)


def _jsonable(value: Any) -> Any:
    """Metadata as JSON can hold it (arrays as lists, bytes as their length)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= 64 else f"array{list(value.shape)}"
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _suite_names(contract: dict[str, Any], layout: wire.Layout) -> dict[str, Any]:
    """A server's contract, stated under wire names, under the suite's keys (so it is checked
    against the suite's): ``observation.images.<camera>.*`` -> ``<camera>_image.*``, and
    ``observation.state.*`` -> the state's key when the state is one key."""
    names = {wire.IMAGES + camera: key for key, camera in layout.images}
    names.update({f"observation.{key}": key for key in layout.other})
    if len(layout.state) == 1:
        names[wire.STATE] = layout.state[0][0]
    out: dict[str, Any] = {}
    for field, value in contract.items():
        base, _, attribute = str(field).rpartition(".")
        out[f"{names[base]}.{attribute}" if base in names else str(field)] = _jsonable(value)
    return out


def remote(task: Any, suite: Any, url: str = "", n_action_steps: int = 0, rename_map: str = "",
           timeout: float = 30.0, instruction: str = "") -> RemotePolicy:
    return RemotePolicy(task, suite, url=url, n_action_steps=n_action_steps, rename_map=rename_map,
                        timeout=timeout, instruction=instruction)
