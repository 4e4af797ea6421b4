"""`evalsuite operator`: the operator console of a trial run folder, a web page for a phone."""

from __future__ import annotations

from pathlib import Path

from evalsuite.commands.options import Option, integer, parse, parse_list, run_dir
from evalsuite.errors import UsageError

OPTIONS = (
    Option("host", "address to listen on (default: 127.0.0.1; any other needs the printed token)", "127.0.0.1"),
    Option("port", "port (0: any free one, printed)", "8700", integer(0, 65535)),
    Option("run_cmd", "mode=command: the folder's command template, confirmed on your own command line (a received "
                      "folder never decides what runs); the error without it shows the template"),
    Option("servers", "mode=router: [ws://...,...] the policy servers of the folder's policies, in any order, "
                      "confirmed on your own command line; the robot connects to ws://HOST:PORT/robot",
           parse=parse_list),
)


def run(args: list[str]) -> int:
    """Serve until interrupted; the first line printed is the address to open."""
    import json
    import shlex
    import socket

    import uvicorn

    from evalsuite import trial
    from evalsuite.operator_app import make_app, new_token

    folder, rest = run_dir(args, "operator")
    if not (folder / trial.TRIAL_FILE).exists():
        raise UsageError(f"{folder} is not a trial run folder (no {trial.TRIAL_FILE}); create one with evalsuite trial")
    v = parse(rest, OPTIONS)
    meta = json.loads((folder / trial.TRIAL_FILE).read_text())
    if meta.get("mode") == "command" and v.get("run_cmd") != meta.get("run_cmd"):
        raise UsageError(f"{folder} runs each trial with a command written in the folder; a folder never decides what "
                         f"runs: confirm it on your command line with run_cmd={shlex.quote(str(meta.get('run_cmd')))}"
                         + (" (the one given differs)" if "run_cmd" in v else ""))
    if meta.get("mode") == "router":
        _check_servers(folder, v.get("servers"))
    token = None if v["host"] in ("127.0.0.1", "localhost", "::1") else new_token()
    app = make_app(folder, token, v.get("run_cmd", ""), tuple(v.get("servers", ())))
    family = socket.AF_INET6 if ":" in v["host"] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((v["host"], v["port"]))
        sock.listen(128)  # connections wait in the backlog until the server accepts: the printed address works at once
    except OSError as exc:
        raise UsageError(f"cannot listen on {v['host']}:{v['port']}: {exc.strerror or exc}") from None
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    print(f"operator console for {folder} at http://{v['host']}:{port}/" + (f"?token={token}" if token else "")
          + " (Ctrl-C stops)", flush=True)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        app.state.console.close()
    return 0


def _check_servers(folder: Path, given: list[str] | None) -> None:
    """Router mode: the operator's command line lists the servers the folder's key names (a set: which
    code is which stays hidden)."""
    from evalsuite.plan import load

    _, key = load(folder)
    named = sorted({str(entry.params.get("server", "")) for entry in key.values()})
    if sorted(set(given or [])) != named:
        raise UsageError(f"{folder} forwards the robot to policy servers written in the folder; a folder never decides "
                         f"what drives the robot: confirm them on your command line with servers=[{','.join(named)}]"
                         + (" (the ones given differ)" if given else ""))
