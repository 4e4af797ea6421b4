"""Every file evalsuite writes goes through here: a unique temporary file in the target's own
folder (created exclusively, never through a link), flushed and fsynced, then renamed over the
target. A crash or a full disk leaves the old file or the new one, never half of either, and a
symbolic link planted in a run folder (``report.md -> ~/.bashrc``) is refused instead of followed.

Text is UTF-8 whatever the locale: a run under ``LC_ALL=C`` writes the same bytes.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from evalsuite.errors import UsageError


def _refuse_links(path: Path, root: Path | None) -> None:
    """A link at ``path``, or at any folder between ``root`` and it, is refused."""
    if path.is_symlink():
        raise UsageError(f"{path} is a symbolic link; evalsuite never writes through a link - remove it and rerun")
    if root is None:
        return
    root = Path(root)
    for folder in path.parents:
        if folder == root or root not in folder.parents:
            break
        if folder.is_symlink():
            raise UsageError(f"{folder} is a symbolic link inside {root}; evalsuite never writes through a link - "
                             "remove it and rerun")


def make_dir(path: Path, root: Path | None = None) -> Path:
    """``path`` as a real folder (created if needed); a link there or above it, up to ``root``, is refused."""
    path = Path(path)
    _refuse_links(path, root)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_path(path: Path, root: Path | None = None) -> Iterator[Path]:
    """A temporary path beside ``path`` for writers that need a file name (matplotlib, ffmpeg,
    pandas); it replaces ``path`` only when the block ends without an exception."""
    path = Path(path)
    _refuse_links(path, root)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        _publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes, root: Path | None = None) -> None:
    """``data`` to ``path`` atomically (see the module docstring)."""
    path = Path(path)
    _refuse_links(path, root)
    # mkstemp opens with O_CREAT | O_EXCL (| O_NOFOLLOW): a fresh file of ours, never an existing one
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        _publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str, root: Path | None = None) -> None:
    write_bytes(path, text.encode("utf-8"), root)


def json_text(data: Any) -> str:
    """The text ``write_json`` writes: what a file's bytes are, for a caller that holds the data."""
    return json.dumps(data, indent=1, sort_keys=False) + "\n"


def write_json(path: Path, data: Any, root: Path | None = None) -> None:
    write_text(path, json_text(data), root)


def _publish(tmp: Path, path: Path) -> None:
    os.chmod(tmp, 0o644 & ~_UMASK)
    if path.is_symlink():  # planted between the check and now
        raise UsageError(f"{path} is a symbolic link; evalsuite never writes through a link - remove it and rerun")
    os.replace(tmp, path)  # replaces a name, never follows one
    with contextlib.suppress(OSError):  # the rename itself on disk (not every file system allows it)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _read_umask() -> int:
    """The process's umask, read once (reading it means setting it: never per write, where another
    thread creating a file at that moment would get mode 0)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def one_line(text: object) -> str:
    """``text`` with control characters and line breaks escaped (``\\n``, ``\\x1b``): what a label or
    note from a received folder becomes in Markdown, CSV and log lines, so it can never start a
    line of its own or move the terminal's cursor."""
    out = []
    for ch in str(text):
        if ch in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        elif unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069":
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)
