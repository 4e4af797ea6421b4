"""A whole blind trial driven from the operator console in Chromium at a phone's viewport: a
simulated "robot" (tests/trial_robot/sim_robot.py, a Meta-World episode) runs each trial from the
hidden run_cmd, the operator reads what happened and scores it; a page reload mid-trial, the console
killed with SIGKILL mid-trial and restarted, and a second operator scoring at the same time lose
nothing and double nothing; no response body before unblinding holds a policy's name, parameter or
the command; `evalsuite unblind` gives the statistics a direct analysis of the recorded outcomes
gives. Screenshots of every screen are kept (``.test-artifacts/operator-*.png``)."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from evalsuite import console as console_mod
from evalsuite import names
from evalsuite.analysis import AnalysisOptions, analyze
from evalsuite.cli import main
from evalsuite.errors import UsageError
from evalsuite.journal import read
from evalsuite.plan import load
from tests.conftest import ARTIFACTS, CHROMIUM, FLAGS, NO_CHROMIUM
from tests.servers import ServedProcess

ROBOT = Path(__file__).parent / "trial_robot" / "sim_robot.py"
TASK = """task = "drawer-open"
instruction = "open the drawer"
milestones = ["reached", "moved", "halfway"]
failure_tags = ["missed handle", "stalled"]
[[initial_conditions]]
text = "drawer closed, hand at home"
[[initial_conditions]]
text = "drawer closed, hand to the left"
[[initial_conditions]]
text = "drawer closed, hand raised"
"""
SECRETS = ("expert", "noisy", "scripted", "sim_robot", "--policy", "robot.py")  # names, values, the command


def _trial_run(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "task.toml").write_text(TASK)
    outs = tmp_path / "outcomes"
    outs.mkdir()
    run = tmp_path / "run"
    command = (f"{sys.executable} {ROBOT} --policy {{policy}} --seed {{seed}} --ic {{ic}} --trial {{trial}} "
               f"--out {outs}")
    assert main(["trial", f"task={tmp_path / 'task.toml'}", "policies=[expert:policy=scripted,noisy:policy=noisy-scripted]",
                 f"run_cmd={command}", f"out={run}", "seed=3"]) == 0
    return run, outs


def _console(run: Path, port: int = 0) -> ServedProcess:
    """`evalsuite operator RUN` on ``port``, its command confirmed as the operator would."""
    command = json.loads((run / "trial.json").read_text())["run_cmd"]
    return ServedProcess([sys.executable, "-m", "evalsuite", "operator", str(run), f"port={port}", f"run_cmd={command}"])


@pytest.mark.unit
def test_the_console_state_refuses_double_scores_and_keeps_corrections(tmp_path):
    run, _ = _trial_run(tmp_path)
    c = console_mod.Console(run)
    first = c.next_for("ann")
    c.claim(first.trial_id, "ann")
    assert c.next_for("bea").trial_id != first.trial_id  # two operators never get the same trial
    with pytest.raises(UsageError, match="is being run by ann"):
        c.score(first.trial_id, "bea", console_mod.Score(True, 2))
    c.score(first.trial_id, "ann", console_mod.Score(False, 0, ("stalled",), "slow <b>"))
    with pytest.raises(UsageError, match="already scored"):
        c.score(first.trial_id, "ann", console_mod.Score(True, 2))
    c.correct(first.trial_id, "bea", console_mod.Score(True, 2), "the drawer did open")
    c.close()
    again = console_mod.Console(run)  # rebuilt from the files alone
    final = again.finished[first.trial_id]
    assert final.success and final.attempt == 2 and final.policy_info["operator"] == "bea"
    (correction,) = [e for e in again.log if e["action"] == "correct"]
    assert correction["old"]["success"] is False and correction["old"]["tags"] == ["stalled"]
    assert correction["operator"] == "bea" and correction["why"] == "the drawer did open"
    assert len(again.remaining()) == 5
    again.close()


def _score_from_outcome(page, outcomes: Path, trial_id: str) -> dict:
    """What the operator saw the robot do (once it has done it), entered in the form."""
    path = outcomes / (trial_id.replace("/", "_") + ".json")
    for _ in range(120):  # a robot the console lost in a restart finishes on its own
        if path.exists():
            break
        time.sleep(0.5)
    seen = json.loads(path.read_text())
    page.check(f"input[name=success][value={'yes' if seen['success'] else 'no'}]")
    page.select_option("select[name=furthest]", str(seen["furthest"]))
    if not seen["success"]:
        page.check("input[name=tags][value='stalled']")
    return seen


def _wait_for_robot(page, url: str) -> None:
    for _ in range(120):
        if "exited 0" in page.content():
            return
        time.sleep(0.5)
        page.goto(url)
    raise AssertionError("the simulated robot did not finish")


def _interrupt(page, server: ServedProcess, run: Path, number: int, scored: int) -> ServedProcess:
    """Trial 2: a reload mid-trial repeats nothing. Trial 3: the console killed mid-trial and
    restarted on the same folder and port. Otherwise: wait for the robot."""
    url = server.url + f"/trial/{number}"
    if scored == 1:
        page.reload()
    if scored == 2:
        server.kill()
        server = _console(run, port=server.port)  # the phone's address still works
        page.goto(url)
        assert "started before the console restarted" in page.content()
        return server
    _wait_for_robot(page, url)
    return server


def _second_operator(page, server: ServedProcess, plan, outcomes: Path, taken: int) -> None:
    page.goto(server.url + "/next")
    page.click("text=Open trial")
    other = int(page.url.rsplit("/", 1)[1])
    assert other != taken
    page.click("button:has-text('Start')")
    _wait_for_robot(page, page.url)
    _score_from_outcome(page, outcomes, plan.trials[other].trial_id)
    page.click("button:has-text('Save outcome')")


@pytest.mark.skipif(NO_CHROMIUM, reason="no Chromium here (Debian: apt-get install chromium); CI installs it")
def test_a_blind_trial_from_the_phone_console(tmp_path):
    from playwright.sync_api import sync_playwright

    run, outcomes = _trial_run(tmp_path)
    plan, key = load(run)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    bodies: list[str] = []
    server = _console(run)
    shots: set[str] = set()

    def shot(page, name: str) -> None:
        if name not in shots:
            shots.add(name)
            page.screenshot(path=str(ARTIFACTS / f"operator-{name}.png"), full_page=True)

    def record(response) -> None:
        with contextlib.suppress(Exception):  # a redirect has no body
            bodies.append(response.text())

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
        desk = browser.new_context(viewport={"width": 1280, "height": 800})
        ann, bea = phone.new_page(), desk.new_page()
        for page in (ann, bea):
            page.on("response", record)
        for page, name in ((ann, "ann"), (bea, "bea")):
            page.goto(server.url + "/")
            shot(page, "who")
            page.fill("input[name=operator]", name)
            page.click("button[type=submit]")
        scored, number = 0, 0
        while True:
            ann.goto(server.url + "/next")
            if "All trials are done" in ann.content():
                shot(ann, "done")
                break
            shot(ann, "next")
            ann.click("text=Open trial")
            number = int(ann.url.rsplit("/", 1)[1])
            ann.click("button:has-text('Start')")
            shot(ann, "running")
            server = _interrupt(ann, server, run, number, scored)
            if scored == 3:  # meanwhile a second operator takes the next free trial, never this one
                _second_operator(bea, server, plan, outcomes, number)
                shot(bea, "desktop-next")
                scored += 1
            ann.goto(server.url + f"/trial/{number}")
            _score_from_outcome(ann, outcomes, plan.trials[number].trial_id)
            shot(ann, "score")
            ann.click("button:has-text('Save outcome')")
            scored += 1
        ann.goto(server.url + "/log")
        shot(ann, "log")
        bea.goto(server.url + f"/trial/{number}/score")  # scoring a scored trial again is refused
        browser.close()
    server.stop()

    records = read(run / names.JOURNAL, plan=plan)
    assert sorted(r.trial_id for r in records) == sorted(t.trial_id for t in plan.trials)  # nothing lost or doubled
    assert scored == len(plan.trials) == 6
    leaked = [(secret, body[:80]) for body in bodies for secret in (*SECRETS, *key.labels.values()) if secret in body]
    assert not leaked and len(bodies) > 20, leaked

    assert main(["report", str(run)]) == 2  # still blind
    assert main(["unblind", str(run)]) == 0
    unblinded = json.loads((run / names.RESULTS).read_text())
    direct = analyze(plan, key, records, AnalysisOptions()).to_dict()
    assert unblinded["per_task"] == json.loads(json.dumps(direct["per_task"]))
    assert unblinded["pairwise"] == json.loads(json.dumps(direct["pairwise"]))
    seen = {t.trial_id: json.loads((outcomes / (t.trial_id.replace("/", "_") + ".json")).read_text())
            for t in plan.trials}
    for row in unblinded["per_task"]:
        code = key.code(row["policy"])
        wins = sum(seen[t.trial_id]["success"] for t in plan.trials if t.policy_code == code)
        assert row["successes"] == wins, row
    for name in ("who", "next", "running", "score", "log", "done", "desktop-next"):
        assert (ARTIFACTS / f"operator-{name}.png").stat().st_size > 5000


def test_a_folders_command_runs_only_when_the_command_line_confirms_it(tmp_path, capsys):
    """A received trial folder could carry any command: the console refuses to start without the
    template on the operator's own command line, and a console app not given it never runs it."""
    run, _ = _trial_run(tmp_path)
    command = json.loads((run / "trial.json").read_text())["run_cmd"]
    assert main(["operator", str(run), "port=0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a folder never decides what runs" in err[0] and "run_cmd=" in err[0]
    assert main(["operator", str(run), "port=0", "run_cmd=rm -rf /"]) == 2
    assert "(the one given differs)" in capsys.readouterr().err
    c = console_mod.Console(run)  # not confirmed
    first = c.next_for("ann")
    with pytest.raises(UsageError, match="without confirming this folder's command"):
        c.start(first.trial_id, "ann")
    assert not (run / "console-logs").exists() and command
    c.close()


def test_a_console_bound_elsewhere_needs_its_token(tmp_path):
    from starlette.testclient import TestClient

    from evalsuite.operator_app import make_app

    run, _ = _trial_run(tmp_path)
    app = make_app(run, token="s3cret")
    with TestClient(app) as client:
        assert client.get("/next").status_code == 403
        assert client.get("/next?token=wrong").status_code == 403
        assert client.get("/next?token=s3cret").status_code == 200  # then the cookie carries it
        assert client.get("/log").status_code == 200
    app.state.console.close()


def test_sequential_stopping_ends_the_trials_once_the_pair_is_decided(tmp_path):
    """One policy always succeeds, the other always fails: the anytime-valid test decides after a
    handful of blocks, and the console offers no more trials although the plan has more."""
    (tmp_path / "task.toml").write_text('task = "t"\n' + "".join(f'[[initial_conditions]]\ntext = "ic {i}"\n'
                                                                 for i in range(30)))
    run = tmp_path / "run"
    assert main(["trial", f"task={tmp_path / 'task.toml'}", "policies=[good,bad]", "mode=manual", f"out={run}",
                 "stopping=sequential", "round_size=1"]) == 0
    c = console_mod.Console(run)
    good = c._key.code("good")
    scored = 0
    while (t := c.next_for("ann")) is not None:
        c.score(t.trial_id, "ann", console_mod.Score(t.policy_code == good, -1))
        scored += 1
    assert c.decided() and scored < len(c.plan.trials) and scored % 2 == 0
    c.close()
    assert main(["unblind", str(run)]) == 0
    report = (run / "report.md").read_text()
    assert "Mode `manual`: the operator ran the robot by hand" in report and "Operators: ann" in report


def test_router_forwards_the_robot_to_the_hidden_policys_server(tmp_path, capsys):
    """mode=router: the robot always dials the console's /robot; each started trial reaches its own
    policy's server (two openpi-style servers: one holds still for its first 20 steps, so each trial's
    first action says which server answered), the metadata passed on names no policy, and a robot
    that dials with no trial started is told so."""
    from starlette.testclient import TestClient

    from evalsuite import registry, wire
    from evalsuite.operator_app import make_app
    from evalsuite.runner.envs import build_env
    from tests.test_remote import SERVER

    still = ServedProcess([sys.executable, str(SERVER), "--mode", "stateful", "--wait", "20"])
    moving = ServedProcess([sys.executable, str(SERVER)])
    try:
        (tmp_path / "task.toml").write_text(TASK)
        run = tmp_path / "run"
        assert main(["trial", f"task={tmp_path / 'task.toml'}", "mode=router", f"out={run}",
                     f"policies=[still:server={still.url},moving:server={moving.url}]"]) == 0
        assert main(["operator", str(run), "port=0"]) == 2  # the servers must be confirmed
        assert f"servers=[{','.join(sorted([still.url, moving.url]))}]" in capsys.readouterr().err
        plan, key = load(run)
        app = make_app(run, servers=(moving.url, still.url))
        env = build_env(registry.suites.get("metaworld-smoke"), "drawer-open", 30)
        layout = wire.Layout.of(env.info.obs_shapes)
        with TestClient(app) as client:
            client.post("/operator", content="operator=ann", headers={"content-type": "application/x-www-form-urlencoded"})
            with client.websocket_connect("/robot") as robot:  # nothing started yet
                assert "no trial is running" in robot.receive_text()
            for number, trial in enumerate(plan.trials):
                assert client.post(f"/trial/{number}/start").status_code == 200
                with client.websocket_connect("/robot") as robot:
                    metadata = wire.unpack(robot.receive_bytes())
                    assert metadata == {"action_dim": 4}  # no policy name passed on
                    obs, _ = env.reset(trial.ic_index, trial.ic_index)
                    robot.send_bytes(wire.pack(layout.encode(obs, "open the drawer")))
                    first = wire.actions_of(wire.unpack(robot.receive_bytes()))[0]
                holds_still = key[trial.policy_code].label == "still"
                assert bool(np.allclose(first, [0, 0, 0, -1])) == holds_still, (key[trial.policy_code].label, first)
                client.post(f"/trial/{number}/score", content="success=no&furthest=-1",
                            headers={"content-type": "application/x-www-form-urlencoded"})
        app.state.console.close()
        env.close()
        assert len(read(run / names.JOURNAL, plan=plan)) == len(plan.trials)
    finally:
        still.stop()
        moving.stop()
