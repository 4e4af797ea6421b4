"""The built-in commands, one module each: ``OPTIONS`` (their keys, declared once in
``evalsuite.commands.options``) and ``run(args) -> exit code``. Plugins add commands through the
``evalsuite.commands`` entry-point group (a ``run``-like function; ``OPTIONS`` or ``KEYS`` in its
module give its ``--help``)."""

from __future__ import annotations

import importlib
from types import ModuleType

BUILTIN = {"evaluate": "evaluate", "report": "report", "sync": "sync", "list": "catalog", "demos": "demos",
           "plan": "plan", "gate": "gate", "select": "select", "compose": "compose", "export": "export",
           "video": "video", "check-policy": "check_policy", "check-suite": "check_suite",
           "serve": "serve", "trial": "trial", "operator": "operator", "unblind": "unblind", "review": "review",
           "leaderboard": "leaderboard", "agreement": "agreement"}


def module(command: str) -> ModuleType:
    return importlib.import_module(f"evalsuite.commands.{BUILTIN[command]}")
