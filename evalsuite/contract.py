"""The observation/action contract: conventions beyond key names and shapes, checked before episode 1.

vla-eval found convention bugs (a quaternion's frame, the gripper's polarity, a flipped wrist
image) that moved success rates by up to 56 points while every shape matched. A suite states its
conventions (``EnvInfo.contract``) and a policy may state what it assumes
(``PolicyRequirements.contract``, or a policy server's metadata ``contract``); a field both state
with different values is a mismatch - refused before any episode (``contract=error``, the default)
or recorded and reported (``contract=warn``). A field only one side states is not checked.

A contract is a flat map ``"<observation key>.<attribute>"`` or ``"action.<attribute>"`` -> value:

- observations: ``dtype`` ("uint8", "float32", ...), ``shape``, ``range`` ([low, high], e.g.
  [0, 255] or [0, 1] for images), ``units`` ("m", "rad"), ``orientation`` (images: "upright" - the
  first row is the top of the scene - or "upside-down"), ``rotation`` (a pose's representation);
- the action: ``dim``, ``range``, ``control`` ("ee-delta-position", "osc-pose-delta",
  "joint-position", ...), ``rotation`` ("none", "axis-angle", "quaternion-xyzw", "euler-xyz", ...)
  and ``gripper`` ("+1 closes" or "+1 opens").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from evalsuite.errors import UsageError

OBSERVATION_ATTRIBUTES = ("dtype", "shape", "range", "units", "orientation", "rotation")
ACTION_ATTRIBUTES = ("dim", "range", "control", "rotation", "gripper")
MODES = ("error", "warn")


@dataclass(frozen=True)
class Mismatch:
    field: str
    policy: Any
    suite: Any

    def __str__(self) -> str:
        return f"{self.field}: the policy expects {_show(self.policy)}, the suite gives {_show(self.suite)}"

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "policy": self.policy, "suite": self.suite}


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(list(value) if isinstance(value, tuple) else value)


def _normal(value: Any) -> Any:
    """Values compared as JSON holds them: tuples as lists, integral floats as numbers."""
    if isinstance(value, list | tuple):
        return [_normal(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def check_fields(contract: Mapping[str, Any], who: str) -> dict[str, Any]:
    """A declared contract as JSON values; an attribute outside the vocabulary is a usage error
    naming it (a typo would otherwise be a check that never runs)."""
    out: dict[str, Any] = {}
    for field, value in contract.items():
        base, _, attribute = field.rpartition(".")
        accepted = ACTION_ATTRIBUTES if base == "action" else OBSERVATION_ATTRIBUTES
        if not base or attribute not in accepted:
            raise UsageError(f"{who}: contract field {field!r} is not <observation key>.<{'|'.join(OBSERVATION_ATTRIBUTES)}> "
                             f"or action.<{'|'.join(ACTION_ATTRIBUTES)}>")
        out[field] = _normal(value)
    return out


def mismatches(policy: Mapping[str, Any], suite: Mapping[str, Any]) -> list[Mismatch]:
    """The fields both sides state with different values, in the policy's order."""
    return [Mismatch(field, _normal(value), _normal(suite[field])) for field, value in policy.items()
            if field in suite and _normal(value) != _normal(suite[field])]


def enforce(found: list[Mismatch], label: str, task: str, mode: str) -> None:
    """``error``: every mismatch in one line, before any episode; ``warn``: the caller records them."""
    if found and mode == "error":
        raise UsageError(f"policy {label!r} does not match task {task!r}'s conventions: "
                         + "; ".join(str(m) for m in found) + " (contract=warn runs anyway and reports it)")


def parse_mode(key: str, value: str) -> str:
    if value not in MODES:
        raise UsageError(f"{key}={value!r}; accepted: {', '.join(MODES)}")
    return value
