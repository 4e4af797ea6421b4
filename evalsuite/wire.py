"""openpi's websocket policy protocol, as evalsuite speaks it (``policies=[remote:ws://...]`` and
``evalsuite serve``): frames, arrays, and the names observations travel under.

The protocol (openpi's ``serving/websocket_policy_server.py`` and ``openpi_client``): on connect
the server sends one binary frame, a msgpack map of metadata; each request is a binary msgpack map
of the observation; the reply is a msgpack map with ``actions`` shaped ``(H, action_dim)`` or
``action`` shaped ``(action_dim,)``; a server-side exception arrives as a text frame (a traceback)
followed by a close. numpy arrays travel as maps ``{"__ndarray__": True, "data": bytes, "dtype":
str, "shape": [...]}`` with bytes keys, as openpi's msgpack_numpy packs them (either key kind is
read). Only plain dtypes are accepted, never objects: a frame from a server is data, never code.

Observations travel under LeRobot's names: the suite's vectors concatenated (in the suite's order)
as ``observation.state`` (float32), each camera image as ``observation.images.<camera>`` (uint8,
H x W x 3), any other array as ``observation.<key>``, and the task's instruction as ``task``.
``rename_map`` renames these for a server with its own keys (openpi's ``observation/state``, ...).

Episodes: evalsuite opens a new connection per episode, so a stateful server learns that an
episode started from the connection itself. A server whose metadata says
``"evalsuite.episode_start": true`` also gets ``{"evalsuite.episode_start": {"seed": S}}`` as the
first message of each connection and answers ``{"ok": true}``: that is how ``evalsuite serve``
seeds each episode as the in-process policy would be.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from evalsuite.errors import UsageError

EPISODE_START = "evalsuite.episode_start"  # metadata flag and first message of an episode's connection
STATE, IMAGES, TASK = "observation.state", "observation.images.", "task"
MAX_FRAME_BYTES = 64 * 2**20  # a frame larger than this is refused (a 224x224x3 image is 150 kB)
PLAIN_KINDS = "biuf"  # bool, signed, unsigned, float: the dtypes that may travel


class WireError(ValueError):
    """A frame that is not the protocol (not msgpack, an object dtype, a size that does not fit)."""


def _pack_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray | np.generic):
        if obj.dtype.kind not in PLAIN_KINDS:
            raise WireError(f"cannot send an array of dtype {obj.dtype}")
        if isinstance(obj, np.generic):
            return obj.item()
        return {b"__ndarray__": True, b"data": np.ascontiguousarray(obj).tobytes(), b"dtype": obj.dtype.str,
                b"shape": list(obj.shape)}
    raise TypeError(f"cannot send a {type(obj).__name__}")


def _unpack_hook(obj: dict[Any, Any]) -> Any:
    flag = obj.get(b"__ndarray__", obj.get("__ndarray__"))
    if flag is None:
        generic = obj.get(b"__npgeneric__", obj.get("__npgeneric__"))
        if generic is not None:
            return obj.get(b"data", obj.get("data"))
        return obj
    data, dtype, shape = (obj.get(k.encode(), obj.get(k)) for k in ("data", "dtype", "shape"))
    try:
        kind = np.dtype(dtype)
    except TypeError as exc:
        raise WireError(f"array of unknown dtype {dtype!r}") from exc
    if kind.kind not in PLAIN_KINDS or kind.hasobject:
        raise WireError(f"array of dtype {kind} refused: only numbers travel")
    if not isinstance(data, bytes) or not isinstance(shape, list | tuple) or not all(
            isinstance(n, int) and n >= 0 for n in shape):
        raise WireError("malformed array: data must be bytes and shape a list of sizes")
    if int(np.prod(shape, dtype=np.int64)) * kind.itemsize != len(data):
        raise WireError(f"array of shape {list(shape)} and dtype {kind} does not fit its {len(data)} bytes")
    return np.frombuffer(data, dtype=kind).reshape(shape)


def pack(message: Mapping[str, Any]) -> bytes:
    import msgpack

    return bytes(msgpack.packb(message, default=_pack_default, use_bin_type=True))


def unpack(frame: bytes) -> dict[str, Any]:
    """A msgpack map from a binary frame; anything else is a WireError."""
    import msgpack

    if len(frame) > MAX_FRAME_BYTES:
        raise WireError(f"a frame of {len(frame):,} bytes is over the limit of {MAX_FRAME_BYTES:,}")
    try:
        message = msgpack.unpackb(frame, object_hook=_unpack_hook, raw=False, strict_map_key=False)
    except WireError:
        raise
    except Exception as exc:  # msgpack's own errors: ExtraData, FormatError, ValueError, ...
        raise WireError(f"not a msgpack frame ({type(exc).__name__})") from None
    if not isinstance(message, dict):
        raise WireError(f"expected a msgpack map, got a {type(message).__name__}")
    return {k.decode(errors="replace") if isinstance(k, bytes) else str(k): v for k, v in message.items()}


def parse_rename_map(text: str) -> dict[str, str]:
    """``observation.state=observation/state+task=prompt`` (evalsuite's name = the server's, pairs
    joined by ``+``: commas separate the policies of a list, ``>`` would need quoting in a shell)."""
    out: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split("+"))):
        ours, sep, theirs = item.partition("=")
        if not sep or not ours or not theirs:
            raise UsageError(f"rename_map: {item!r} is not OURS=THEIRS; e.g. "
                             "rename_map=observation.state=observation/state+task=prompt")
        out[ours.strip()] = theirs.strip()
    return out


def is_image(shape: Sequence[int], dtype: Any = np.uint8) -> bool:
    return len(shape) == 3 and shape[-1] == 3 and np.dtype(dtype) == np.uint8


def camera_name(key: str) -> str:
    return key.removesuffix("_image")


@dataclass(frozen=True)
class Layout:
    """Where each of a suite's observation keys travels: ``state`` (concatenated into
    ``observation.state`` in this order, with their sizes), images by camera, the rest by name."""

    state: tuple[tuple[str, int], ...]
    images: tuple[tuple[str, str], ...]  # (suite key, camera)
    other: tuple[str, ...]

    @classmethod
    def of(cls, shapes: Mapping[str, Sequence[int]], dtypes: Mapping[str, Any] | None = None) -> Layout:
        dtypes = dtypes or {}
        state, images, other = [], [], []
        for key, shape in shapes.items():
            if len(shape) == 1:
                state.append((key, int(shape[0])))
            elif is_image(shape, dtypes.get(key, np.uint8)) and key.endswith("_image"):
                images.append((key, camera_name(key)))
            else:
                other.append(key)
        return cls(tuple(state), tuple(images), tuple(other))

    def wire_name(self, key: str) -> str:
        """The name a suite key's values travel under (the state's parts share ``observation.state``)."""
        if any(key == k for k, _ in self.state):
            return STATE
        for k, camera in self.images:
            if k == key:
                return IMAGES + camera
        return f"observation.{key}"

    def to_dict(self) -> dict[str, Any]:
        return {STATE: [[k, n] for k, n in self.state], "images": {IMAGES + c: k for k, c in self.images},
                "other": {f"observation.{k}": k for k in self.other}}

    def encode(self, obs: Mapping[str, NDArray[Any]], instruction: str) -> dict[str, Any]:
        """One episode's observation (unbatched) as the wire carries it."""
        out: dict[str, Any] = {}
        if self.state:
            out[STATE] = np.concatenate([np.asarray(obs[k], dtype=np.float32).reshape(-1) for k, _ in self.state])
        for key, camera in self.images:
            out[IMAGES + camera] = np.ascontiguousarray(obs[key], dtype=np.uint8)
        for key in self.other:
            out[f"observation.{key}"] = np.asarray(obs[key], dtype=np.float32)
        out[TASK] = instruction
        return out

    def decode(self, message: Mapping[str, Any], shapes: Mapping[str, Sequence[int]]) -> dict[str, NDArray[Any]]:
        """The suite's observation back from a wire message; a missing or misshapen part is a WireError."""
        out: dict[str, NDArray[Any]] = {}
        if self.state:
            state = np.asarray(_part(message, STATE), dtype=np.float64).reshape(-1)
            total = sum(n for _, n in self.state)
            if state.shape != (total,):
                raise WireError(f"{STATE} has {state.size} values, expected {total}")
            start = 0
            for key, n in self.state:
                out[key] = state[start:start + n]
                start += n
        for key, camera in self.images:
            out[key] = _shaped(_part(message, IMAGES + camera), shapes[key], IMAGES + camera)
        for key in self.other:
            out[key] = _shaped(_part(message, f"observation.{key}"), shapes[key], f"observation.{key}")
        return out


def _part(message: Mapping[str, Any], name: str) -> NDArray[Any]:
    if name not in message:
        raise WireError(f"observation has no {name!r}; it has {', '.join(sorted(message)) or 'nothing'}")
    value = message[name]
    if not isinstance(value, np.ndarray):
        raise WireError(f"{name!r} is a {type(value).__name__}, not an array")
    return value


def _shaped(value: NDArray[Any], shape: Sequence[int], name: str) -> NDArray[Any]:
    if tuple(value.shape) != tuple(shape):
        raise WireError(f"{name!r} has shape {tuple(value.shape)}, expected {tuple(shape)}")
    return value


def renamed(message: Mapping[str, Any], rename: Mapping[str, str]) -> dict[str, Any]:
    return {rename.get(k, k): v for k, v in message.items()}


def actions_of(reply: Mapping[str, Any]) -> NDArray[Any]:
    """The reply's chunk ``(H, action_dim)`` (``action`` becomes a chunk of one); WireError if neither."""
    if "actions" in reply:
        value = reply["actions"]
    elif "action" in reply:
        value = reply["action"]
        if isinstance(value, np.ndarray) and value.ndim == 1:
            value = value[None]
    else:
        raise WireError(f"the reply has no 'actions' or 'action'; it has {', '.join(sorted(reply)) or 'nothing'}")
    if not isinstance(value, np.ndarray):
        raise WireError(f"the reply's actions are a {type(value).__name__}, not an array")
    return value
