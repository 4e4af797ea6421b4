"""Options of the commands, each declared once: name, help, default and the parser that validates
it. The same declaration parses ``key=value`` arguments, prints ``evalsuite CMD --help`` and writes
the README's key tables (``tests/test_cli.py`` checks they agree). Plugin commands use it too.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalsuite import names
from evalsuite.errors import UsageError, choices

if TYPE_CHECKING:
    from evalsuite.plan import PolicyEntry

Parser = Callable[[str, str], Any]  # (key, text as typed) -> typed value, or UsageError
MAX_EPISODES = 100_000  # initial conditions per task: a plan holds every trial in memory


def text(key: str, value: str) -> str:
    return value


def integer(minimum: int | None = None, maximum: int | None = None) -> Parser:
    """``maximum``: counts and sizes that would exhaust memory or never end are refused up front."""
    def parse(key: str, value: str) -> int:
        return parse_int(key, value, minimum, maximum)
    return parse


def folder(key: str, value: str) -> Path:
    """A path that must not be empty (``out=`` alone would write into the current directory)."""
    if not value.strip():
        raise UsageError(f"{key}= is empty; give a path, or leave {key}= out for the default")
    return Path(value)


def number(low: float | None = None, high: float | None = None) -> Parser:
    """A float in the open interval (low, high)."""
    def parse(key: str, value: str) -> float:
        return parse_float(key, value, low, high)
    return parse


def non_negative(key: str, value: str) -> float:
    amount = float(value) if value.replace(".", "", 1).isdigit() else -1.0
    if amount < 0:
        raise UsageError(f"{key}={value!r} must be a number >= 0")
    return amount


def one_of(*accepted: str) -> Parser:
    def parse(key: str, value: str) -> str:
        return choice(key, value, accepted)
    return parse


def listing(key: str, value: str) -> list[str]:
    return parse_list(key, value)


def boolean(key: str, value: str) -> bool:
    return parse_bool(key, value)


@dataclass(frozen=True)
class Option:
    name: str
    help: str
    default: str | None = None  # as typed on the command line; None: absent unless given
    parse: Parser = text

    def describe(self) -> str:
        return self.help + (f" (default: {self.default})" if self.default is not None else "")


class Values(dict[str, Any]):
    """Parsed options: the typed value of every given key and of every key with a default;
    ``given`` says which the user typed."""

    def __init__(self, values: dict[str, Any], given: set[str]) -> None:
        super().__init__(values)
        self.given = frozenset(given)


def parse(args: Sequence[str], options: Sequence[Option]) -> Values:
    """``key=value`` arguments against their declarations: unknown or repeated keys and invalid
    values are one-line errors naming the key."""
    declared = {o.name: o for o in options}
    raw = parse_overrides(args, tuple(declared))
    values = {name: declared[name].parse(name, value) for name, value in raw.items()}
    for option in options:
        if option.name not in values and option.default is not None:
            values[option.name] = option.parse(option.name, option.default)
    return Values(values, set(raw))


def help_text(title: str, options: Sequence[Option]) -> str:
    lines = [title]
    if options:
        width = max(len(o.name) for o in options) + 2
        lines += ["", "keys (key=value):"] + [f"  {o.name:<{width}}{o.describe()}" for o in options]
    return "\n".join(lines)


def markdown_table(options: Sequence[Option]) -> str:
    """The docs' table of a command's keys."""
    rows = ["| key | meaning | default |", "|---|---|---|"]
    rows += [f"| `{o.name}` | {markdown_cell(o.help)} | {'' if o.default is None else f'`{o.default}`'} |"
             for o in options]
    return "\n".join(rows)


def markdown_cell(text: str) -> str:
    """``text`` as one table cell: outside `code spans`, ``<`` and ``>`` as entities (else Markdown
    passes ``<suite>-<hash>`` on as an HTML tag and the page shows nothing) and ``|`` as one (else it
    ends the cell). Code spans already show their text as typed."""
    parts = text.split("`")
    for i, part in enumerate(parts):
        if i % 2 == 0 or i == len(parts) - 1:  # outside a code span (a lone backtick opens none)
            parts[i] = part.replace("<", "&lt;").replace(">", "&gt;").replace("|", "&#124;")
    return "`".join(parts)


# ---------------------------------------------------------------- the parsers themselves

def parse_overrides(args: Sequence[str], accepted: dict[str, str] | tuple[str, ...]) -> dict[str, str]:
    """``key=value`` arguments (``--key=value`` too, as draccus/LeRobot users type them); an unknown
    key says which accepted one it probably meant."""
    out: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.removeprefix("--").partition("=")
        if not sep or not key:
            raise UsageError(f"argument {arg!r} is not key=value; accepted keys: {choices(accepted)}")
        if key not in accepted:
            guess = did_you_mean(key, list(accepted))
            if guess:
                raise UsageError(f"unknown key {key!r}; did you mean {guess}=? (every key: --help)")
            raise UsageError(f"unknown key {key!r}; accepted: {choices(accepted)}")
        if key in out:
            raise UsageError(f"key {key!r} given twice")
        out[key] = value
    return out


def did_you_mean(key: str, accepted: Sequence[str]) -> str | None:
    """The accepted key closest to ``key`` (difflib), or one it extends or abbreviates
    (``output_dir`` -> ``out``, ``eps`` -> ``episodes``); None when nothing is close."""
    import difflib

    close = difflib.get_close_matches(key.replace("-", "_"), accepted, n=1, cutoff=0.6)
    if close:
        return close[0]
    related = [a for a in accepted if len(a) >= 3 and (key.startswith(a) or a.startswith(key))]
    return max(related, key=len) if related else None


def parse_list(key: str, value: str) -> list[str]:
    value = value.strip()
    if value.startswith("["):
        if not value.endswith("]"):
            raise UsageError(f"{key}={value!r}: a list must look like [a,b,c]")
        value = value[1:-1]
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise UsageError(f"{key}={value!r}: the list is empty")
    return items


def parse_int(key: str, value: str, minimum: int | None = None, maximum: int | None = None) -> int:
    try:
        number = int(value)
    except ValueError:
        raise UsageError(f"{key}={value!r} is not an integer") from None
    if minimum is not None and number < minimum:
        raise UsageError(f"{key}={number} must be >= {minimum}")
    if maximum is not None and number > maximum:
        raise UsageError(f"{key}={number} is more than evalsuite takes ({maximum:,}); use at most {maximum}")
    return number


def parse_float(key: str, value: str, low: float | None = None, high: float | None = None) -> float:
    try:
        number = float(value)
    except ValueError:
        raise UsageError(f"{key}={value!r} is not a number") from None
    if (low is not None and not number > low) or (high is not None and not number < high):
        raise UsageError(f"{key}={value!r} must be in ({low}, {high})")
    return number


def parse_bool(key: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise UsageError(f"{key}={value!r} is not a boolean; accepted: true, false")


def choice(key: str, value: str, accepted: Sequence[str]) -> str:
    if value not in accepted:
        raise UsageError(f"{key}={value!r}; accepted: {choices(accepted)}")
    return value


def parse_tags(key: str, value: str) -> dict[str, str]:
    tags = {}
    for item in parse_list(key, value):
        name, sep, val = item.partition("=")
        if not sep or not name:
            raise UsageError(f"tags: {item!r} is not key=value; e.g. tags=[role=baseline,branch=main]")
        tags[name] = val
    return tags


def tracking_uri(key: str, value: str) -> str | None:
    """``none`` -> None; anything else must be a backend MLflow can use."""
    if value == "none":
        return None
    from evalsuite.tracking import resolve_uri

    resolve_uri(value)
    return value


def _coerce(policy_id: str, name: str, value: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            return parse_bool(f"{policy_id}:{name}", value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except ValueError:
        raise UsageError(f"policy {policy_id!r}: {name}={value!r} is not a {type(default).__name__}") from None
    return value


# an address: scheme://host, a port (whatever stands between its colon and the next '/' or ':' or
# the end - a port that is not a number is the URL's error to report), then a path
URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^:/]*(?::[^:/=]*(?=$|[/:]))?[^:]*")


def parse_policy(text: str) -> PolicyEntry:
    """``id[:ARG][:key=value...]`` -> PolicyEntry, checked against the registry."""
    from evalsuite import registry
    from evalsuite.harness import resolve_policy
    from evalsuite.plan import PolicyEntry

    policy_id, _, rest = text.partition(":")
    url = URL.match(rest)  # an address's own colons (remote:ws://host:port) are not separators
    if url:
        tail = rest[url.end():].removeprefix(":")
        parts = [url.group(), *(tail.split(":") if tail else [])]
    else:
        parts = text.split(":")[1:]
    spec = registry.policies.get(policy_id)
    params: dict[str, Any] = {}
    for part in parts:
        name, sep, value = part.partition("=")
        if not sep:
            if spec.positional is None:
                raise UsageError(f"policy {policy_id!r} takes no positional argument (got {part!r}); "
                                 f"use key=value with keys: {choices(spec.params) or '(none)'}")
            name, value = spec.positional, part
        params[name] = _coerce(policy_id, name, value, spec.params.get(name))
    entry = PolicyEntry(policy_id, params)
    resolve_policy(entry)
    return entry


def policy(key: str, value: str) -> PolicyEntry:
    return parse_policy(value)


def default_out(fields: dict[str, Any], prefix: str | None = None) -> Path:
    """Deterministic: the same request resumes in the same folder, another gets a new one."""
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return Path("reports") / f"{prefix or fields['suite']}-{digest}"


def run_dir(args: Sequence[str], command: str) -> tuple[Path, list[str]]:
    """The RUN_DIR first argument of report/sync/export, checked to be a run folder."""
    if not args or "=" in args[0]:
        raise UsageError(f"usage: evalsuite {command} RUN_DIR [key=value ...]")
    folder = Path(args[0])
    if not (folder / names.PLAN).exists():
        raise UsageError(f"{folder} is not a run folder (no plan.json)")
    return folder, list(args[1:])
