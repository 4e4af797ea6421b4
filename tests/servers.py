"""A server process a test starts (``evalsuite serve``/``operator``/``review``, a foreign policy
server): started, its address read from the first line that names it, stopped - or killed at the
end of the test that left it running (tests/conftest.py)."""

from __future__ import annotations

import signal
import subprocess

LIVE: list[subprocess.Popen] = []


def _address(line: str) -> str:
    """``... at ws://HOST:PORT ...`` / ``... at http://HOST:PORT/ ...`` or a foreign server's ``listening PORT``."""
    for scheme in ("ws://", "http://"):
        if f" at {scheme}" in line:
            return line.split(" at ")[1].split()[0].rstrip("/")
    if line.startswith("listening "):
        return f"ws://127.0.0.1:{int(line.split()[1])}"
    return ""


class ServedProcess:
    def __init__(self, command: list[str]) -> None:
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        LIVE.append(self.process)
        seen, self.url = "", ""
        for line in self.process.stdout:
            seen += line
            self.url = _address(line)
            if self.url:
                break
        assert self.url, f"the server did not start: {seen}"

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self._end()

    def stop(self) -> None:
        self.process.terminate()
        self._end()

    def _end(self) -> None:
        self.process.wait(timeout=10)
        self.process.stdout.close()


def kill_leftovers() -> None:
    for process in LIVE:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    LIVE.clear()
