"""The blinded video review's web page (``evalsuite review RUN``): the operator console's stack -
Starlette, Jinja2 templates with autoescaping, plain HTML forms (every action a POST answered by a
303 redirect, so a reload repeats nothing), no JavaScript (a ``<video controls>`` element plays
the episode), uvicorn on a pre-bound socket, the token middleware off loopback.

Blinding: the page names items by their review codes only and serves each video under its item's
code (``/video/CODE/0``, ``/video/CODE/1``): no policy label, parameter, checkpoint, trial id,
blinding code or file name reaches a rater. The videos have no poster (the last frame would give
the outcome away before the rater watched).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from jinja2 import DictLoader, Environment
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from evalsuite.errors import UsageError
from evalsuite.operator_app import STYLE as CONSOLE_STYLE
from evalsuite.operator_app import _form, _one, _TokenMiddleware
from evalsuite.review import COMPARE, SCORE, Rating, Review

STYLE = CONSOLE_STYLE + """
video{width:100%;background:#000;border-radius:.5rem} .pair{display:flex;flex-wrap:wrap;gap:.5rem}
.pair figure{flex:1 1 18rem;margin:0} figcaption{font-size:2rem;font-weight:700;text-align:center}
.choices{display:flex;flex-wrap:wrap;gap:.5rem} .choices button{flex:1 1 8rem}
@media (min-width:60rem){body{max-width:90rem}}
"""

TEMPLATES = {
    "base.html": """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} - evalsuite review</title><style>{{ style }}</style></head><body>
<nav><a href="/next">overview</a> <small>rater: {{ rater or "-" }}</small></nav>
{% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
{% block body %}{% endblock %}</body></html>""",
    "who.html": """{% extends "base.html" %}{% block body %}<h1>Who is rating?</h1>
<form method="post" action="/rater">{% if raters %}<fieldset><legend>Your name</legend>{% for r in raters %}
<label><input type="radio" name="rater" value="{{ r }}" required> {{ r }}</label>{% endfor %}</fieldset>
{% else %}<label>Your name <input type="text" name="rater" required autocomplete="name"></label>{% endif %}
<button class="go" type="submit">Continue</button></form>{% endblock %}""",
    "next.html": """{% extends "base.html" %}{% block body %}<h1>Video review</h1>
<p>Watch each video and say what happened. You never see which policy ran: every item has its own code.</p>
<p>Episodes scored: {{ scored }} of {{ n_score }}.{% if n_compare %} Pairs compared: {{ compared }} of {{ n_compare }}.{% endif %}</p>
{% if scored < n_score %}<a class="button" href="/next/score">Score the next episode</a>{% endif %}
{% if compared < n_compare %}<a class="button" href="/next/compare">Compare the next pair</a>{% endif %}
{% if scored == n_score and compared == n_compare %}<h2>All done - thank you</h2>{% endif %}
{% endblock %}""",
    "score.html": """{% extends "base.html" %}{% block body %}
<h1>Episode <span class="code">{{ item.code }}</span></h1><p>Task: {{ item.task }}</p>
<video controls muted playsinline preload="metadata" src="/video/{{ item.code }}/0"></video>
<form method="post" action="/item/{{ item.code }}/score"><fieldset><legend>Did it succeed?</legend>
<label><input type="radio" name="success" value="yes" required> success</label>
<label><input type="radio" name="success" value="no"> failure</label></fieldset>
{% if milestones %}<label>Furthest stage reached <select name="furthest"><option value="-1">none</option>
{% for m in milestones %}<option value="{{ loop.index0 }}">{{ m }}</option>{% endfor %}</select></label>{% endif %}
<fieldset><legend>What went wrong (if anything)</legend>{% for t in tags %}
<label><input type="checkbox" name="tags" value="{{ t }}"> {{ t }}</label>{% endfor %}</fieldset>
<label>Notes <textarea name="notes" rows="2"></textarea></label>
<button class="go" type="submit">Save and go on</button></form>{% endblock %}""",
    "compare.html": """{% extends "base.html" %}{% block body %}
<h1>Pair <span class="code">{{ item.code }}</span></h1><p>Task: {{ item.task }}. Same start, two runs: which did better?</p>
<div class="pair"><figure><figcaption>A</figcaption>
<video controls muted playsinline preload="metadata" src="/video/{{ item.code }}/0"></video></figure>
<figure><figcaption>B</figcaption>
<video controls muted playsinline preload="metadata" src="/video/{{ item.code }}/1"></video></figure></div>
<form method="post" action="/item/{{ item.code }}/compare" class="choices">
<button class="go" type="submit" name="choice" value="left">A is better</button>
<button type="submit" name="choice" value="tie">Tie</button>
<button class="go" type="submit" name="choice" value="right">B is better</button></form>{% endblock %}""",
}

_env = Environment(loader=DictLoader(TEMPLATES), autoescape=True)


def _rater(request: Request) -> str:
    return unquote(request.cookies.get("rater", ""))


def _page(name: str, request: Request, status: int = 200, **context: Any) -> HTMLResponse:
    html = _env.get_template(name).render(style=STYLE, rater=_rater(request), title=context.pop("title", "review"),
                                          **context)
    return HTMLResponse(html, status_code=status)


def make_app(run_dir: Path, token: str | None = None, seed: int | None = None,
             raters: tuple[str, ...] = ()) -> Starlette:
    """The review of ``run_dir``; ``token``: required of every request (None on loopback);
    ``seed``: the order's seed for a new review; ``raters``: the names allowed (empty: any)."""
    pages = _Pages(Review(run_dir, seed, raters))
    app = Starlette(routes=[
        Route("/", pages.home), Route("/rater", pages.who, methods=["GET", "POST"]), Route("/next", pages.overview),
        Route("/next/{kind}", pages.next_item), Route("/item/{code}", pages.item),
        Route("/item/{code}/{action}", pages.rate, methods=["POST"]), Route("/video/{code}/{side:int}", pages.video),
    ], exception_handlers={UsageError: pages.usage_error})
    app.state.review = pages.review
    if token:
        app.add_middleware(_TokenMiddleware, token=token)
    return app


class _Pages:
    """The review's pages and its one form action (rate), which ends in a redirect."""

    def __init__(self, review: Review) -> None:
        self.review = review

    async def home(self, request: Request) -> Response:
        return RedirectResponse("/next" if _rater(request) else "/rater", status_code=303)

    async def who(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                name = self.review.check_rater(_one(await _form(request), "rater"))
            except UsageError as exc:
                return _page("who.html", request, 400, error=str(exc), raters=self.review.raters)
            response = RedirectResponse("/next", status_code=303)
            response.set_cookie("rater", quote(name), httponly=True, samesite="strict")
            return response
        return _page("who.html", request, raters=self.review.raters)

    def _counts(self, rater: str) -> dict[str, int]:
        items = self.review.items
        n_score, n_compare = sum(i.kind == SCORE for i in items), sum(i.kind == COMPARE for i in items)
        return {"n_score": n_score, "n_compare": n_compare,
                "scored": n_score - len(self.review.left(rater, SCORE)),
                "compared": n_compare - len(self.review.left(rater, COMPARE))}

    async def overview(self, request: Request) -> Response:
        rater = _rater(request)
        if not rater:
            return RedirectResponse("/rater", status_code=303)
        return _page("next.html", request, **self._counts(rater))

    async def next_item(self, request: Request) -> Response:
        rater = _rater(request)
        if not rater:
            return RedirectResponse("/rater", status_code=303)
        item = self.review.next_for(rater, request.path_params["kind"])
        return RedirectResponse(f"/item/{item.code}" if item else "/next", status_code=303)

    async def item(self, request: Request) -> Response:
        rater = _rater(request)
        if not rater:
            return RedirectResponse("/rater", status_code=303)
        item = self.review.item(request.path_params["code"])
        if (rater, item.code) in self.review.rated:
            raise UsageError(f"you rated item {item.code} already; go on with the next one")
        return _page(f"{item.kind}.html", request, title=item.code, item=item, tags=self.review.tags,
                     milestones=self.review.milestones.get(item.task, []))

    async def rate(self, request: Request) -> Response:
        rater = _rater(request)
        if not rater:
            return RedirectResponse("/rater", status_code=303)
        code, action = request.path_params["code"], request.path_params["action"]
        form = await _form(request)
        if action == SCORE and _one(form, "success") not in ("yes", "no"):
            raise UsageError("say whether the episode succeeded")
        try:
            furthest = int(_one(form, "furthest", "-1") or -1)
        except ValueError:
            raise UsageError(f"milestone {_one(form, 'furthest')!r} is not one of this task's") from None
        rating = Rating(success=_one(form, "success") == "yes", furthest=furthest, tags=tuple(form.get("tags", [])),
                        notes=_one(form, "notes").strip(), choice=_one(form, "choice"))
        self.review.rate(rater, code, action, rating)
        kind = self.review.item(code).kind
        return RedirectResponse(f"/next/{kind}", status_code=303)

    async def video(self, request: Request) -> Response:
        path = self.review.video(request.path_params["code"], int(request.path_params["side"]))
        return FileResponse(path, media_type="video/mp4")  # no file name: it holds the trial id

    async def usage_error(self, request: Request, exc: Exception) -> Response:
        rater = _rater(request)
        counts = self._counts(rater) if rater else {"n_score": 0, "n_compare": 0, "scored": 0, "compared": 0}
        return _page("next.html", request, 409, error=str(exc), **counts)
