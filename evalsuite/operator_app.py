"""The operator console's web page (``evalsuite operator RUN``): Starlette, Jinja2 templates and
plain HTML forms, served by uvicorn.

Why this stack: it is already installed beside MLflow (no new dependency), it has no build step,
and plain forms need no JavaScript at all - every action is a POST answered by a redirect, so a
reload never repeats an action and the page works on any phone browser, offline. Every string a
person typed is escaped by Jinja2's autoescaping. Bound to another address than loopback, every
request needs the token printed at start (``?token=...`` once, then a cookie).

Blinding: the page shows trial codes, blocks and initial conditions only; policy names, their
parameters and the command that runs them stay in the run folder.
"""

from __future__ import annotations

import contextlib
import hmac
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from jinja2 import DictLoader, Environment
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from evalsuite import wire
from evalsuite.console import Console, Score
from evalsuite.errors import UsageError

STYLE = """
body{font-family:system-ui,sans-serif;margin:0;padding:1rem;max-width:40rem;margin-inline:auto;font-size:1.1rem}
h1{font-size:1.3rem} .code{font-size:2.5rem;font-weight:700;letter-spacing:.1em}
button,.button{display:block;width:100%;padding:1rem;margin:.5rem 0;font-size:1.2rem;border-radius:.5rem;border:1px solid #555;
background:#eee;text-align:center;color:#000;text-decoration:none;box-sizing:border-box}
button.go{background:#1a7f37;color:#fff} button.stop{background:#b35900;color:#fff} button.abort{background:#a40e26;color:#fff}
fieldset{border:1px solid #999;border-radius:.5rem;margin:.5rem 0} label{display:block;padding:.4rem 0}
img{max-width:100%;border-radius:.5rem} textarea,input[type=text],select{width:100%;font-size:1.1rem;box-sizing:border-box}
.error{background:#ffebe9;border:1px solid #a40e26;padding:.5rem;border-radius:.5rem} nav a{margin-right:1rem}
table{border-collapse:collapse;width:100%;font-size:.9rem} td,th{border-bottom:1px solid #ccc;padding:.3rem;text-align:left}
"""

TEMPLATES = {
    "base.html": """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} - evalsuite operator</title><style>{{ style }}</style></head><body>
<nav><a href="/next">next trial</a><a href="/log">log</a> <small>operator: {{ operator or "-" }}</small></nav>
{% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
{% block body %}{% endblock %}</body></html>""",
    "who.html": """{% extends "base.html" %}{% block body %}<h1>Who is operating?</h1>
<form method="post" action="/operator"><label>Your name <input type="text" name="operator" required
autocomplete="name"></label><button class="go" type="submit">Continue</button></form>{% endblock %}""",
    "next.html": """{% extends "base.html" %}{% block body %}
<p>{{ done }} of {{ total }} trials done.</p>
{% if trial is none %}
  {% if decided %}<h1>Every pair is decided</h1><p>Sequential stopping: no more trials are needed.</p>
  {% else %}<h1>All trials are done</h1>{% endif %}
  <p>Unblind with <code>evalsuite unblind RUN</code>.</p>
{% else %}
<h1>Block {{ trial.ic_index + 1 }} of {{ blocks }}: set up the scene</h1>
<p>{{ ic.text }}</p>{% if ic.photo %}<img src="/photo/{{ trial.ic_index }}" alt="reference photo of the initial condition">{% endif %}
<p>Policy code</p><p class="code">{{ trial.policy_code }}</p>
<a class="button" href="/trial/{{ number }}">Open trial {{ number + 1 }}</a>
{% endif %}{% endblock %}""",
    "trial.html": """{% extends "base.html" %}{% block body %}
<h1>Trial {{ number + 1 }} - block {{ trial.ic_index + 1 }}, policy <span class="code">{{ trial.policy_code }}</span></h1>
<p>{{ ic.text }}</p><p>Task: {{ task.instruction or task.task }}</p>
{% if mode == "command" %}<p>Robot: <strong>{{ state }}</strong></p>
<form method="post" action="/trial/{{ number }}/start"><button class="go" type="submit">Start</button></form>
<form method="post" action="/trial/{{ number }}/stop"><button class="stop" type="submit">Stop</button></form>{% endif %}
<form method="post" action="/trial/{{ number }}/score"><fieldset><legend>Outcome</legend>
<label><input type="radio" name="success" value="yes" required> success</label>
<label><input type="radio" name="success" value="no"> failure</label></fieldset>
{% if task.milestones %}<label>Furthest milestone reached <select name="furthest"><option value="-1">none</option>
{% for m in task.milestones %}<option value="{{ loop.index0 }}">{{ m }}</option>{% endfor %}</select></label>{% endif %}
{% if task.failure_tags %}<fieldset><legend>Failure tags</legend>{% for t in task.failure_tags %}
<label><input type="checkbox" name="tags" value="{{ t }}"> {{ t }}</label>{% endfor %}</fieldset>{% endif %}
<label>Notes <textarea name="notes" rows="2"></textarea></label>
<button class="go" type="submit">Save outcome</button></form>
<form method="post" action="/trial/{{ number }}/abort"><label>Abort (the trial is run again): why?
<input type="text" name="reason" required></label><button class="abort" type="submit">Abort trial</button></form>
{% endblock %}""",
    "log.html": """{% extends "base.html" %}{% block body %}<h1>Scored trials</h1>
<table><tr><th>#</th><th>block</th><th>code</th><th>outcome</th><th>milestone</th><th>tags</th><th>by</th><th></th></tr>
{% for row in rows %}<tr><td>{{ row.number + 1 }}</td><td>{{ row.block }}</td><td>{{ row.code }}</td><td>{{ row.outcome }}</td>
<td>{{ row.milestone }}</td><td>{{ row.tags }}</td><td>{{ row.operator }}</td><td><a href="/trial/{{ row.number }}/correct">correct</a></td></tr>
{% endfor %}</table>
<h2>Corrections</h2><ul>{% for c in corrections %}<li>trial {{ c.number + 1 }}: {{ c.old }} &rarr; {{ c.new }} by {{ c.operator }} ({{ c.why }})</li>{% endfor %}</ul>
{% endblock %}""",
    "correct.html": """{% extends "base.html" %}{% block body %}<h1>Correct trial {{ number + 1 }} (policy {{ trial.policy_code }})</h1>
<p>Recorded: {{ recorded }}</p>
<form method="post" action="/trial/{{ number }}/correct"><fieldset><legend>Outcome</legend>
<label><input type="radio" name="success" value="yes" required> success</label>
<label><input type="radio" name="success" value="no"> failure</label></fieldset>
{% if task.milestones %}<label>Furthest milestone <select name="furthest"><option value="-1">none</option>
{% for m in task.milestones %}<option value="{{ loop.index0 }}">{{ m }}</option>{% endfor %}</select></label>{% endif %}
{% if task.failure_tags %}<fieldset><legend>Failure tags</legend>{% for t in task.failure_tags %}
<label><input type="checkbox" name="tags" value="{{ t }}"> {{ t }}</label>{% endfor %}</fieldset>{% endif %}
<label>Notes <textarea name="notes" rows="2"></textarea></label>
<label>Why the correction? <input type="text" name="why" required></label>
<button class="go" type="submit">Save correction</button></form>{% endblock %}""",
}

_env = Environment(loader=DictLoader(TEMPLATES), autoescape=True)


def _page(name: str, request: Request, status: int = 200, **context: Any) -> HTMLResponse:
    console: Console = request.app.state.console
    html = _env.get_template(name).render(style=STYLE, operator=unquote(request.cookies.get("operator", "")),
                                          title=console.task.task, **context)
    return HTMLResponse(html, status_code=status)


async def _form(request: Request) -> dict[str, list[str]]:
    """An urlencoded form body (plain forms; no multipart parser needed)."""
    return parse_qs((await request.body()).decode("utf-8", errors="replace"), keep_blank_values=True)


def _one(form: dict[str, list[str]], key: str, default: str = "") -> str:
    return (form.get(key) or [default])[0]


def make_app(run_dir: Path, token: str | None = None, run_cmd: str = "", servers: tuple[str, ...] = ()) -> Starlette:
    """The console for ``run_dir``; ``token``: required of every request (None on loopback);
    ``run_cmd`` / ``servers``: the command template or policy servers the operator's command line confirmed."""
    pages = _Pages(Console(run_dir, run_cmd, servers), run_dir)
    app = Starlette(routes=[
        Route("/", pages.home), Route("/operator", pages.who, methods=["GET", "POST"]), Route("/next", pages.next_trial),
        Route("/log", pages.log), Route("/photo/{ic:int}", pages.photo), Route("/trial/{number:int}", pages.trial),
        Route("/trial/{number:int}/correct", pages.correct),
        Route("/trial/{number:int}/{verb}", pages.action, methods=["POST"]),
        WebSocketRoute("/robot", pages.robot),
    ], exception_handlers={UsageError: pages.usage_error})
    app.state.console = pages.console
    if token:
        app.add_middleware(_TokenMiddleware, token=token)
    return app


def _operator(request: Request) -> str:
    return unquote(request.cookies.get("operator", ""))


class _Pages:
    """The console's pages and form actions; each action ends in a redirect (a reload repeats nothing)."""

    def __init__(self, console: Console, run_dir: Path) -> None:
        self.console, self.run_dir = console, run_dir

    def _trial(self, request: Request) -> tuple[int, Any]:
        number = int(request.path_params["number"])
        if not 0 <= number < len(self.console.plan.trials):
            raise UsageError(f"no trial number {number + 1}")
        return number, self.console.plan.trials[number]

    def _ic(self, trial: Any) -> Any:
        conditions = self.console.task.initial_conditions
        return conditions[trial.ic_index % len(conditions)]

    async def home(self, request: Request) -> Response:
        return RedirectResponse("/next" if _operator(request) else "/operator", status_code=303)

    async def who(self, request: Request) -> Response:
        if request.method == "POST":
            name = _one(await _form(request), "operator").strip()
            if not name:
                return _page("who.html", request, 400, error="give your name")
            response = RedirectResponse("/next", status_code=303)
            response.set_cookie("operator", quote(name[:60]), httponly=True, samesite="strict")
            return response
        return _page("who.html", request)

    async def next_trial(self, request: Request) -> Response:
        if not _operator(request):
            return RedirectResponse("/operator", status_code=303)
        console = self.console
        trial = console.next_for(_operator(request))
        context: dict[str, Any] = {"trial": trial, "done": len(console.finished), "total": len(console.plan.trials),
                                   "blocks": len({t.ic_index for t in console.plan.trials}),
                                   "decided": console.decided()}
        if trial is not None:
            context.update(number=console.number[trial.trial_id], ic=self._ic(trial))
        return _page("next.html", request, **context)

    async def trial(self, request: Request) -> Response:
        number, trial = self._trial(request)
        if not _operator(request):
            return RedirectResponse("/operator", status_code=303)
        self.console.claim(trial.trial_id, _operator(request))
        return _page("trial.html", request, trial=trial, number=number, task=self.console.task,
                     mode=self.console.mode, state=self.console.process_state(trial.trial_id), ic=self._ic(trial))

    async def action(self, request: Request) -> Response:
        (number, trial), verb, operator = self._trial(request), request.path_params["verb"], _operator(request)
        if not operator:
            return RedirectResponse("/operator", status_code=303)
        form = await _form(request)
        if verb in ("score", "correct") and _one(form, "success") not in ("yes", "no"):
            raise UsageError("choose success or failure")
        score = Score(_one(form, "success") == "yes", int(_one(form, "furthest", "-1") or -1),
                      tuple(form.get("tags", [])), _one(form, "notes").strip())
        console, trial_id = self.console, trial.trial_id
        actions = {"start": lambda: console.start(trial_id, operator), "stop": lambda: console.stop(trial_id, operator),
                   "abort": lambda: console.abort(trial_id, operator, _one(form, "reason")),
                   "score": lambda: console.score(trial_id, operator, score),
                   "correct": lambda: console.correct(trial_id, operator, score, _one(form, "why"))}
        if verb not in actions:
            return Response("not found", status_code=404)
        actions[verb]()
        where = {"start": f"/trial/{number}", "stop": f"/trial/{number}", "correct": "/log"}.get(verb, "/next")
        return RedirectResponse(where, status_code=303)

    async def correct(self, request: Request) -> Response:
        number, trial = self._trial(request)
        record = self.console.finished.get(trial.trial_id)
        if record is None:
            raise UsageError(f"trial {number + 1} is not scored yet")
        recorded = ("success" if record.success else "failure") + (f" ({record.reason})" if record.reason else "")
        return _page("correct.html", request, trial=trial, number=number, task=self.console.task, recorded=recorded)

    async def log(self, request: Request) -> Response:
        console, milestones = self.console, self.console.task.milestones
        rows = []
        for trial_id, record in sorted(console.finished.items(), key=lambda kv: console.number[kv[0]]):
            furthest = max((i for i, m in enumerate(milestones) if record.milestones.get(m) is not None), default=-1)
            rows.append({"number": console.number[trial_id], "block": record.ic_index + 1, "code": record.policy_code,
                         "outcome": record.status, "milestone": milestones[furthest] if furthest >= 0 else "-",
                         "tags": ", ".join(record.policy_info.get("failure_tags", [])),
                         "operator": record.policy_info.get("operator", "")})
        corrections = [{**c, "number": console.number[c["trial"]]} for c in console.log if c["action"] == "correct"]
        return _page("log.html", request, rows=rows, corrections=corrections)

    async def photo(self, request: Request) -> Response:
        conditions = self.console.task.initial_conditions
        name = conditions[int(request.path_params["ic"]) % len(conditions)].photo
        path = self.run_dir / "photos" / Path(name).name
        if not name or not path.is_file():
            return Response("no photo", status_code=404)
        return FileResponse(path)

    async def robot(self, websocket: WebSocket) -> None:
        """Router mode: the robot's one address. Forwarded, frame by frame, to the policy server of the
        trial started on the console (openpi's protocol both ways); the metadata passed on keeps only
        ``action_dim`` and ``n_action_steps`` - the rest may name the policy."""
        from websockets.asyncio.client import connect

        server = self.console.route()
        await websocket.accept()
        if server is None:
            await websocket.send_text("no trial is running: press Start on the operator console")
            await websocket.close(1013)
            return
        try:
            async with connect(server, max_size=wire.MAX_FRAME_BYTES, compression=None, open_timeout=10) as upstream:
                first = await upstream.recv()
                metadata = wire.unpack(first if isinstance(first, bytes) else first.encode())
                await websocket.send_bytes(wire.pack({k: metadata[k] for k in ("action_dim", "n_action_steps")
                                                      if k in metadata}))
                await _relay(websocket, upstream)
        except WebSocketDisconnect:
            return
        except Exception as exc:  # unreachable, refused, not the protocol: said without the address
            with contextlib.suppress(Exception):
                await websocket.send_text(f"the policy server of this trial failed: {type(exc).__name__}")
                await websocket.close(1011)

    async def usage_error(self, request: Request, exc: Exception) -> Response:
        return _page("next.html", request, 409, error=str(exc), trial=None, done=len(self.console.finished),
                     total=len(self.console.plan.trials), blocks=0, decided=False)


async def _relay(robot: WebSocket, upstream: Any) -> None:
    """Frames both ways until either side leaves."""
    import asyncio

    async def to_server() -> None:
        while True:
            message = await robot.receive()
            if message["type"] == "websocket.disconnect":
                return
            await upstream.send(message["bytes"] if message.get("bytes") is not None else message.get("text", ""))

    async def to_robot() -> None:
        async for frame in upstream:
            await (robot.send_bytes(frame) if isinstance(frame, bytes) else robot.send_text(frame))

    tasks = [asyncio.ensure_future(to_server()), asyncio.ensure_future(to_robot())]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    for task in done:
        task.result()
    with contextlib.suppress(Exception):
        await robot.close()


class _TokenMiddleware:
    """Every request carries the token (``?token=`` once, then a cookie); others get 403."""

    def __init__(self, app: Any, token: str) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":  # the robot's address: the token in its query string
            given = parse_qs(scope.get("query_string", b"").decode()).get("token", [""])[0]
            if hmac.compare_digest(given, self.token):
                await self.app(scope, receive, send)
            else:
                await receive()
                await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        given = request.query_params.get("token") or request.cookies.get("token") or ""
        if not hmac.compare_digest(given, self.token):
            await Response("a token is needed: open the address the console printed", status_code=403)(
                scope, receive, send)
            return
        if request.query_params.get("token"):
            response = RedirectResponse(request.url.path, status_code=303)
            response.set_cookie("token", self.token, httponly=True, samesite="strict")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def new_token() -> str:
    return secrets.token_urlsafe(16)
