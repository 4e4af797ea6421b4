"""Serve a LeRobot pretrained policy over openpi's websocket protocol.

    python serve_lerobot.py PATH [--host 127.0.0.1] [--port 8000] [--device cpu]

Runs inside the LeRobot environment (`nox -s lerobot_env` builds `.nox/lerobot`) and imports nothing
of evalsuite, so any openpi-protocol client can use it; evalsuite's ``policies=[lerobot:PATH]`` starts
it with ``--port 0`` and reads the address it prints.

PATH is a folder as ``lerobot-train`` saves it (``pretrained_model/``: config.json, model.safetensors,
policy_preprocessor.json, policy_postprocessor.json and their state files), loaded by LeRobot's own
``from_pretrained`` and ``make_pre_post_processors``.

The protocol: on connect, one msgpack map of metadata (``policy``, ``action_dim``, ``n_action_steps``:
1, ``input_features``, ``evalsuite.episode_start``: true); each request is a map of the observation
under LeRobot's names (``observation.state`` float, ``observation.images.<camera>`` uint8 H x W x 3,
``task`` a string), answered by ``{"action": (action_dim,) float32}``: one step, because LeRobot's
``select_action`` keeps the chunk in its own queue. A failure is sent as a text frame (the
traceback), then the connection is closed. ``GET /healthz`` answers 200.

A connection is an episode: each gets its own copy of the policy (weights shared, queues not) and of
the processors, reset on connect. Its optional first message ``{"evalsuite.episode_start": {"seed":
S}}`` seeds the episode's torch random stream, which is kept per connection; inference runs one
request at a time, so that stream is the episode's own however connections interleave.

A policy that asks for ``observation.environment_state`` and is not sent one gets a copy of
``observation.state``: for a state-only suite such as Meta-World (objects and goal are in its 39-d
state) that is the environment state, and ACT needs one of an image or an environment state.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import signal
import sys
import threading
import traceback
from http import HTTPStatus
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

EPISODE_START = "evalsuite.episode_start"
STATE, ENV_STATE, IMAGES = "observation.state", "observation.environment_state", "observation.images."
MAX_FRAME_BYTES = 64 * 2**20


# openpi's array convention, written here so this file needs nothing but msgpack and numpy.
def pack_array(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biuf":
            raise TypeError(f"only numeric arrays travel, not {obj.dtype}")
        return {b"__ndarray__": True, b"data": np.ascontiguousarray(obj).tobytes(), b"dtype": obj.dtype.str,
                b"shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot pack a {type(obj).__name__}")


def unpack_array(obj: dict[Any, Any]) -> Any:
    def field(name: str) -> Any:
        return obj.get(name.encode(), obj.get(name))

    if not field("__ndarray__"):
        return obj
    dtype = np.dtype(field("dtype"))
    if dtype.kind not in "biuf":
        raise ValueError(f"array of dtype {dtype} refused: only numbers travel")
    return np.frombuffer(field("data"), dtype=dtype).reshape(field("shape"))


def pack(message: dict[str, Any]) -> bytes:
    return msgpack.packb(message, default=pack_array, use_bin_type=True)


def unpack(frame: bytes) -> dict[str, Any]:
    message = msgpack.unpackb(frame, object_hook=unpack_array, raw=False, strict_map_key=False)
    if not isinstance(message, dict):
        raise ValueError(f"a request must be a msgpack map, not a {type(message).__name__}")
    return {k.decode() if isinstance(k, bytes) else str(k): v for k, v in message.items()}


class LoadedPolicy:
    """The policy and its processors, loaded once; ``episode()`` gives a connection its own state."""

    def __init__(self, path: Path, device: str) -> None:
        from lerobot.configs.policies import PreTrainedConfig
        from lerobot.policies.factory import get_policy_class, make_pre_post_processors

        config = PreTrainedConfig.from_pretrained(path)
        config.device = device
        self.policy = get_policy_class(config.type).from_pretrained(path, config=config)
        self.policy.to(device).eval()
        on_device = {"device_processor": {"device": device}}
        self.preprocessor, self.postprocessor = make_pre_post_processors(
            self.policy.config, pretrained_path=str(path), preprocessor_overrides=on_device,
            postprocessor_overrides=on_device)
        self.config, self.path, self.device = self.policy.config, path, device
        self.lock = threading.Lock()  # one inference at a time: per-episode random streams stay exact

    @property
    def action_dim(self) -> int:
        return int(self.config.output_features["action"].shape[0])

    def metadata(self) -> dict[str, Any]:
        import lerobot

        return {"policy": {"type": self.config.type, "path": str(self.path), "lerobot": lerobot.__version__},
                "action_dim": self.action_dim, "n_action_steps": 1, EPISODE_START: True,
                "input_features": {k: list(f.shape) for k, f in self.config.input_features.items()}}

    def episode(self) -> Episode:
        """A copy that shares the weights (and buffers) but not the per-episode queues."""
        module = self.policy
        shared = {id(t): t for t in (*module.parameters(), *module.buffers())}
        with self.lock:
            policy = copy.deepcopy(module, memo=shared)
            policy.reset()
            return Episode(self, policy, copy.deepcopy(self.preprocessor), copy.deepcopy(self.postprocessor))


class Episode:
    """One connection's policy state: its queues, its processors, its random stream."""

    def __init__(self, loaded: LoadedPolicy, policy: Any, preprocessor: Any, postprocessor: Any) -> None:
        import torch

        self.loaded, self.policy = loaded, policy
        self.preprocessor, self.postprocessor = preprocessor, postprocessor
        self.rng_state = torch.get_rng_state()

    def seed(self, seed: int) -> None:
        import torch

        self.rng_state = torch.Generator().manual_seed(int(seed) % 2**63).get_state()

    def act(self, message: dict[str, Any]) -> np.ndarray:
        import torch

        batch = self.batch(message)
        with self.loaded.lock:
            outer = torch.get_rng_state()
            torch.set_rng_state(self.rng_state)
            try:
                with torch.inference_mode():
                    action = self.postprocessor(self.policy.select_action(self.preprocessor(batch)))
            finally:
                self.rng_state = torch.get_rng_state()
                torch.set_rng_state(outer)
        return action.detach().to("cpu", torch.float32).numpy().reshape(-1)

    def batch(self, message: dict[str, Any]) -> dict[str, Any]:
        """The request as LeRobot's evaluation loop hands it to the pre-processor: a batch of one,
        images as float C x H x W in [0, 1], ``task`` as a list of strings."""
        import torch

        batch: dict[str, Any] = {"task": [str(message.get("task", ""))]}
        for key, value in message.items():
            if not isinstance(value, np.ndarray):
                continue
            tensor = torch.from_numpy(np.array(value))  # a copy: arrays read from a frame are read-only
            if key.startswith(IMAGES):
                if tensor.dtype != torch.uint8 or tensor.ndim != 3 or tensor.shape[-1] != 3:
                    raise ValueError(f"{key}: expected a uint8 H x W x 3 image, got {value.dtype} {value.shape}")
                tensor = tensor.permute(2, 0, 1).float().div(255)
            batch[key] = tensor.float().unsqueeze(0)
        features = self.loaded.config.input_features
        if ENV_STATE in features and ENV_STATE not in batch and STATE in batch:
            batch[ENV_STATE] = batch[STATE]
        for key, feature in features.items():
            if key not in batch:
                raise ValueError(f"the policy needs {key!r}; the request has {', '.join(sorted(message))}")
            if tuple(batch[key].shape[1:]) != tuple(feature.shape):
                raise ValueError(f"{key!r} has shape {tuple(batch[key].shape[1:])}, the policy expects "
                                 f"{tuple(feature.shape)}")
        return batch


async def converse(loaded: LoadedPolicy, connection: Any) -> None:
    """One connection, one episode: metadata, then a reply per request; a failure is a traceback frame."""
    try:
        episode = await asyncio.to_thread(loaded.episode)
        await connection.send(pack(loaded.metadata()))
        async for frame in connection:
            message = unpack(frame if isinstance(frame, bytes) else frame.encode())
            if EPISODE_START in message:
                episode.seed((message[EPISODE_START] or {}).get("seed", 0))
                await connection.send(pack({"ok": True}))
                continue
            action = await asyncio.to_thread(episode.act, message)
            await connection.send(pack({"action": action.astype(np.float32)}))
    except Exception:
        if isinstance(connection.close_code, int):  # the client left: nobody to tell
            return
        from websockets.exceptions import ConnectionClosed

        with contextlib.suppress(ConnectionClosed):
            await connection.send(traceback.format_exc())
            await connection.close(1011, "policy server error")


def answer_health(connection: Any, request: Any) -> Any:
    """``GET /healthz``: 200; anything else goes on to the websocket handshake."""
    return connection.respond(HTTPStatus.OK, "OK\n") if request.path == "/healthz" else None


async def serve(loaded: LoadedPolicy, host: str, port: int, exit_with_stdin: bool = False) -> None:
    from websockets.asyncio.server import serve as websocket_server

    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def finish() -> None:
        if not stop.done():
            stop.set_result(None)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, finish)
    if exit_with_stdin:  # the parent holds our stdin: when it exits, even killed, the server goes too
        threading.Thread(target=lambda: (sys.stdin.buffer.read(), loop.call_soon_threadsafe(finish)),
                         daemon=True).start()
    async with websocket_server(lambda connection: converse(loaded, connection), host, port,
                                process_request=answer_health, compression=None, max_size=MAX_FRAME_BYTES) as server:
        bound = next(iter(server.sockets)).getsockname()[1]
        print(f"serve_lerobot: listening on ws://{host}:{bound}", flush=True)
        await stop


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path, help="a LeRobot pretrained policy folder (config.json, model.safetensors)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0: a free port, printed when listening")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--exit-with-stdin", action="store_true", help="stop when stdin closes (a parent's pipe)")
    args = parser.parse_args(argv)
    if not (args.path / "config.json").is_file():
        parser.error(f"{args.path}: no config.json here; give a LeRobot pretrained_model folder")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    asyncio.run(serve(LoadedPolicy(args.path, args.device), args.host, args.port, args.exit_with_stdin))


if __name__ == "__main__":
    main()
