"""One writer per run folder: an exclusive lock on ``out=`` for the length of a run.

Two processes on the same folder would both run every trial and the journal would hold each twice,
so the second one is refused with one line naming the holder (pid, host, since when). The lock is
``flock`` on ``RUN/.lock``, held through an open file descriptor: the kernel drops it when the
holder dies however it dies (SIGKILL, OOM), so a lock left by a killed run is simply acquired by the
next one - that is the stale-lock takeover, and it is said in one log line. Where the file system
has no ``flock`` (some network mounts), the fallback is a lock file created with ``O_EXCL``; there a
lock naming a pid that no longer exists on this same host is stale and taken over.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evalsuite import names

try:
    import fcntl
except ImportError:  # not on POSIX: only the lock-file fallback
    fcntl = None  # type: ignore[assignment]

import contextlib

from evalsuite.errors import UsageError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # a .lock planted as a link is never opened through

LOCK_FILE = names.LOCK
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL}


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (signal 0 checks without sending)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return True  # cannot tell: assume alive, never take a live run's lock
    return True


class RunLock:
    """Context manager: hold ``run_dir/.lock`` exclusively, or raise UsageError naming the holder."""

    def __init__(self, run_dir: Path | str, purpose: str = "evaluate", log: Callable[[str], Any] = _stderr) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.purpose = purpose
        self.log = log
        self.info = {"pid": os.getpid(), "host": socket.gethostname(),
                     "started": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "purpose": purpose}
        self._fd: int | None = None
        self._flock = False
        self._fallback = False  # True when the file system has no flock: the O_EXCL lock file

    # -- entering ------------------------------------------------------------------------------------

    def __enter__(self) -> RunLock:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if fcntl is not None:
            try:
                self._acquire_flock()
                return self
            except _FlockUnsupported:
                pass
        self._fallback = True
        self._acquire_exclusive_file()
        return self

    def _acquire_flock(self) -> None:
        while True:
            try:
                fd, created = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644), True
            except FileExistsError:
                try:
                    fd, created = os.open(self.path, os.O_RDWR | _NOFOLLOW), False
                except FileNotFoundError:  # removed in between by its holder letting go
                    continue
                except OSError as exc:
                    if exc.errno != errno.ELOOP:
                        raise
                    raise UsageError(f"{self.path} is a symbolic link; evalsuite never writes through a link - "
                                     "remove it and rerun") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if created and exc.errno in _NO_FLOCK and os.fstat(fd).st_size == 0:
                    self.path.unlink(missing_ok=True)  # the fallback's O_EXCL must not trip on our empty file
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise self._in_use(self._holder_flock()) from None
                if exc.errno in _NO_FLOCK:
                    raise _FlockUnsupported from None
                raise
            # the previous holder may have removed the file between our open and our lock: then we
            # locked an unlinked inode that nobody else sees, and must start again on the new file
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            previous = _parse(os.pread(fd, 4096, 0))
            self._say_if_taken_over(previous)
            os.ftruncate(fd, 0)
            os.pwrite(fd, _dump(self.info), 0)
            os.fsync(fd)
            self._fd, self._flock = fd, True
            return

    def _holder_flock(self) -> dict[str, Any] | None:
        """What the live holder wrote; it writes right after locking, so wait a moment for it."""
        holder = None
        for _ in range(20):
            holder = _read(self.path)
            if holder and not self._stale(holder):
                return holder
            time.sleep(0.05)
        return holder if holder and holder.get("host") != self.info["host"] else None

    def _acquire_exclusive_file(self) -> None:
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
            except FileExistsError:
                holder = _read(self.path)
                if holder is None:  # being written right now, or damaged: look again shortly
                    time.sleep(0.1)
                    holder = _read(self.path)
                if holder is not None and not self._stale(holder):
                    raise self._in_use(holder) from None
                if holder is None and self._young(self.path):
                    raise self._in_use(None) from None
                self._remove_stale(holder)
                continue
            os.write(fd, _dump(self.info))
            os.fsync(fd)
            self._fd, self._flock = fd, False
            return
        raise self._in_use(_read(self.path))

    def _remove_stale(self, holder: dict[str, Any] | None) -> None:
        """Take a dead holder's file out of the way without removing one a rival just created:
        move it aside under a name of our own, and put it back if it is not the one judged stale."""
        aside = self.path.with_name(f"{LOCK_FILE}.stale.{self.info['pid']}")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return
        if _read(aside) != holder:
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.path)  # never overwrites
            os.unlink(aside)
            raise self._in_use(_read(self.path))
        os.unlink(aside)
        self._say_if_taken_over(holder)

    # -- leaving -------------------------------------------------------------------------------------

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        """Remove the file if it still names us, then let go (flock: unlock after the unlink, so
        the next holder never locks a file that is about to disappear)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if _read(self.path) == self.info:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
        finally:
            if self._flock:
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # -- helpers -------------------------------------------------------------------------------------

    def _stale(self, holder: dict[str, Any]) -> bool:
        """A holder on this host whose pid is gone; on another host we cannot tell, so never stale."""
        raw = holder.get("pid")
        if raw is None:  # no pid written: as int(None) would say, stale
            return True
        try:
            pid = int(raw)
        except (TypeError, ValueError):
            return True
        return holder.get("host") == self.info["host"] and not pid_alive(pid)

    @staticmethod
    def _young(path: Path, seconds: float = 5.0) -> bool:
        try:
            return time.time() - path.stat().st_mtime < seconds
        except FileNotFoundError:
            return False

    def _say_if_taken_over(self, previous: dict[str, Any] | None) -> None:
        if not previous or (previous.get("pid"), previous.get("host")) == (self.info["pid"], self.info["host"]):
            return
        if previous.get("host") == self.info["host"] and not self._stale(previous):
            return  # flock is ours, so that process no longer holds it (e.g. it released without removing)
        self.log(f"{self.run_dir}: taking over the lock of pid {previous.get('pid')} on "
                 f"{previous.get('host')}, which is gone")

    def _in_use(self, holder: dict[str, Any] | None) -> UsageError:
        advice = "wait for it or choose another out= folder"
        if holder is None:
            return UsageError(f"out={self.run_dir} is in use by another process (it has not said which yet; "
                              f"see {self.path}); {advice}")
        since = str(holder.get("started", "?")).replace("T", " ").replace("Z", " UTC")
        extra = ""
        if self._fallback and holder.get("host") != self.info["host"]:  # its pid cannot be checked from here
            extra = f" (if that run is gone, delete {self.path})"
        return UsageError(f"out={self.run_dir} is in use by pid {holder.get('pid')} on host {holder.get('host')} "
                          f"({holder.get('purpose', '?')}, since {since}); {advice}{extra}")


class _FlockUnsupported(Exception):
    pass


def _dump(info: dict[str, Any]) -> bytes:
    return (json.dumps(info) + "\n").encode()


def _parse(data: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(data.decode())
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return _parse(path.read_bytes())
    except (FileNotFoundError, IsADirectoryError):
        return None
