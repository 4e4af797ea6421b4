"""User-facing errors: the CLI prints these as one line and exits with code 2."""

from collections.abc import Iterable


class UsageError(Exception):
    """A mistake in what the user asked for (bad key, unknown id, malformed value)."""


def choices(values: Iterable[object]) -> str:
    """Format accepted values for an error message."""
    return ", ".join(sorted(str(v) for v in values))
