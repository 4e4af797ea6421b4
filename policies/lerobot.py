"""``policies=[lerobot:PATH]``: a LeRobot pretrained policy (the ``pretrained_model`` folder
``lerobot-train`` saves), loaded and run by LeRobot's own code.

lerobot >= 0.5 needs Python >= 3.12, numpy >= 2 and torch < 2.12; evalsuite's environment has numpy < 2
(robosuite's mink pin) and torch 2.13. So the policy runs in LeRobot's environment (`nox -s
lerobot_env`), served by lerobot_bridge/serve_lerobot.py on a free loopback port, and evalsuite talks to
it with the remote client (policies/remote.py) like to any policy server. This module starts that
server, waits until it answers /healthz, and stops it when the policy is closed, collected, or the
process exits (or dies: the server ends when its stdin closes).

``lerobot`` with no path on a Meta-World task uses the checkpoint shipped for the task
(checkpoints/lerobot/metaworld/<task>/, trained here with lerobot-train; docs/lerobot.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import tempfile
import time
import urllib.request
import weakref
from pathlib import Path
from typing import Any

from evalsuite.demos import lerobot_bridge, lerobot_python
from evalsuite.errors import UsageError
from evalsuite.specs import SuiteSpec, TaskSpec
from evalsuite_policies.remote import RemotePolicy

SHIPPED = Path(__file__).resolve().parent / "checkpoints" / "lerobot"
START_TIMEOUT_S = 180.0  # importing lerobot and torch on a busy two-core machine takes tens of seconds
LISTENING = "serve_lerobot: listening on "


def pretrained_folder(path: str, task: TaskSpec, suite: SuiteSpec) -> Path:
    """PATH as given (a pretrained_model folder, or a lerobot-train output folder: its last checkpoint),
    or with no PATH the checkpoint shipped for the task."""
    if not path:
        shipped = SHIPPED / (suite.simulator or suite.id) / task.id
        if not (shipped / "config.json").is_file():
            have = sorted(p.parent.name for p in SHIPPED.glob("*/*/config.json"))
            raise UsageError(f"lerobot: no checkpoint is shipped for task {task.id!r} of suite {suite.id!r} "
                             f"(shipped: {', '.join(have) or 'none'}); give one: lerobot:PATH")
        return shipped
    folder = Path(path).expanduser()
    for candidate in (folder, folder / "pretrained_model", folder / "checkpoints" / "last" / "pretrained_model"):
        if (candidate / "config.json").is_file() and (candidate / "model.safetensors").is_file():
            return candidate.resolve()
    raise UsageError(f"lerobot: {path!r} is not a LeRobot pretrained policy folder (config.json and "
                     "model.safetensors, as lerobot-train saves in checkpoints/*/pretrained_model)")


def folder_digest(folder: Path) -> str:
    """The policy's files (weights, config, processors and their statistics), hashed."""
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".json", ".safetensors")):
        digest.update(file.name.encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


class BridgeServer:
    """serve_lerobot.py as a subprocess of this process, on a free loopback port."""

    def __init__(self, folder: Path, python: Path, device: str, threads: int) -> None:
        self.log_dir = tempfile.mkdtemp(prefix="evalsuite-lerobot-")
        self.log = Path(self.log_dir) / "server.log"
        command = [str(python), str(lerobot_bridge("serve_lerobot.py")), str(folder), "--host", "127.0.0.1",
                   "--port", "0", "--device", device, "--threads", str(threads), "--exit-with-stdin"]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
        self._finalizer = weakref.finalize(self, _stop, self.process, self.log_dir)
        try:
            self.url = self._wait_until_healthy()
        except BaseException:
            self.stop()
            raise

    def _wait_until_healthy(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        url = ""
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise UsageError(f"lerobot: the policy server exited ({self.process.returncode}): {self._last_line()}")
            if not url:
                url = next((line.removeprefix(LISTENING).strip() for line in self._lines() if LISTENING in line), "")
            if url and _healthy(url):
                return url
            time.sleep(0.2)
        raise UsageError(f"lerobot: the policy server did not answer /healthz within {START_TIMEOUT_S:g} s: "
                         f"{self._last_line()}")

    def _lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    def _last_line(self) -> str:
        lines = [line for line in self._lines() if line.strip()]
        return lines[-1][:300] if lines else "(it printed nothing)"

    def stop(self) -> None:
        self._finalizer()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url.replace("ws://", "http://", 1) + "/healthz", timeout=2) as answer:
            return int(answer.status) == 200
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes], log_dir: str) -> None:
    """Close the server's stdin (it exits on that), then ask, then insist."""
    import shutil

    with contextlib.suppress(OSError):
        if process.stdin:
            process.stdin.close()
    with contextlib.suppress(OSError):
        process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    shutil.rmtree(log_dir, ignore_errors=True)


class LeRobotPolicy(RemotePolicy):
    """The remote client, owning the server it talks to; its fingerprint is the policy folder's files
    (the server's address changes from run to run, the policy does not)."""

    def __init__(self, task: TaskSpec, suite: SuiteSpec, server: BridgeServer, fingerprint: str,
                 **client: Any) -> None:
        self.server = server
        super().__init__(task=task, suite=suite, url=server.url, **client)
        self._lerobot_fingerprint = fingerprint

    def fingerprint(self) -> str:
        return self._lerobot_fingerprint

    def close(self) -> None:
        super().close()
        self.server.stop()


def lerobot(task: TaskSpec, suite: SuiteSpec, path: str = "", python: str = "", device: str = "cpu",
            threads: int = 1, timeout: float = 30.0) -> LeRobotPolicy:
    """``python``: the LeRobot environment's interpreter (default: $EVALSUITE_LEROBOT_PYTHON, else
    .nox/lerobot of the source checkout). ``threads``: torch threads of the server."""
    folder = pretrained_folder(path, task, suite)
    if threads < 1:
        raise UsageError(f"lerobot: threads={threads} must be >= 1")
    interpreter = lerobot_python(python)
    fingerprint = hashlib.sha256(f"{folder_digest(folder)} {device}".encode()).hexdigest()[:16]
    server = BridgeServer(folder, interpreter, device, threads)
    try:
        return LeRobotPolicy(task, suite, server, fingerprint, timeout=timeout)
    except BaseException:
        server.stop()
        raise
