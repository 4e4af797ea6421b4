"""One process per run folder: a second one is refused with one line naming the holder; a lock left
by a killed process is taken over; the same with the O_EXCL fallback where flock is not supported."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from evalsuite import runlock
from evalsuite.cli import main
from evalsuite.errors import UsageError
from evalsuite.journal import read
from evalsuite.runlock import LOCK_FILE, RunLock
from tests.conftest import REPO

pytestmark = pytest.mark.unit  # the `nox -s unit` tier: no simulator

# A process that only holds the lock: says "ready" through a file, lets go when the release file appears.
HOLDER = """
import errno, sys, time
from pathlib import Path
if sys.argv[2] == "no-flock":
    import fcntl
    def flock(*a):
        raise OSError(errno.ENOLCK, "No locks available")
    fcntl.flock = flock
from evalsuite.runlock import RunLock
run = Path(sys.argv[1])
with RunLock(run, purpose="holder"):
    (run.parent / "ready").write_text("1")
    while not (run.parent / "release").exists():
        time.sleep(0.02)
"""


class Holder:
    def __init__(self, tmp_path, run, mode="flock"):
        self.tmp, self.run = tmp_path, run
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run), mode], cwd=REPO)
        deadline = time.time() + 30
        while not (tmp_path / "ready").exists():
            assert self.proc.poll() is None, "the lock holder died before taking the lock"
            assert time.time() < deadline, "the lock holder never took the lock"
            time.sleep(0.02)

    @property
    def pid(self):
        return self.proc.pid

    def release(self):
        (self.tmp / "release").write_text("1")
        assert self.proc.wait(timeout=30) == 0

    def kill(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self):
        if self.proc.poll() is None:
            self.kill()


@pytest.fixture
def holder(tmp_path):
    started = []

    def start(mode="flock"):
        started.append(Holder(tmp_path, tmp_path / "run", mode))
        return started[-1]

    yield start
    for h in started:
        h.stop()


@pytest.fixture
def no_flock(monkeypatch):
    """A file system without flock (some network mounts): every flock call fails with ENOLCK."""
    def flock(*_):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(runlock.fcntl, "flock", flock)


def _lock_info(run):
    return json.loads((run / LOCK_FILE).read_text())


def test_a_second_process_is_refused_with_one_line_naming_the_holder(tmp_path, holder):
    run = tmp_path / "run"
    h = holder()
    assert _lock_info(run)["pid"] == h.pid
    with pytest.raises(UsageError) as exc, RunLock(run):
        pytest.fail("took a lock another process holds")
    msg = str(exc.value)
    assert f"pid {h.pid} on host {socket.gethostname()}" in msg and "holder, since " in msg
    assert msg.startswith(f"out={run} is in use") and "\n" not in msg
    h.release()
    assert not (run / LOCK_FILE).exists()  # the holder cleaned up after itself
    with RunLock(run):
        assert _lock_info(run)["pid"] == os.getpid()


def test_a_killed_holders_lock_is_taken_over(tmp_path, holder):
    run = tmp_path / "run"
    h = holder()
    h.kill()
    assert _lock_info(run)["pid"] == h.pid  # SIGKILL leaves the file behind ...
    said = []
    with RunLock(run, log=said.append):  # ... but not the lock
        info = _lock_info(run)
        assert (info["pid"], info["host"], info["purpose"]) == (os.getpid(), socket.gethostname(), "evaluate")
    assert len(said) == 1 and f"taking over the lock of pid {h.pid} on {socket.gethostname()}, which is gone" in said[0]
    assert not (run / LOCK_FILE).exists()


def test_evaluate_refuses_a_folder_in_use_and_resumes_once_it_is_free(fake_suite, tmp_path, holder, capsys):
    run = tmp_path / "run"
    argv = ["evaluate", "suite=fake", "policies=[ones]", "episodes=3", "max_steps=14", f"out={run}",
            "tracking_uri=none", "progress=false"]
    h = holder()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("evalsuite: error: ")
    assert f"in use by pid {h.pid} on host {socket.gethostname()}" in err
    assert not (run / "episodes.jsonl").exists()
    h.release()

    assert main(argv) == 0
    records = read(run / "episodes.jsonl")
    assert len(records) == 6 and len({r.trial_id for r in records}) == 6  # 2 tasks x 3 episodes, each once
    assert not (run / LOCK_FILE).exists()


def test_without_flock_a_live_holder_is_refused_and_a_dead_one_taken_over(tmp_path, holder, no_flock):
    run = tmp_path / "run"
    h = holder("no-flock")
    with pytest.raises(UsageError, match=f"in use by pid {h.pid} on host {socket.gethostname()} "), RunLock(run):
        pytest.fail("took a lock file a live process holds")
    h.kill()
    assert _lock_info(run)["pid"] == h.pid
    said = []
    with RunLock(run, log=said.append):
        assert _lock_info(run)["pid"] == os.getpid()
        with pytest.raises(UsageError, match=f"in use by pid {os.getpid()} "), RunLock(run):  # and it is exclusive
            pass
    assert len(said) == 1 and f"taking over the lock of pid {h.pid}" in said[0]
    assert not (run / LOCK_FILE).exists()


def test_without_flock_a_holder_on_another_host_is_never_taken_over(tmp_path, no_flock):
    run = tmp_path / "run"
    run.mkdir()
    other = {"pid": 999999, "host": "elsewhere", "started": "2026-11-29T22:00:00Z", "purpose": "evaluate"}
    (run / LOCK_FILE).write_text(json.dumps(other))
    with pytest.raises(UsageError) as exc, RunLock(run):
        pass
    assert "in use by pid 999999 on host elsewhere (evaluate, since 2026-11-29 22:00:00 UTC)" in str(exc.value)
    assert f"delete {run / LOCK_FILE}" in str(exc.value)
    assert _lock_info(run) == other
