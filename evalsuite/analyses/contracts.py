"""The observation/action conventions of a run (evalsuite/contract.py) in its report: the suite's,
each policy's, and any mismatch a ``contract=warn`` run accepted. Folders made before contracts
have none and get no section."""

from __future__ import annotations

from typing import Any

from evalsuite import fsio
from evalsuite.analyses import AnalysisInput
from evalsuite.results import Results


def compute(inp: AnalysisInput) -> dict[str, Any] | None:
    contracts = inp.plan.contracts
    if not contracts:
        return None
    return {"tasks": contracts["tasks"],
            "policies": {inp.label[code]: stated for code, stated in contracts["policies"].items() if stated},
            "mismatches": [{**{k: v for k, v in m.items() if k != "code"}, "policy_label": inp.label[m["code"]]}
                           for m in contracts["mismatches"]]}


def _fields(contract: dict[str, Any]) -> str:
    return fsio.one_line(", ".join(f"{field} {value}" for field, value in contract.items()) or "(none stated)")


def report(section: dict[str, Any], results: Results) -> list[str]:
    lines = ["", "### Conventions", "",
             "What each side states about observations and actions beyond their shapes (evalsuite/contract.py), "
             "compared before episode 1: `contract=error` refuses a mismatch, `contract=warn` runs and lists it here.",
             ""]
    by_contract: dict[str, list[str]] = {}
    for task, stated in section["tasks"].items():
        by_contract.setdefault(_fields(stated), []).append(task)
    for fields, tasks in by_contract.items():
        lines.append(f"- the suite, {'every task' if len(tasks) == len(section['tasks']) else ', '.join(tasks)}: {fields}")
    for label, stated in section["policies"].items():
        lines.append(f"- {fsio.one_line(label)}: {_fields(stated)}")
    for m in section["mismatches"]:
        lines.append(f"- **mismatch accepted (contract=warn)**: {fsio.one_line(m['policy_label'])} on {m['task']}: "
                     f"{m['field']}: the policy expects {m['policy']}, the suite gives {m['suite']}")
    return [*lines, ""]
