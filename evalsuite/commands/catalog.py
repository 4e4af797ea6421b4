"""`evalsuite list`: the suites with their tasks, and the policies with their parameters."""

from __future__ import annotations

from evalsuite.errors import UsageError

OPTIONS = ()


def suite_options_table() -> str:
    """The docs' table of the options the installed suites declare (one row per option and text)."""
    from evalsuite import registry

    rows: dict[tuple[str, str, str], list[str]] = {}
    for spec in registry.suites.all().values():
        for o in spec.options:
            rows.setdefault((o.name, o.help, o.default or ""), []).append(spec.id)
    lines = ["| key | suites | meaning | default |", "|---|---|---|---|"]
    lines += [f"| `{name}` | {', '.join(suites)} | {text.replace('|', '&#124;')} | {f'`{default}`' if default else ''} |"
              for (name, text, default), suites in rows.items()]
    return "\n".join(lines)


def run(args: list[str]) -> int:
    """Suites, tasks and policies installed."""
    from evalsuite import registry

    if args:
        raise UsageError(f"`evalsuite list` takes no arguments, got {args[0]!r}")
    print("suites:")
    for spec in registry.suites.all().values():
        print(f"  {spec.id:<18} {len(spec.tasks):>3} tasks  {spec.description}")
        print("      tasks: " + ", ".join(f"{t.id}" + (f" ({','.join(t.tags)})" if t.tags else "") for t in spec.tasks))
        for option in spec.options:
            default = f" (default: {option.default})" if option.default is not None else ""
            print(f"      {option.name}=: {option.help}{default}")
    print("policies:")
    for policy in registry.policies.all().values():
        params = ", ".join(f"{k}={v}" for k, v in policy.params.items())
        extra = f" [{policy.positional}]" if policy.positional else ""
        print(f"  {policy.id:<18}{extra} {policy.description}" + (f"  (params: {params})" if params else ""))
    return 0
