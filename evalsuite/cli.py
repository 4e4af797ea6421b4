"""Command line: ``evalsuite COMMAND key=value ...`` (the override syntax of Hydra).

    evalsuite evaluate suite=metaworld-smoke policies=[scripted,noisy-scripted] episodes=20 seed=0 out=runs/demo
    evalsuite report RUN_DIR [interval=jeffreys level=0.9 correction=bh]
    evalsuite sync RUN_DIR tracking_uri=http://127.0.0.1:5000
    evalsuite list
    evalsuite plan p_baseline=0.7 delta=0.1 [alpha=0.05 power=0.8 design=paired|independent discordance=0.2 pilot=RUN_DIR]
    evalsuite plan p_baseline=0.8 delta=0.15 margin=0.05 [tasks=3]   (episodes for the regression gate)
    evalsuite gate baseline=RUN (candidate=RUN | candidate_policy=ID) [margin=0.05 alpha=0.05 sequential=true budget=N]
    evalsuite select suite=metaworld-smoke policies=[mlp-bc:ckpt/a,mlp-bc:ckpt/b] episodes=50 [fresh_seed=N]
    evalsuite compose suite=metaworld tasks=[drawer-open] members=[dp3,dp3@path/to/other] episodes=30 fresh_episodes=50
    evalsuite evaluate suite=metaworld-family/pick-place policies=[scripted,dp3] [vary=[obs_noise,action_noise]]
    evalsuite train policy=mp1 suite=metaworld task=hammer demos=10 seed=0 out=checkpoints/mp1-hammer [iters=3000]
    evalsuite demos suite=robomimic task=lift n=200 out=data/lift.hdf5 [seed=0 expert=scripted]
    evalsuite check-policy policy=my-policy suite=metaworld-smoke task=drawer-open   (a plugin's conformance)
    evalsuite check-suite suite=my-suite [tasks=[...]]

A policy is ``id``, ``id:ARG`` (its positional parameter, e.g. a checkpoint path) or
``id:key=value[:key=value]``. A user mistake prints one line naming the bad value and what is
accepted, and exits with code 2. ``gate`` exits 0 (pass), 1 (regressed) or 3 (inconclusive).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import EntryPoint

from evalsuite.errors import UsageError, choices

CommandRun = Callable[[list[str]], int]  # a command: its arguments -> exit code


def command_help(command: str, extra: dict[str, EntryPoint], args: Sequence[str] = ()) -> str:
    """`evalsuite CMD --help`: what the command does and every key it takes, from the declarations
    its parser uses (a plugin command: its module's ``OPTIONS``, or a ``KEYS`` table of help texts);
    with ``suite=ID`` among ``args``, also the options that suite declares."""
    from evalsuite.commands import module
    from evalsuite.commands.options import Option, help_text

    if command in extra:
        try:
            function = extra[command].load()
            options = getattr(importlib.import_module(function.__module__), "OPTIONS", None)
            if options is None:
                keys = getattr(importlib.import_module(function.__module__), "KEYS", {}) or {}
                options = tuple(Option(name, text) for name, text in keys.items())
        except Exception:  # the command itself will say why it cannot load
            function, options = None, ()
    else:
        function, options = module(command).run, module(command).OPTIONS
        if command in ("evaluate", "select", "compose"):
            from evalsuite.commands.evaluate import suite_options

            options = (*options, *suite_options(args))
    doc = (function.__doc__ or "").strip().splitlines()[0] if function is not None and function.__doc__ else ""
    return help_text(f"evalsuite {command}" + (f": {doc}" if doc else ""), options)


def plugin_commands() -> dict[str, EntryPoint]:
    """Commands that plugins add through the ``evalsuite.commands`` entry-point group (the built-in
    policies add ``train``), loaded only when named."""
    from importlib.metadata import entry_points

    from evalsuite.commands import BUILTIN

    return {ep.name: ep for ep in entry_points(group="evalsuite.commands") if ep.name not in BUILTIN}


def _utf8_console() -> None:
    """Under a non-UTF-8 locale (``LC_ALL=C``) a label or path with a non-ASCII character must
    neither crash a print nor vanish: what the terminal cannot show is escaped."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure") and (stream.encoding or "").lower().replace("-", "") != "utf8":
            stream.reconfigure(errors="backslashreplace")


def _decoded(arg: str) -> str:
    """An argument as the UTF-8 the user typed: under a non-UTF-8 locale Python hands over its
    bytes as lone surrogates (``group=\\udcce\\udcb2`` for ``group=β``), which no file or figure can hold."""
    try:
        arg.encode("utf-8")
        return arg
    except UnicodeEncodeError:
        return os.fsencode(arg).decode("utf-8", errors="replace")


def main(argv: list[str] | None = None) -> int:
    _utf8_console()
    # --key=value is key=value (draccus/LeRobot users type the dashes)
    argv = [a[2:] if a.startswith("--") and "=" in a else a for a in map(_decoded, sys.argv[1:] if argv is None else argv)]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0 if argv else 2
    command, args = argv[0], argv[1:]
    from evalsuite.commands import BUILTIN, module

    extra = plugin_commands()
    if command not in BUILTIN and command not in extra:
        print(f"evalsuite: error: unknown command {command!r}; accepted: {choices([*BUILTIN, *extra])}",
              file=sys.stderr)
        return 2
    if any(a in ("-h", "--help") for a in args):
        print(command_help(command, extra, [a for a in args if a not in ("-h", "--help")]))
        return 0
    try:
        if command in extra:
            try:
                run: CommandRun = extra[command].load()
            except Exception as exc:  # a broken plugin names itself in one line
                raise UsageError(f"command {command!r} ({extra[command].value}) failed to load: "
                                 f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}") from exc
            return run(args)
        builtin: CommandRun = module(command).run
        return builtin(args)
    except UsageError as exc:
        print(f"evalsuite: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an unwritable or full output folder, a file that cannot be read
        where = f": {exc.filename}" if exc.filename else ""
        print(f"evalsuite: error: {exc.strerror or exc}{where}; episodes already journaled are kept - fix this "
              "and rerun the same command to resume", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("evalsuite: interrupted; finished episodes are in the journal - rerun the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
