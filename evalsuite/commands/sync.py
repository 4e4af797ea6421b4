"""`evalsuite sync RUN`: log a finished run folder to MLflow (e.g. after the server was down)."""

from __future__ import annotations

from evalsuite import names
from evalsuite.commands.options import Option, parse, run_dir
from evalsuite.errors import UsageError


def backend(key: str, value: str) -> str:
    """A tracking URI sync can log to: checked up front like evaluate's, but ``none`` is no backend."""
    from evalsuite import tracking

    if value == "none":
        raise UsageError(f"{key}=none: sync logs a run folder to MLflow, so it needs a backend; accepted: default, "
                         "sqlite:///PATH, http://HOST:PORT, https://HOST:PORT")
    tracking.resolve_uri(value, key)
    return value


OPTIONS = (Option("tracking_uri", "default | sqlite:///PATH | http://HOST:PORT", "default", backend),
           Option("experiment", "MLflow experiment name", "evalsuite"))


def run(args: list[str]) -> int:
    """Log a run folder's results to MLflow."""
    from evalsuite import tracking

    folder, rest = run_dir(args, "sync")
    v = parse(rest, OPTIONS)
    if not (folder / names.RESULTS).exists():
        raise UsageError(f"{folder} has no results.json yet; run `evalsuite report {folder}` first")
    return 0 if tracking.log_or_explain(folder, v["tracking_uri"], v["experiment"]) else 1
