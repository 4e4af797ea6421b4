"""`evalsuite review RUN [status]`: blinded video review of a run folder's episodes - a web page
where raters score episodes and compare pairs under review codes; `status`: how far each rater is.
`evalsuite report RUN` then adds the review's section (agreement, the detector, a ranking)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalsuite.commands.options import Option, integer, listing, parse, run_dir
from evalsuite.errors import UsageError

OPTIONS = (
    Option("raters", "[name, ...] who may rate (default: anyone who gives a name)", parse=listing),
    Option("host", "address to listen on (default: 127.0.0.1; any other needs the printed token)", "127.0.0.1"),
    Option("port", "port (0: any free one, printed)", "8710", integer(0, 65535)),
    Option("seed", "seed of a new review's order, codes and sides (default: drawn, and recorded either way)",
           parse=integer(0, 2**63 - 1)),
)
ACTIONS = ("serve", "status")


def run(args: list[str]) -> int:
    """Serve RUN's video review until interrupted (the first line is the address), or RUN status: progress."""
    folder, rest = run_dir(args, "review")
    action = "serve"
    if rest and "=" not in rest[0]:
        action, rest = rest[0], rest[1:]
    if action not in ACTIONS:
        raise UsageError(f"unknown review action {action!r}; accepted: {', '.join(ACTIONS)}")
    v = parse(rest, OPTIONS)
    raters = tuple(r.strip() for r in v.get("raters", []) if r.strip())
    if action == "status":
        return _status(folder)
    return _serve(folder, v, raters)


def _status(folder: Path) -> int:
    from evalsuite import names
    from evalsuite.review import COMPARE, SCORE, Review

    if not (folder / names.REVIEW_PLAN).exists():
        raise UsageError(f"{folder} has no review yet: start one with evalsuite review {folder}")
    review = Review(folder)
    try:
        n = {kind: sum(i.kind == kind for i in review.items) for kind in (SCORE, COMPARE)}
        print(f"{n[SCORE]} episodes to score, {n[COMPARE]} pairs to compare (seed {review.seed})")
        for rater, counts in sorted(review.progress().items()):
            print(f"  {rater}: {counts[SCORE]}/{n[SCORE]} scored, {counts[COMPARE]}/{n[COMPARE]} compared")
        if review.unreviewed:
            print(f"  {len(review.unreviewed)} videos rendered after the review started are not in it")
    finally:
        review.close()
    return 0


def _serve(folder: Path, v: dict[str, Any], raters: tuple[str, ...]) -> int:
    import socket

    import uvicorn

    from evalsuite.operator_app import new_token
    from evalsuite.review_app import make_app
    from evalsuite.runlock import RunLock

    host, port, seed = v["host"], v["port"], v.get("seed")
    token = None if host in ("127.0.0.1", "localhost", "::1") else new_token()
    with RunLock(folder, purpose="review"):  # one review server per folder (a killed one's lock is freed)
        app = make_app(folder, token, seed=seed, raters=raters)
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(128)  # connections wait in the backlog until the server accepts: the address works at once
        except OSError as exc:
            app.state.review.close()
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        review = app.state.review
        print(f"video review of {folder} at http://{host}:{sock.getsockname()[1]}/" + (f"?token={token}" if token else "")
              + f" ({len(review.items)} items; Ctrl-C stops)", flush=True)
        if review.unreviewed:
            print(f"note: {len(review.unreviewed)} videos rendered after the review started are not in it", flush=True)
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:
            pass
        finally:
            review.close()
    return 0
