"""User-facing errors: the CLI prints these as one line and exits with code 2."""


class UsageError(Exception):
    """A mistake in what the user asked for (bad key, unknown id, malformed value)."""


def choices(values) -> str:
    """Format accepted values for an error message."""
    return ", ".join(sorted(str(v) for v in values))
