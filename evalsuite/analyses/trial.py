"""How a trial with people in the loop ran (``evalsuite trial``): the mode - which says how far the
blinding went - the operators, the aborted attempts and the corrected outcomes. Simulated runs get
no section."""

from __future__ import annotations

from typing import Any

from evalsuite import fsio
from evalsuite.analyses import AnalysisInput
from evalsuite.results import Results

MODES = {
    "command": "each trial ran a command the operator never saw (started and stopped from the console): the operator "
               "knew only the blinding code",
    "router": "the robot's computer dialled the console, which forwarded it to the policy server of the trial started "
              "(the operator knew only the blinding code; the metadata passed on named no policy)",
    "manual": "the operator ran the robot by hand: the blinding rests on a second person having chosen the policy "
              "for each code, which evalsuite cannot check",
}


def compute(inp: AnalysisInput) -> dict[str, Any] | None:
    if not inp.plan.suite.startswith("trial:"):
        return None
    operators = sorted({str(r.policy_info.get("operator", "")) for r in inp.records} - {""})
    return {"mode": inp.plan.suite_options.get("mode", "command"), "operators": operators,
            "aborted": sum(1 for r in inp.records if not r.is_outcome),
            "corrected": sum(1 for r in inp.records if r.reason.startswith("corrected:"))}


def report(section: dict[str, Any], results: Results) -> list[str]:
    return ["", "## How the trials ran", "",
            f"Mode `{section['mode']}`: {MODES.get(section['mode'], section['mode'])}. Operators: "
            f"{fsio.one_line(', '.join(section['operators'])) or '(none recorded)'}; {section['aborted']} attempt(s) "
            f"aborted and run again; {section['corrected']} outcome(s) corrected after scoring (the console's log "
            "keeps the old values, who and when).", ""]
