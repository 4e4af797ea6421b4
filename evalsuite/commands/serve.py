"""`evalsuite serve`: one registered policy for one task over openpi's websocket protocol."""

from __future__ import annotations

import asyncio
from typing import Any

from evalsuite.commands.options import Option, integer, parse, policy
from evalsuite.errors import UsageError

OPTIONS = (
    Option("policy", "the policy: id, id:ARG or id:key=value[:key=value]", parse=policy),
    Option("suite", "suite id (see `evalsuite list`): the observations the policy is served for"),
    Option("task", "task of the suite (default: its first default task)"),
    Option("host", "address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0: every interface)",
           "127.0.0.1"),
    Option("port", "port to listen on (0: any free one, printed)", "8000", integer(0, 65535)),
    Option("threads", "inference threads of torch and BLAS (default: their own, all cores); 1 beside simulators on the "
           "same machine", parse=integer(1, 4096)),
    Option("seed", "episode seeds for clients that do not send evalsuite.episode_start: seed + connection number",
           "0", integer(0)),
)


def run(args: list[str]) -> int:
    """Serve until interrupted; the first line printed names the address (with the port chosen)."""
    from evalsuite import registry
    from evalsuite.harness import build_policy, policy_suite
    from evalsuite.interfaces import check_compatible
    from evalsuite.runner.envs import env_info
    from evalsuite.serving import PolicyServer, run_server

    v = parse(args, OPTIONS)
    for key in ("policy", "suite"):
        if key not in v:
            raise UsageError(f"missing {key}=...; usage: evalsuite serve policy=ID[:key=value] suite=ID [task=ID] "
                             "[host=127.0.0.1] [port=8000]")
    if "threads" in v:
        from evalsuite.runner.parallel import limit_threads

        limit_threads(v["threads"])
    suite = registry.suites.get(v["suite"])
    task = suite.task(v["task"]).id if "task" in v else (suite.default_tasks or suite.task_ids)[0]
    entry = v["policy"]
    policy = build_policy(entry.id, entry.params, task, suite)  # the command's own line: consent to its pickles
    info = env_info(suite, task, suite.task(task).max_steps)
    check_compatible(entry.label, policy.requirements, info, task)
    req = policy.requirements
    metadata: dict[str, Any] = {
        "server": "evalsuite serve", "policy": entry.label, "suite": suite.id, "task": task,
        "instruction": policy_suite(suite).task(task).instruction, "action_dim": req.action_dim,
        "chunked": req.chunked, "n_obs_steps": req.n_obs_steps, "fingerprint": policy.fingerprint(),
    }
    server = PolicyServer(policy, info, metadata, seed=v["seed"])
    if req.contract:
        server.metadata["contract"] = {_wire_field(server.layout, f): value for f, value in req.contract.items()}

    def ready(port: int) -> None:
        print(f"serving {entry.label} for {suite.id}/{task} at ws://{v['host']}:{port} (Ctrl-C stops)", flush=True)

    try:
        asyncio.run(run_server(server, v["host"], v["port"], ready))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise UsageError(f"cannot listen on {v['host']}:{v['port']}: {exc.strerror or exc}") from None
    finally:
        server.close()
    return 0


def _wire_field(layout: Any, field: str) -> str:
    """A contract field under the name its observation travels by (``observation.images.<camera>.range``)."""
    base, _, attribute = field.rpartition(".")
    if base == "action" or (base in dict(layout.state) and len(layout.state) > 1):
        return field
    return f"{layout.wire_name(base)}.{attribute}"
