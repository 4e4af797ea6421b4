"""Consent to unpickle: loading a pickle runs code from the file, so a pickle is loaded only where
the person running *this* command said so - never because a run folder names it.

A policy plugin declares which parameter of its spec names a pickled file (``PolicySpec.pickled``,
e.g. robomimic's ``path``, dp3's ``checkpoint`` ending in ``.ckpt``) and calls ``require`` right
before it unpickles. ``require`` passes only for files allowed in the current context:

- ``evaluate`` (and ``select``, ``compose``, ``gate``'s candidate) allow the files that the
  policies named on their own command line name: typing the path is the consent;
- a command that rebuilds policies from a run folder's blinding key (``evalsuite video RUN``)
  allows only what its ``trust=[PATH, ...]`` lists; the key's own parameters (a path, a stored
  ``"trust": true``) are never consent, and what to pass is said in one line.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from evalsuite.errors import UsageError
from evalsuite.fsio import one_line

_ALLOWED: contextvars.ContextVar[frozenset[Path]] = contextvars.ContextVar("evalsuite_trusted_pickles",
                                                                          default=frozenset())


def resolved(paths: Iterable[str | Path]) -> frozenset[Path]:
    return frozenset(Path(p).expanduser().resolve() for p in paths if str(p))


@contextlib.contextmanager
def allowing(paths: Iterable[str | Path]) -> Iterator[None]:
    """Within the block, ``require`` passes for these files (and only these)."""
    token = _ALLOWED.set(resolved(paths))
    try:
        yield
    finally:
        _ALLOWED.reset(token)


def require(path: str | Path, what: str) -> None:
    """Refuse to go on unless ``path`` was allowed by this command's line (see the module docstring)."""
    if Path(path).expanduser().resolve() not in _ALLOWED.get():
        raise UsageError(refusal(what, path))


def refusal(what: str, path: str | Path) -> str:
    shown = one_line(path)
    return (f"{what} {shown} is a pickle: loading it runs code from the file, and this command was not told to; "
            f"if you trust that file, pass trust=[{shown}] to this command")


def pickled_files(spec: Any, params: dict[str, Any]) -> list[str]:
    """The files that building ``spec`` with ``params`` would unpickle (from ``spec.pickled``)."""
    pickled = getattr(spec, "pickled", None)
    if not pickled:
        return []
    name, _, suffix = pickled.partition("*")
    value = str(params.get(name, spec.params.get(name, "")) or "")
    return [value] if value and value.endswith(suffix) else []


def check(specs: dict[str, Any], key: Any, allowed: Iterable[str | Path]) -> None:
    """Before any policy of a saved run (its BlindingKey) is built: every pickle it would load must be allowed."""
    ok = resolved(allowed)
    for code in sorted(key):
        for path in pickled_files(specs[code], key[code].params):
            if Path(path).expanduser().resolve() not in ok:
                raise UsageError(f"policy {code} ({one_line(key.label(code))}): " + refusal("its file", path))
