"""Blinded video review (``evalsuite review RUN``): the items (every episode to score, every
same-start pair of policies to compare) under fresh codes in a seeded, recorded order; ratings
journaled, refused twice, replayed after a cut line; one-line errors; and a whole review in
Chromium by two simulated raters (a phone and a desktop) on a Meta-World run with videos - a
reload mid-rating and a SIGKILLed server lose nothing, no response body names a policy, and the
report's kappa, detector agreement and Bradley-Terry ranking match a hand computation from the
ratings made. Screenshots are kept (``.test-artifacts/review-*.png``)."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from evalsuite import names, video
from evalsuite import review as review_mod
from evalsuite.cli import main
from evalsuite.errors import UsageError
from evalsuite.journal import EpisodeRecord, read
from evalsuite.plan import load
from tests.conftest import REPO
from tests.servers import ServedProcess

EXAMPLE = REPO / "reports" / "example"  # a committed run: 3 tasks x 20 initial conditions x 3 policies


def _example_run(tmp_path: Path, ics: int = 4, videos: bool = True) -> Path:
    """The example run's plan, key and journal, with stand-in video files for drawer-open's first
    ``ics`` initial conditions (the review serves files; it never decodes them)."""
    run = tmp_path / "run"
    run.mkdir()
    for name in (names.PLAN, names.KEY, names.JOURNAL):
        shutil.copy(EXAMPLE / name, run / name)
    if videos:
        (run / names.VIDEOS).mkdir()
        index = {}
        for r in read(run / names.JOURNAL):
            if r.task == "drawer-open" and r.ic_index < ics:
                index[r.trial_id] = video.file_name(r.trial_id)
                (run / names.VIDEOS / index[r.trial_id]).write_bytes(b"\x00\x00\x00\x18ftypmp42 stand-in")
        (run / names.VIDEOS / names.VIDEO_INDEX).write_text(json.dumps(index))
    return run


def _final(run: Path) -> dict[str, EpisodeRecord]:
    return {r.trial_id: r for r in read(run / names.JOURNAL)}


@pytest.mark.unit
def test_items_are_every_episode_and_every_same_start_pair_under_fresh_codes(tmp_path):
    run = _example_run(tmp_path)
    final = _final(run)
    review = review_mod.Review(run, seed=3)
    items = review.items
    scores = [i for i in items if i.kind == "score"]
    pairs = [i for i in items if i.kind == "compare"]
    assert sorted(i.trials[0] for i in scores) == sorted(review.videos) and len(scores) == 12
    expected = {frozenset((f"drawer-open/{ic:05d}/{a}", f"drawer-open/{ic:05d}/{b}"))
                for ic in range(4) for a, b in itertools.combinations("ABC", 2)}
    assert {frozenset(p.trials) for p in pairs} == expected and len(pairs) == 12
    codes = [i.code for i in items]
    assert len(set(codes)) == len(codes) == 24
    assert all(len(c) == review_mod.CODE_LENGTH and set(c) <= set(review_mod.CODE_LETTERS) for c in codes)
    # which policy is shown left is drawn: not always the first code
    lefts = {final[p.trials[0]].policy_code < final[p.trials[1]].policy_code for p in pairs}
    assert lefts == {True, False}
    assert [i.kind for i in items] != sorted(i.kind for i in items)  # one shuffled order, not grouped
    assert review.milestones == {}  # the example run has no milestones: none offered
    review.close()
    again = review_mod.Review(run)  # recorded: the same items, codes, sides and order
    assert again.items == items and again.seed == 3
    again.close()
    with pytest.raises(UsageError, match="drawn with seed=3"):
        review_mod.Review(run, seed=4)
    other = review_mod.make_items(final, review.videos, 4)
    assert [i.code for i in other] != codes and {frozenset(i.trials) for i in other} == {frozenset(i.trials)
                                                                                        for i in items}


@pytest.mark.unit
def test_ratings_are_journaled_never_given_twice_and_a_cut_line_is_dropped(tmp_path):
    run = _example_run(tmp_path)
    review = review_mod.Review(run, seed=3, raters=("ann", "bea"))
    first = review.next_for("ann", "score")
    review.rate("ann", first.code, "score", review_mod.Rating(success=True, tags=("stalled",), notes="<b>slow</b>"))
    assert review.next_for("ann", "score") != first and review.next_for("bea", "score") == first
    with pytest.raises(UsageError, match="you rated item .* already"):
        review.rate("ann", first.code, "score", review_mod.Rating(success=False))
    with pytest.raises(UsageError, match="unknown rater action 'delete'; accepted: score, compare"):
        review.rate("ann", first.code, "delete", review_mod.Rating())
    with pytest.raises(UsageError, match="not one of this review's raters"):
        review.rate("eve", first.code, "score", review_mod.Rating(success=True))
    with pytest.raises(UsageError, match="failure tag 'bored'"):
        review.rate("bea", first.code, "score", review_mod.Rating(success=True, tags=("bored",)))
    with pytest.raises(UsageError, match="milestone 0 is not one of this task's"):
        review.rate("bea", first.code, "score", review_mod.Rating(success=True, furthest=0))
    pair = review.next_for("ann", "compare")
    with pytest.raises(UsageError, match="is to compare, not to score"):
        review.rate("ann", pair.code, "score", review_mod.Rating(success=True))
    with pytest.raises(UsageError, match="choose A, B or a tie"):
        review.rate("ann", pair.code, "compare", review_mod.Rating(choice="both"))
    review.rate("ann", pair.code, "compare", review_mod.Rating(choice="tie"))
    review.close()
    with open(run / names.REVIEW, "ab") as fh:  # the server killed while writing: a cut line
        fh.write(b'{"action": "score", "rater": "bea", "item"')
    again = review_mod.Review(run)
    assert set(again.rated) == {("ann", first.code), ("ann", pair.code)}
    kept = again.rated["ann", first.code]
    assert kept["trials"] == list(first.trials) and kept["success"] is True and kept["tags"] == ["stalled"]
    assert kept["notes"] == "<b>slow</b>" and kept["at"] > 0
    again.rate("bea", first.code, "score", review_mod.Rating(success=False))  # starts on a clean line
    again.close()
    lines = (run / names.REVIEW).read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line)["rater"] in ("ann", "bea") for line in lines)


@pytest.mark.parametrize("args,fragment", [
    (["frobnicate"], "unknown review action 'frobnicate'; accepted: serve, status"),
    (["status"], "has no review yet"),
    (["port=99999"], "port=99999 is more than evalsuite takes"),
    ([], "has no videos to review: render them with `evalsuite video"),
])
def test_bad_input_is_one_line(tmp_path, capsys, args, fragment):
    run = _example_run(tmp_path, videos=False)
    assert main(["review", str(run), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1, err
    assert not (run / names.REVIEW_PLAN).exists()


@pytest.mark.unit
def test_off_loopback_every_request_needs_the_token_and_one_server_holds_the_folder(tmp_path, capsys):
    from starlette.testclient import TestClient

    from evalsuite.review_app import make_app
    from evalsuite.runlock import RunLock

    run = _example_run(tmp_path)
    app = make_app(run, token="s3cret", seed=1)
    with TestClient(app) as client:
        code = app.state.review.items[0].code
        assert client.get(f"/video/{code}/0").status_code == 403
        assert client.get("/next?token=wrong").status_code == 403
        assert client.get("/next?token=s3cret").status_code == 200  # then the cookie carries it
        assert client.get(f"/video/{code}/0").content == (run / names.VIDEOS / video.file_name(
            app.state.review.items[0].trials[0])).read_bytes()
    app.state.review.close()
    with RunLock(run, purpose="evaluate"):  # a second writer of the folder is refused, in one line
        assert main(["review", str(run), "port=0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "evaluate" in err, err


def _hand_kappa(first: list[bool], second: list[bool]) -> float:
    n = len(first)
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / n
    p1, p2 = sum(first) / n, sum(second) / n
    chance = p1 * p2 + (1 - p1) * (1 - p2)
    return (observed - chance) / (1 - chance)


def _hand_detector(answers: dict[str, dict[str, bool]], final: dict[str, EpisodeRecord]) -> dict[str, int]:
    """Counts against the raters' majority; an even split is left out."""
    counts = dict.fromkeys(("true_positive", "false_negative", "true_negative", "false_positive", "split"), 0)
    for trial in answers["ann"]:
        votes = [answers[r][trial] for r in answers]
        yes, no = sum(votes), len(votes) - sum(votes)
        if yes == no:
            counts["split"] += 1
            continue
        detected = final[trial].success
        name = ("true_positive" if detected else "false_negative") if yes > no else \
            ("false_positive" if detected else "true_negative")
        counts[name] += 1
    return counts


def _check_report(run: Path, answers: dict[str, dict[str, bool]], order: list[str] | None, judgments: int) -> dict:
    """`evalsuite report RUN`'s review section against a hand computation from the answers given."""
    assert main(["report", str(run)]) == 0
    section = json.loads((run / names.RESULTS).read_text())["review"]
    trials = sorted(answers["ann"])
    kappa = section["kappa"]
    assert kappa["statistic"] == "Cohen" and kappa["episodes"] == len(trials)
    assert kappa["estimate"] == pytest.approx(_hand_kappa([answers["ann"][t] for t in trials],
                                                          [answers["bea"][t] for t in trials]), abs=1e-12)
    assert kappa["low"] <= kappa["estimate"] <= kappa["high"]
    detector = section["detector"]
    hand = _hand_detector(answers, _final_of(run))
    assert {k: detector[k] for k in hand} == hand
    assert detector["sensitivity"]["estimate"] == pytest.approx(
        hand["true_positive"] / (hand["true_positive"] + hand["false_negative"]))
    assert detector["specificity"]["estimate"] == pytest.approx(
        hand["true_negative"] / (hand["true_negative"] + hand["false_positive"]))
    strengths = section["ranking"]["strengths"]
    assert section["ranking"]["judgments"] == judgments
    assert all(s["low"] < s["log_strength"] < s["high"] for s in strengths)
    if order is not None:
        assert [s["item"] for s in strengths] == order
        assert strengths[0]["low"] > strengths[-1]["high"]  # the best and the worst are told apart
    text = (run / names.REPORT_MD).read_text()
    assert "## Blinded video review" in text and f"{kappa['estimate']:.2f}" in text
    return section


def _final_of(run: Path) -> dict[str, EpisodeRecord]:
    from evalsuite.api import open_run

    return open_run(run).final()


def _truth(record: EpisodeRecord) -> tuple:
    """How well an episode went, as a rater watching it would judge: success, then how far, then
    the task's dense reward."""
    return record.success, record.progress or 0.0, record.episode_return


@pytest.mark.unit
def test_the_report_section_matches_a_hand_computation(tmp_path):
    """Without a browser or videos: two raters through the state alone, on the example run."""
    run = _example_run(tmp_path, ics=6)
    final = _final(run)
    _, key = load(run)
    review = review_mod.Review(run, seed=5)
    successes = sorted(t for t in review.videos if final[t].success)
    failures = sorted(t for t in review.videos if not final[t].success)
    flipped = {successes[0], failures[0]}  # bea says the opposite of the detector here
    answers: dict[str, dict[str, bool]] = {"ann": {}, "bea": {}}
    for rater in answers:
        for item in review.items:
            if item.kind == "score":
                said = final[item.trials[0]].success != (rater == "bea" and item.trials[0] in flipped)
                answers[rater][item.trials[0]] = said
                review.rate(rater, item.code, "score", review_mod.Rating(success=said))
            else:
                left, right = (_truth(final[t]) for t in item.trials)
                choice = "left" if left > right else "right" if right > left else "tie"
                review.rate(rater, item.code, "compare", review_mod.Rating(choice=choice))
    review.close()
    section = _check_report(run, answers, None, 2 * 18)
    assert section["detector"]["split"] == 2 and section["kappa"]["estimate"] < 1
    assert section["ranking"]["strengths"][-1]["item"] == key.label("C") == "random"  # it fails where others succeed


# ---------------------------------------------------------------- the whole review in Chromium

@pytest.fixture(scope="module")
def video_run(tmp_path_factory):
    """A small simulated run with a video of every episode (OSMesa: without it CI fails, elsewhere skips)."""
    reason = video.unavailable()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must render videos for the review test: {reason}")
        pytest.skip(reason)
    run = tmp_path_factory.mktemp("review") / "run"
    assert main(["evaluate", "suite=metaworld-smoke", "tasks=[drawer-open]",
                 "policies=[scripted,noisy-scripted:noise=1.5,random]", "episodes=3", "max_steps=150", "video=all",
                 "tracking_uri=none", "progress=false", f"out={run}"]) == 0
    return run


def _review_server(run: Path, port: int = 0) -> ServedProcess:
    return ServedProcess([sys.executable, "-m", "evalsuite", "review", str(run), f"port={port}", "seed=11",
                          "raters=[ann,bea]"])


# every video on the page decodes: its metadata, then a frame (a seek into it)
_VIDEOS_PLAY = """async () => Promise.all(Array.from(document.querySelectorAll('video')).map(v => new Promise(done => {
  v.addEventListener('error', () => done(false), {once: true});
  const seek = () => {
    v.addEventListener('seeked', () => done(v.videoWidth > 0 && v.duration > 0 && v.readyState >= 2), {once: true});
    v.currentTime = Math.min(1, v.duration / 2);
  };
  if (v.readyState >= 1) return seek();
  v.addEventListener('loadedmetadata', seek, {once: true});
  v.load();
})))"""


class Raters:
    """Two simulated raters answering from the truth they are shown on screen - here read from the
    journal through review_plan.json (the test's oracle; the page shows codes only). ann answers
    as the journal says; bea flips success on two episodes, and both call one failed episode a
    success (the detector missed it), so kappa, sensitivity and specificity are known; in the
    comparisons bea calls one pair a tie and reverses another."""

    def __init__(self, run: Path) -> None:
        plan = json.loads((run / names.REVIEW_PLAN).read_text())
        self.items = {i["code"]: i for i in plan["items"]}
        self.milestones = plan["milestones"]["drawer-open"]
        self.final = _final_of(run)
        _, self.key = load(run)
        successes = sorted(t for t, r in self.final.items() if r.success)
        failures = sorted(t for t, r in self.final.items() if not r.success)
        assert successes and len(failures) >= 2, "the run must have both outcomes"
        self.both_say_success, self.bea_flips = failures[0], {successes[0], failures[1]}
        self.answers: dict[str, dict[str, bool]] = {"ann": {}, "bea": {}}
        self.bea_tied = self.bea_reversed = False

    def success(self, rater: str, trial: str) -> bool:
        said = self.final[trial].success or trial == self.both_say_success
        return said != (rater == "bea" and trial in self.bea_flips)

    def score(self, page, rater: str, code: str) -> None:
        trial = self.items[code]["trials"][0]
        said = self.success(rater, trial)
        self.answers[rater][trial] = said
        page.check(f"input[name=success][value={'yes' if said else 'no'}]")
        record = self.final[trial]
        furthest = max((i for i, m in enumerate(self.milestones) if record.milestones.get(m) is not None), default=-1)
        page.select_option("select[name=furthest]", str(furthest))
        if not said:
            page.check("input[name=tags][value='stalled']")
            page.fill("textarea[name=notes]", "hand <i>hovered</i> & stopped")
        page.click("button:has-text('Save and go on')")

    def compare(self, page, rater: str, code: str) -> None:
        left, right = self.items[code]["trials"]
        labels = {self.key.label(self.final[t].policy_code) for t in (left, right)}
        truth_left, truth_right = _truth(self.final[left]), _truth(self.final[right])
        choice = "left" if truth_left > truth_right else "right" if truth_right > truth_left else "tie"
        if rater == "bea" and labels == {"scripted", "noisy-scripted:noise=1.5"} and not self.bea_tied:
            choice, self.bea_tied = "tie", True
        elif rater == "bea" and labels == {"noisy-scripted:noise=1.5", "random"} and not self.bea_reversed:
            choice, self.bea_reversed = {"left": "right", "right": "left"}.get(choice, choice), True
        page.click(f"button[value={choice}]")


def _open_next(page, url: str, kind: str) -> str | None:
    page.goto(f"{url}/next/{kind}")
    return page.url.rsplit("/", 1)[1] if "/item/" in page.url else None


def _score_all(pages: dict, server: ServedProcess, raters: Raters, run: Path, shot) -> ServedProcess:
    """Every episode scored by both raters taking turns; ann's 3rd: a reload mid-rating; her 5th:
    the server killed with SIGKILL while her form is open, and restarted on the same port."""
    done = {"ann": 0, "bea": 0}
    while True:
        turns = [(name, page, _open_next(page, server.url, "score")) for name, page in pages.items()]
        turns = [t for t in turns if t[2] is not None]
        if not turns:
            break
        for name, page, code in turns:
            if done[name] == 0:
                assert page.evaluate(_VIDEOS_PLAY) == [True]
                shot(page, "score" if name == "ann" else "score-desktop")
            if name == "ann" and done[name] == 2:
                page.reload()
            if name == "ann" and done[name] == 4:
                assert (run / names.REVIEW).read_text().count("\n") == 8  # 4 ratings each so far
                server.kill()
                server = _review_server(run, port=server.port)  # the same address: the open form still posts
                assert (run / names.REVIEW).read_text().count("\n") == 8
            raters.score(page, name, code)
            done[name] += 1
    assert done == {"ann": 9, "bea": 9}
    return server


def _compare_all(pages: dict, server: ServedProcess, raters: Raters, shot) -> None:
    compared = {"ann": 0, "bea": 0}
    while True:
        turns = [(name, page, _open_next(page, server.url, "compare")) for name, page in pages.items()]
        turns = [t for t in turns if t[2] is not None]
        if not turns:
            break
        for name, page, code in turns:
            if compared[name] == 0:
                assert page.evaluate(_VIDEOS_PLAY) == [True, True]
                shot(page, "compare" if name == "ann" else "compare-desktop")
            raters.compare(page, name, code)
            compared[name] += 1
    assert compared == {"ann": 9, "bea": 9}


def test_a_blinded_review_by_two_raters_in_chromium(video_run, tmp_path):
    from playwright.sync_api import sync_playwright

    from tests.conftest import ARTIFACTS, CHROMIUM, FLAGS, NO_CHROMIUM

    if NO_CHROMIUM:
        pytest.skip("no Chromium here (Debian: apt-get install chromium); CI installs it")

    run = tmp_path / "run"
    shutil.copytree(video_run, run)
    _, key = load(run)
    server = _review_server(run)
    raters = Raters(run)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    bodies: list[tuple[str, str]] = []
    served: list[str] = []

    def record(response) -> None:
        kind = response.headers.get("content-type", "")
        if kind.startswith("video/"):
            served.append(response.url)
        elif response.status < 300 or response.status >= 400:
            with contextlib.suppress(Exception):
                bodies.append((response.url, response.text()))

    def shot(page, name: str) -> None:
        page.screenshot(path=str(ARTIFACTS / f"review-{name}.png"), full_page=True)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
        desk = browser.new_context(viewport={"width": 1280, "height": 900})
        pages = {"ann": phone.new_page(), "bea": desk.new_page()}
        for name, page in pages.items():
            page.on("response", record)
            page.goto(server.url + "/")
            if name == "ann":
                shot(page, "who")
            page.check(f"input[name=rater][value={name}]")
            page.click("button[type=submit]")
        shot(pages["ann"], "next")

        server = _score_all(pages, server, raters, run, shot)
        # a rater is never given an item twice, and cannot rate one again
        rated = next(iter(raters.answers["ann"]))
        again = [c for c, i in raters.items.items() if i["trials"] == [rated] and i["kind"] == "score"][0]
        response = pages["ann"].goto(f"{server.url}/item/{again}")
        assert response.status == 409 and "already" in pages["ann"].content()
        shot(pages["ann"], "already")
        posted = pages["ann"].request.post(f"{server.url}/item/{again}/score", form={"success": "no"})
        assert posted.status == 409

        _compare_all(pages, server, raters, shot)
        pages["ann"].goto(server.url + "/next")
        assert "All done" in pages["ann"].content()
        shot(pages["ann"], "done")
        browser.close()
    server.stop()

    # nothing lost, nothing doubled
    lines = [json.loads(line) for line in (run / names.REVIEW).read_text().splitlines()]
    assert len(lines) == 36 and len({(e["rater"], e["item"]) for e in lines}) == 36
    assert all(e["rater"] in ("ann", "bea") and e["at"] > 0 for e in lines)
    assert {e["trials"][0]: e["success"] for e in lines if e["rater"] == "bea" and e["action"] == "score"} == \
        raters.answers["bea"]

    # blind: no label, parameter, trial id or video file name in any body before the report
    secrets = (*key.labels.values(), "scripted", "random", "noise", "drawer-open/0", "drawer-open_0", ".mp4",
               "index.json", str(run))
    leaked = [(secret, url) for url, body in bodies for secret in secrets if secret in body]
    assert not leaked and len(bodies) > 40, leaked
    assert len(served) >= 3 and all("/video/" in url for url in served)

    section = _check_report(run, raters.answers, ["scripted", "noisy-scripted:noise=1.5", "random"], 18)
    assert section["raters"] == {"ann": {"scored": 9, "compared": 9}, "bea": {"scored": 9, "compared": 9}}
    assert section["detector"]["false_negative"] == 1  # the failure both raters called a success
    for name in ("who", "next", "score", "score-desktop", "already", "compare", "compare-desktop", "done"):
        assert (ARTIFACTS / f"review-{name}.png").stat().st_size > 5000
