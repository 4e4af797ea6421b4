"""A policy server written to openpi's websocket protocol by someone who never saw evalsuite: it
imports numpy, msgpack and websockets only. It serves a hand-written Meta-World drawer-open
controller (not one of evalsuite's policies) and, by ``--mode``, misbehaves in the ways a real
server can, so tests see each fault classified.

    python openpi_style_server.py [--port 0] [--mode stateless] [--wait 0]

prints ``listening PORT`` when ready. Modes: ``stateless`` (default), ``stateful`` (per-connection
step counter: holds still for ``--wait`` steps at the start of each connection), ``traceback`` (a
text frame and a close on the 3rd request), ``garbage`` (bytes that are not msgpack), ``huge`` (a
frame of ``--huge-bytes``), ``drop`` (the first connection that reaches step 5 is cut without a
word), ``wrong-shape`` (3-d actions), ``nan``, ``slow`` (replies after ``--sleep`` seconds),
``flipped`` (declares and uses "+1 opens" for the gripper), ``openpi-keys`` (reads openpi's
``observation/state`` and ``prompt`` only).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import traceback

import msgpack
import numpy as np
import websockets
from websockets.asyncio.server import serve


def pack_array(obj):
    if isinstance(obj, np.ndarray):
        return {b"__ndarray__": True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": obj.shape}
    return obj


def unpack_array(obj):
    if b"__ndarray__" in obj:
        return np.ndarray(buffer=obj[b"data"], dtype=np.dtype(obj[b"dtype"]), shape=obj[b"shape"])
    return obj


def packb(message) -> bytes:
    return msgpack.packb(message, default=pack_array)


def unpackb(frame: bytes):
    return msgpack.unpackb(frame, object_hook=unpack_array)


def drawer_controller(state: np.ndarray) -> np.ndarray:
    """Hand over the handle, down to it, then pull towards -y; gripper open. Meta-World's 39-d state:
    hand position [0:3], gripper [3], the drawer handle's position [4:7]."""
    hand, handle = state[0:3], state[4:7] + np.array([0.0, 0.0, -0.02])
    if np.linalg.norm(hand[:2] - handle[:2]) > 0.06:
        target = handle + np.array([0.0, 0.0, 0.3])
    elif abs(hand[2] - handle[2]) > 0.04:
        target = handle
    else:
        target = handle + np.array([0.0, -0.1, 0.0])
    move = np.clip((target - hand) * 10.0, -1.0, 1.0)
    return np.concatenate([move, [-1.0]]).astype(np.float32)


class Server:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.connections = 0
        self.dropped = False

    def metadata(self) -> dict:
        meta = {"policy": "hand-written drawer controller", "action_dim": 4}
        if self.args.mode == "flipped":
            meta["contract"] = {"action.gripper": "+1 opens"}
        return meta

    def act(self, obs: dict, steps: int) -> np.ndarray:
        if self.args.mode == "openpi-keys":
            assert set(obs) == {"observation/state", "prompt"}, sorted(obs)
            state = obs["observation/state"]
        else:
            state = obs["observation.state"]
            assert obs["task"] == "open the drawer", obs["task"]
        if self.args.mode == "stateful" and steps <= self.args.wait:
            return np.array([0.0, 0.0, 0.0, -1.0], dtype=np.float32)
        return drawer_controller(np.asarray(state, dtype=np.float64))

    async def reply(self, ws, steps: int, action: np.ndarray) -> bytes | None:
        """The answer as the mode has it (None: nothing more to send on this connection)."""
        mode = self.args.mode
        if mode == "traceback" and steps == 3:
            raise RuntimeError("the model fell over")
        if mode == "garbage" and steps == 3:
            return b"\xc1\xc1 not msgpack"
        if mode == "huge" and steps == 3:
            return b"\x00" * self.args.huge_bytes
        if mode == "drop" and steps == 5 and not self.dropped:
            self.dropped = True
            ws.transport.abort()  # gone without a close frame
            return None
        if mode == "slow" and steps == 2:
            await asyncio.sleep(self.args.sleep)
        action = {"wrong-shape": action[:3], "nan": action * np.nan if steps == 4 else action,
                  "flipped": action * np.array([1, 1, 1, -1], dtype=np.float32)}.get(mode, action)
        return packb({"actions": action[None]})

    async def handle(self, ws) -> None:
        self.connections += 1
        steps = 0
        await ws.send(packb(self.metadata()))
        try:
            async for frame in ws:
                steps += 1
                answer = await self.reply(ws, steps, self.act(unpackb(frame), steps))
                if answer is None:
                    return
                await ws.send(answer)
        except websockets.ConnectionClosed:
            pass
        except Exception:
            await ws.send(traceback.format_exc())
            await ws.close(1011, "internal error")

    def health(self, connection, request):
        if request.path == "/healthz":
            return connection.respond(200, "OK\n")
        return None


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mode", default="stateless")
    parser.add_argument("--wait", type=int, default=0)
    parser.add_argument("--huge-bytes", type=int, default=2_000_000)
    parser.add_argument("--sleep", type=float, default=5.0)
    server = Server(parser.parse_args())
    async with serve(server.handle, "127.0.0.1", server.args.port, process_request=server.health,
                     max_size=None, compression=None) as listening:
        print("listening", next(iter(listening.sockets)).getsockname()[1], flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
