"""examples/github-actions/policy-gate.yml works as written: its gate job's steps, in order, on this
machine, for a push to main and for pull requests with and without a baseline.

No GitHub is needed. Each ``run:`` step runs as GitHub runs it - ``bash --noprofile --norc -eo
pipefail`` in the workspace - with the workflow's, the job's and the step's ``env``, GitHub's
variables (GITHUB_OUTPUT, GITHUB_STEP_SUMMARY, GITHUB_EVENT_NAME, GITHUB_HEAD_REF, ...) and its
``${{ ... }}`` expressions substituted; ``if:`` is evaluated (a step without ``always()`` runs only
while no step before it failed) and ``continue-on-error`` is honoured. What the other steps would do
on a runner is done here instead:

- actions/checkout, actions/setup-python and the ``pip install`` step: nothing - the workspace is a
  fresh temporary folder (the policies under test are built in) and ``evalsuite`` is this
  environment's, its bin/ first on PATH;
- actions/cache/save and actions/cache/restore: a folder per cache key (the exact key, else the
  newest entry starting with a restore key), shared by the runs of one test as by a repository's;
- ``gh pr comment``: a stand-in ``gh`` that records the comment it would post.

The workflow's env is kept but for the sizes, which the workflow declares as variables and which
shrink here to seconds: one task, 10 episodes, margin 0.3 (an unchanged deterministic policy passes
with 10 pairs, as 0.7^10 < alpha).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

WORKFLOW = REPO / "examples" / "github-actions" / "policy-gate.yml"
SMALL = {"SUITE": "metaworld-smoke", "TASKS": "[drawer-open]", "EPISODES": "10", "MARGIN": "0.3"}
REPOSITORY, MAIN_SHA, PR_SHA = "octo/robot", "a" * 40, "b" * 40
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
TOKEN = re.compile(r"\s*('[^']*'|&&|\|\||==|!=|!|\(|\)|[A-Za-z_][\w.-]*\(\)|[A-Za-z_][\w.-]*)")
GH = """#!/bin/sh
# gh pr comment NUMBER --body-file FILE, recorded instead of posted (the real gh needs GH_TOKEN too)
[ "$1 $2 $4" = "pr comment --body-file" ] && [ -n "$GH_TOKEN" ] || { echo "gh stand-in: $*" >&2; exit 1; }
{ echo "#$3"; cat "$5"; } > "$COMMENTS/$(ls "$COMMENTS" | wc -l)"
"""


@dataclass
class Job:
    workspace: Path
    outcomes: dict[str, tuple[str, int | None]] = field(default_factory=dict)  # step name -> (outcome, exit code)
    summary: str = ""  # the job's step summary, every step's together
    comments: list[str] = field(default_factory=list)
    failed: bool = False
    log: str = ""

    def outcome(self, prefix: str) -> tuple[str, int | None]:
        (name,) = [n for n in self.outcomes if n.startswith(prefix)]
        return self.outcomes[name]


def _lookup(path: str, context: dict[str, Any]) -> Any:
    node: Any = context
    for part in path.split("."):
        node = node.get(part, "") if isinstance(node, dict) else ""
    return node


def _evaluate(expression: str, context: dict[str, Any], failed: bool) -> Any:
    """The expression language as far as the workflow uses it: context paths, 'strings', == and
    !=, &&, || and !, and the status functions."""
    tokens, end = [], 0
    while end < len(expression.rstrip()):
        match = TOKEN.match(expression, end)
        assert match, f"no stand-in for {expression[end:]!r} in {expression!r}"
        tokens.append(match.group(1))
        end = match.end()
    words = {"&&": "and", "||": "or", "!": "not", "always()": "True", "success()": repr(not failed),
             "failure()": repr(failed), "==": "==", "!=": "!=", "(": "(", ")": ")", "true": "True", "false": "False",
             "null": "None"}
    python = [words.get(t) or (repr(t[1:-1]) if t.startswith("'") else repr(_lookup(t, context))) for t in tokens]
    return eval(" ".join(python), {"__builtins__": {}})  # built above from known tokens only


def _render(text: str, context: dict[str, Any]) -> str:
    def value(m: re.Match[str]) -> str:
        v = _evaluate(m.group(1), context, failed=False)
        return {True: "true", False: "false", None: ""}.get(v, str(v)) if isinstance(v, bool | None) else str(v)
    return EXPRESSION.sub(value, text)


def _runs(step: dict[str, Any], context: dict[str, Any], failed: bool) -> bool:
    condition = EXPRESSION.sub(r"\1", str(step.get("if", "true")))
    if not re.search(r"\b(always|success|failure|cancelled)\(\)", condition):
        condition = f"success() && ({condition})"
    return bool(_evaluate(condition, context, failed))


def _action(uses: str, given: dict[str, str], workspace: Path, cache: Path) -> None:
    """What a ``uses:`` step would do on a runner (see the module's docstring)."""
    action = uses.split("@")[0]
    if action in ("actions/checkout", "actions/setup-python"):
        return
    if action == "actions/cache/save":
        if not (cache / given["key"]).exists():  # GitHub's cache entries are immutable
            shutil.copytree(workspace / given["path"], cache / given["key"])
        return
    assert action == "actions/cache/restore", f"no stand-in for {uses}"
    prefixes = given.get("restore-keys", "").split()
    entries = sorted(cache.iterdir(), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    hits = [e for e in entries if e.name == given["key"]] or [e for e in entries if e.name.startswith(tuple(prefixes))
                                                             and prefixes]
    if hits:
        shutil.copytree(hits[0], workspace / given["path"])


def _base_env(root: Path, event: str) -> dict[str, str]:
    """The runner's environment: this machine's, less anything GitHub, MLflow or evalsuite set, plus
    GitHub's variables, the stand-in gh and this environment's evalsuite first on PATH."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "MLFLOW_", "EVALSUITE_", "RUNNER_"))}
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "gh").write_text(GH)
    (root / "bin" / "gh").chmod(0o755)
    (root / "comments").mkdir()
    pr = event == "pull_request"
    return {**keep, "PATH": os.pathsep.join([str(root / "bin"), str(Path(sys.executable).parent), keep["PATH"]]),
            "MPLBACKEND": "Agg", "CI": "true", "GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": event,
            "GITHUB_REPOSITORY": REPOSITORY, "GITHUB_SHA": PR_SHA if pr else MAIN_SHA,
            "GITHUB_REF": "refs/pull/7/merge" if pr else "refs/heads/main", "GITHUB_HEAD_REF": "better-policy" if pr
            else "", "GITHUB_BASE_REF": "main" if pr else "", "GITHUB_WORKSPACE": str(root / "workspace"),
            "RUNNER_TEMP": str(root / "runner"), "COMMENTS": str(root / "comments")}


def run_workflow(root: Path, event: str, cache: Path, policy: str, *, secrets: dict[str, str] | None = None,
                 fork: bool = False) -> Job:
    """The gate job for ``event`` ("push" to main or "pull_request"), with ``policy`` as POLICY."""
    workflow = yaml.safe_load(WORKFLOW.read_text())
    github: dict[str, Any] = {"event_name": event, "repository": REPOSITORY, "token": "ghs_stand_in",
                              "sha": MAIN_SHA if event == "push" else PR_SHA, "event": {}}
    if event == "pull_request":
        github["event"]["pull_request"] = {"number": 7, "base": {"sha": MAIN_SHA},
                                           "head": {"repo": {"full_name": "someone/robot" if fork else REPOSITORY}}}
    context: dict[str, Any] = {"github": github, "secrets": {} if fork else dict(secrets or {}), "steps": {},
                               "vars": {"EVALSUITE": "evalsuite[metaworld,torch]"}}
    env = _base_env(root, event)
    (root / "workspace").mkdir()
    (root / "runner").mkdir()
    job_spec = workflow["jobs"]["gate"]
    for scope in (workflow.get("env", {}), SMALL | {"POLICY": policy}, job_spec.get("env", {})):
        env.update({k: _render(str(v), context) for k, v in scope.items()})
    job = Job(root / "workspace")
    for i, step in enumerate(job_spec["steps"]):
        name = step.get("name") or step.get("uses") or step["run"].splitlines()[0]
        if not _runs(step, context, job.failed):
            job.outcomes[name] = ("skipped", None)
            continue
        if "uses" in step:
            _action(step["uses"], {k: _render(str(v), context) for k, v in step.get("with", {}).items()},
                    job.workspace, cache)
            job.outcomes[name] = ("success", 0)
            continue
        script = _render(step["run"], context)
        if "pip install" in script:  # the install step: this environment is the installed evalsuite
            job.outcomes[name] = ("success", 0)
            continue
        output, summary, path = (root / "runner" / f"{kind}-{i}" for kind in ("output", "summary", "script"))
        output.touch()
        summary.touch()
        path.write_text(script)
        step_env = {**env, **{k: _render(str(v), context) for k, v in step.get("env", {}).items()},
                    "GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary)}
        done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(path)], cwd=job.workspace,
                              env=step_env, capture_output=True, text=True, timeout=600)
        job.log += f"--- {name} (exit {done.returncode})\n{done.stdout}{done.stderr}"
        ok = done.returncode == 0 or bool(step.get("continue-on-error"))
        job.outcomes[name] = ("success" if done.returncode == 0 else "failure", done.returncode)
        job.failed |= not ok
        job.summary += summary.read_text()
        if "id" in step:
            context["steps"][step["id"]] = {"outputs": dict(line.split("=", 1) for line in
                                                            output.read_text().splitlines() if "=" in line)}
    job.comments = [p.read_text() for p in sorted((root / "comments").iterdir())]
    return job


@pytest.fixture(scope="module")
def main_pushed(tmp_path_factory):
    """A push to main with the MLflow secret set: the baseline evaluated, cached and logged; the
    cache and the secrets the pull requests of these tests share."""
    root = tmp_path_factory.mktemp("ci")
    cache = root / "cache"
    cache.mkdir()
    secrets = {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    return run_workflow(root / "push", "push", cache, "scripted", secrets=secrets), cache, secrets


def test_a_push_to_main_evaluates_and_caches_the_baseline(main_pushed):
    job, cache, _ = main_pushed
    assert not job.failed, job.log
    assert job.outcome("actions/checkout") == job.outcome("Install evalsuite") == job.outcome("Evaluate the baseline") \
        == ("success", 0)
    assert job.outcome("Gate")[0] == job.outcome("Post the summary")[0] == "skipped"
    results = json.loads((cache / f"evalsuite-baseline-{MAIN_SHA}" / "results.json").read_text())
    (row,) = results["per_task"]
    assert (row["task"], row["n"], row["successes"]) == ("drawer-open", 10, 10)


def test_the_first_pull_request_from_a_fork_says_there_is_no_baseline_yet(tmp_path):
    """No cache entry, and no secrets (a fork): the check passes, saying why the gate did not run, in
    the job's step summary (a fork's token cannot comment, so no comment is tried)."""
    (tmp_path / "cache").mkdir()
    job = run_workflow(tmp_path, "pull_request", tmp_path / "cache", "scripted", fork=True)
    assert not job.failed, job.log
    assert job.outcome("Gate") == ("success", 0) and job.outcome("Fail on regression") == ("success", 0)
    assert job.outcome("Evaluate the baseline")[0] == "skipped" and job.outcome("Post the summary")[0] == "skipped"
    assert job.summary.startswith("No baseline yet") and not (job.workspace / "gate" / "results.json").exists()
    assert job.comments == [] and not (job.workspace / "mlflow.db").exists()  # MLflow left alone without the secret


def test_an_unchanged_policy_passes_and_the_summary_is_posted(main_pushed, tmp_path):
    _, cache, secrets = main_pushed
    job = run_workflow(tmp_path, "pull_request", cache, "scripted", secrets=secrets)
    assert not job.failed, job.log
    verdicts = json.loads((job.workspace / "gate" / "results.json").read_text())
    assert verdicts["verdict"] == "NON-INFERIOR" and verdicts["exit_code"] == 0
    summary = (job.workspace / "gate" / "summary.md").read_text()
    assert summary.startswith("## evalsuite gate: **NON-INFERIOR**") and "margin 30 points" in summary
    assert job.summary == summary and job.comments == [f"#7\n{summary}"]


def test_a_regressing_policy_fails_the_check_and_says_so(main_pushed, tmp_path):
    _, cache, secrets = main_pushed
    job = run_workflow(tmp_path, "pull_request", cache, "random", secrets=secrets)
    assert job.failed
    assert job.outcome("Gate") == ("success", 0)  # the gate step records the exit code; the last step fails with it
    assert job.outcome("Fail on regression") == ("failure", 1)
    assert job.summary.startswith("## evalsuite gate: **REGRESSED**") and "| drawer-open | paired (10) |" in job.summary
    assert len(job.comments) == 1 and "**REGRESSED**" in job.comments[0]


def test_without_the_cache_the_baseline_comes_from_mlflow(main_pushed, tmp_path):
    """An evicted cache: the baseline is the latest MLflow run tagged role=baseline (the push's),
    not a gate's candidate logged since."""
    _, _, secrets = main_pushed
    (tmp_path / "cache").mkdir()
    job = run_workflow(tmp_path, "pull_request", tmp_path / "cache", "scripted", secrets=secrets)
    assert not job.failed, job.log
    verdicts = json.loads((job.workspace / "gate" / "results.json").read_text())
    assert verdicts["verdict"] == "NON-INFERIOR" and verdicts["baseline"]["run"] == "mlflow-tag:role=baseline"
