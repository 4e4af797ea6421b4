"""`evalsuite select`: choose among candidates (e.g. checkpoints) on one set of initial conditions,
then report the choice on fresh ones - the honest way to pick a checkpoint."""

from __future__ import annotations

from dataclasses import replace

from evalsuite.commands import evaluate
from evalsuite.commands.options import Option, integer

_NOT_HERE = {o.name for o in (*evaluate.STOPPING, *evaluate.VIDEO)}
_HELP = {"policies": "[candidate, candidate, ...] (e.g. checkpoints: [mlp-bc:ckpt/10,mlp-bc:ckpt/20])",
         "seed": "root seed of the selection initial conditions"}
OPTIONS = (*(replace(o, help=_HELP.get(o.name, o.help)) for o in evaluate.OPTIONS if o.name not in _NOT_HERE),
           Option("fresh_seed", "root seed of the confirmation run (default: derived from seed)", parse=integer(0)))


def run(args: list[str]) -> int:
    """Choose among candidates on one set of initial conditions, report the choice on fresh ones."""
    from evalsuite.select import run_select

    v = evaluate.parse_request(args, OPTIONS, targets=("env",))  # no worst-case search per candidate
    request = evaluate.request(v)
    if "out" not in v:
        request = request.replace(out=request.out.with_name("select-" + request.out.name))
    run_select(request, v.get("fresh_seed"))
    print((request.out / "select.md").read_text(), end="")
    print(f"select: {request.out / 'select.json'}")
    return 0
