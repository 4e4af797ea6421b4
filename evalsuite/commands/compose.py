"""`evalsuite compose`: GPC weight search - choose the weight on some initial conditions, confirm
against both members on fresh ones."""

from __future__ import annotations

from evalsuite.commands import evaluate, select
from evalsuite.commands.options import MAX_EPISODES, Option, Values, integer, listing, number, one_of
from evalsuite.errors import UsageError

OPTIONS = (*(o for o in select.OPTIONS if o.name != "policies"),
           Option("members", "[family[@checkpoint], family[@checkpoint]] (two generative policies)", parse=listing),
           Option("weights", "[0.1,0.2,...] weights of the first member to try", "[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9]",
                  listing),
           Option("fresh_episodes", "episodes per task of the confirmation on fresh initial conditions", "50",
                  integer(1, MAX_EPISODES)),
           Option("steps", "shared sampling steps", parse=integer(1)),
           Option("schedule", "auto | ddim | uniform", parse=one_of("auto", "ddim", "uniform")),
           Option("mix", "velocity | native", parse=one_of("velocity", "native")))


def run(args: list[str]) -> int:
    """GPC weight search: choose w on some initial conditions, confirm against both members on fresh ones."""
    from evalsuite.compose import run_compose

    v = evaluate.parse_request(args, OPTIONS, targets=("env",))  # no worst-case search per weight
    if "members" not in v:
        raise UsageError("missing members=[...]; usage: evalsuite compose suite=metaworld tasks=[pick-place] "
                         "members=[dp3,mp1] episodes=30 fresh_episodes=50")
    members = [m for item in v["members"] for m in item.split("+") if m]
    weights = [number(0.0, 1.0)("weights", w) for w in v["weights"]]
    gpc_params = {k: v[k] for k in ("steps", "schedule", "mix") if k in v}
    own = {"members", "weights", "fresh_episodes", "steps", "schedule", "mix", "fresh_seed"}  # not evaluate's
    request = evaluate.request(Values({**{k: x for k, x in v.items() if k not in own},
                                       "policies": [m.replace("@", ":checkpoint=", 1) for m in members]},
                                      set(v.given) - own))
    if "out" not in v:
        request = request.replace(out=request.out.with_name("compose-" + request.out.name))
    run_compose(request, members, weights, fresh_episodes=v["fresh_episodes"], fresh_seed=v.get("fresh_seed"),
                gpc_params=gpc_params)
    print((request.out / "compose.md").read_text(), end="")
    return 0
