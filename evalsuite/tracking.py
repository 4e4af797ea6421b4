"""MLflow tracking of a finished run folder: one parent run per evaluation, a child per policy.

Tracking reads only the run folder, so it can happen later: when the server is down the results
stay on disk and ``evalsuite sync RUN_DIR tracking_uri=...`` logs them when it is back. Logging
the same folder again replaces the earlier MLflow runs of that folder (matched by a tag) instead of
duplicating them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from evalsuite.errors import UsageError

DEFAULT_DB = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"
UID_TAG = "evalsuite.run_uid"


class TrackingUnavailable(Exception):
    """The tracking backend cannot be reached; the run folder is intact."""


def resolve_uri(uri: str) -> str:
    if uri == "default":
        return f"sqlite:///{Path(DEFAULT_DB).resolve()}"
    if not re.match(r"^(sqlite|https?|file|postgresql|mysql|databricks)[:+]", uri):
        raise UsageError(f"tracking_uri={uri!r} is not understood; accepted: default, none, sqlite:///PATH, "
                         "http://HOST:PORT, https://HOST:PORT")
    return uri


def run_uid(run_dir: Path) -> str:
    plan = (run_dir / "plan.json").read_bytes()
    return hashlib.sha256(plan + str(run_dir.resolve()).encode()).hexdigest()[:24]


def _check_reachable(uri: str) -> None:
    if uri.startswith("http"):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=3).read()
        except (urllib.error.URLError, OSError) as exc:
            raise TrackingUnavailable(f"tracking server {uri} is unreachable ({exc})") from None


class LiveProgress:
    """Progress in MLflow while a run goes: one run tagged with the run folder's uid and
    ``evalsuite.live=true`` whose metrics (episodes done, episodes/s, ETA, and done per task and
    blinding code - codes only, so whoever watches stays blind) are written at most every
    ``interval_s``. ``log_run`` replaces it with the final run (same uid) at the end."""

    def __init__(self, client, run_id: str, interval_s: float) -> None:
        self.client, self.run_id, self.interval_s = client, run_id, interval_s
        self._last = -float("inf")
        self._state: tuple[dict, int, float] | None = None
        self._step = 0

    @classmethod
    def start(cls, run_dir: Path, uri: str, experiment: str, log=print, interval_s: float = 5.0):
        """The live run, or None (said in one line) when the backend cannot take it."""
        try:
            uri = resolve_uri(uri)
            _check_reachable(uri)
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a slow server never stalls the run
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
            from mlflow.tracking import MlflowClient

            client = MlflowClient(uri)
            exp_id = _experiment_id(client, experiment, uri)
            run = client.create_run(exp_id, run_name=f"{run_dir.name} (running)",
                                    tags={UID_TAG: run_uid(run_dir), "evalsuite.live": "true",
                                          "evalsuite.run_dir": str(run_dir.resolve())})
            return cls(client, run.info.run_id, interval_s)
        except Exception as exc:  # progress is a convenience: the run goes on without it
            log(f"MLflow live progress off: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}")
            return None

    def update(self, counts: dict[tuple[str, str], int], total: int, rate: float) -> None:
        self._state = (dict(counts), total, rate)
        if time.monotonic() - self._last >= self.interval_s:
            self._flush()

    def _flush(self) -> None:
        if self._state is None:
            return
        from mlflow.entities import Metric

        counts, total, rate = self._state
        done = sum(counts.values())
        now, self._step = int(time.time() * 1000), self._step + 1
        values = {"progress/episodes_done": done, "progress/episodes_planned": total,
                  "progress/episodes_per_s": rate, "progress/eta_s": (total - done) / rate if rate > 0 else 0.0,
                  **{_metric_key(f"progress/{task}/{code}"): n for (task, code), n in counts.items()}}
        try:
            self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, self._step)
                                                        for k, v in values.items()])
        except Exception:  # never stop or slow a run for its progress display: off after one failure
            self.interval_s = float("inf")
        self._last = time.monotonic()

    def close(self) -> None:
        self._flush()
        try:
            self.client.set_terminated(self.run_id)
        except Exception:
            pass


def _metric_key(text: str) -> str:
    """A name MLflow accepts for metrics, params and tags: its characters only, no path traversal
    ("..", as in checkpoint paths people type), no empty or leading path segments, bounded length."""
    key = re.sub(r"[^A-Za-z0-9_\-. /:]", "_", text)
    key = re.sub(r"\.{2,}", "_", key)
    key = "/".join(part for part in key.split("/") if part.strip() not in ("", "."))  # normpath-stable
    return key[:250].strip().rstrip("/").strip() or "_"


def _experiment_id(client, experiment: str, uri: str) -> str:
    """The experiment's id, created on first use (sqlite: artifacts beside the database)."""
    exp = client.get_experiment_by_name(experiment)
    if exp is not None:
        return exp.experiment_id
    location = Path(DEFAULT_ARTIFACTS).resolve().as_uri() if uri.startswith("sqlite") else None
    return client.create_experiment(experiment, artifact_location=location)


def log_run(run_dir: Path, uri: str, experiment: str = "evalsuite") -> str:
    """Log ``run_dir`` (results, plan, versions, artifacts) to MLflow; returns the parent run id."""
    uri = resolve_uri(uri)
    _check_reachable(uri)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    import mlflow
    from mlflow.tracking import MlflowClient

    from evalsuite import results as results_mod
    from evalsuite.plan import read_json

    results = results_mod.load(run_dir)
    info = read_json(run_dir / "run_info.json") if (run_dir / "run_info.json").exists() else {}
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    exp_id = _experiment_id(client, experiment, uri)
    uid = run_uid(run_dir)
    for old in client.search_runs([exp_id], filter_string=f"tags.`{UID_TAG}` = '{uid}'"):
        client.delete_run(old.info.run_id)
        for child in client.search_runs([exp_id], filter_string=f"tags.mlflow.parentRunId = '{old.info.run_id}'"):
            client.delete_run(child.info.run_id)

    with mlflow.start_run(experiment_id=exp_id, run_name=f"{results.suite} seed={results.seed}") as parent:
        mlflow.set_tags({UID_TAG: uid, "evalsuite.suite": results.suite, "evalsuite.run_dir": str(run_dir.resolve()),
                         "evalsuite.complete": str(results.trials.complete), **info.get("tags", {})})
        params: dict[str, Any] = {
            "suite": results.suite, "tasks": ",".join(results.tasks), "seed": results.seed,
            "episodes_per_task": results.episodes_per_task, "policies": ",".join(results.policies),
            "interval": results.options.interval, "level": results.options.level,
            "correction": results.options.correction, "git_commit": info.get("git_commit", "unknown"),
        }
        params.update({f"version.{k}": v for k, v in info.get("versions", {}).items()})
        mlflow.log_params(params)
        metrics = {}
        for agg in results.aggregate:
            metrics[_metric_key(f"{agg.policy}/mean")] = agg.mean
            metrics[_metric_key(f"{agg.policy}/mean_ci_low")] = agg.ci_low
            metrics[_metric_key(f"{agg.policy}/mean_ci_high")] = agg.ci_high
        if info.get("episodes_per_s"):
            metrics["episodes_per_s"] = info["episodes_per_s"]
        for m in (results.section("aggregates") or {}).get("metrics", []):
            metrics[_metric_key(f"{m['policy']}/{m['metric']}")] = m["estimate"]
            metrics[_metric_key(f"{m['policy']}/{m['metric']}_ci_low")] = m["low"]
            metrics[_metric_key(f"{m['policy']}/{m['metric']}_ci_high")] = m["high"]
        for effect in (results.section("mixed_model") or {}).get("effects", []):
            metrics[_metric_key(f"mixed/{effect['policy']}/log_odds")] = effect["log_odds"]
        from evalsuite import analyses

        for spec, section_metrics in analyses.present(results, "metrics"):
            metrics.update({_metric_key(name): value
                            for name, value in section_metrics(results.section(spec.id)).items()})
        mlflow.log_metrics(metrics)
        tags = {_metric_key(f"letters.{task}"): " ".join(f"{p}={g}" for p, g in groups.items())
                for task, groups in results.letters.items()}
        sequential = results.section("sequential") or {}
        for pair in sequential.get("pairs", []):
            tags[_metric_key(f"sequential.{pair['task']}.{pair['policy_a']}_vs_{pair['policy_b']}")] = pair["decision"]
        for task, gate in sequential.get("gate", {}).items():
            tags[_metric_key(f"sequential.{task}.gate")] = gate["verdict"]
        if tags:
            mlflow.set_tags(tags)
        for name, pol in results.policies.items():
            with mlflow.start_run(experiment_id=exp_id, run_name=name, nested=True):
                rows = [r for r in results.per_task if r.policy == name]
                mlflow.log_params({"policy_id": pol["id"], "policy_label": name, "blinding_code": pol["code"],
                                   **{f"param.{k}": v for k, v in pol["params"].items()},
                                   **{_metric_key(f"fingerprint.{r.task}"): r.fingerprint for r in rows}})
                task_metrics = {}
                for r in rows:
                    if r.rate is None:
                        continue
                    for field in ("rate", "ci_low", "ci_high", "n", "successes", "policy_errors", "missing"):
                        task_metrics[_metric_key(f"{r.task}/{field}")] = getattr(r, field)
                mlflow.log_metrics(task_metrics)
        mlflow.log_artifacts(str(run_dir), artifact_path="run")
        return parent.info.run_id


def log_or_explain(run_dir: Path, uri: str, experiment: str, log=print) -> str | None:
    """Log the run; when the backend is unreachable say how to sync later, and keep going."""
    try:
        run_id = log_run(run_dir, uri, experiment)
    except TrackingUnavailable as exc:
        log(f"MLflow: {exc}. Results are safe in {run_dir}; log them later with:\n"
            f"  evalsuite sync {run_dir} tracking_uri={uri}")
        return None
    (run_dir / "tracking.json").write_text(json.dumps({"tracking_uri": resolve_uri(uri), "run_id": run_id}) + "\n")
    log(f"MLflow: run {run_id} at {resolve_uri(uri)}")
    return run_id


def log_gate(gate_dir: Path, uri: str, experiment: str = "evalsuite") -> str:
    """Log a gate's verdicts as tags (overall and per task), its bounds as metrics, its summary as an artifact."""
    uri = resolve_uri(uri)
    _check_reachable(uri)
    import mlflow

    result = json.loads((gate_dir / "results.json").read_text())
    mlflow.set_tracking_uri(uri)
    exp_id = _experiment_id(mlflow.tracking.MlflowClient(uri), experiment, uri)
    c, b = result["candidate"], result["baseline"]
    with mlflow.start_run(experiment_id=exp_id, run_name=f"gate {c['policy']} vs {b['policy']}") as run:
        mlflow.set_tags({"evalsuite.kind": "gate", "evalsuite.gate.verdict": result["verdict"],
                         "evalsuite.gate.candidate": c["run"], "evalsuite.gate.baseline": b["run"],
                         **{_metric_key(f"evalsuite.gate.{r['task']}"): r["verdict"] for r in result["tasks"]}})
        mlflow.log_params({"margin": result["margin"], "alpha": result["alpha"], "candidate_policy": c["policy"],
                           "baseline_policy": b["policy"], "suite": b["suite"]})
        mlflow.log_metrics({_metric_key(f"{r['task']}/{k}"): r[k] for r in result["tasks"]
                            for k in ("difference", "low", "high", "p_noninferior", "p_regressed",
                                      "candidate_policy_errors", "candidate_missing") if r.get(k) is not None})
        mlflow.log_artifacts(str(gate_dir), artifact_path="gate")
        return run.info.run_id


def log_gate_or_explain(gate_dir: Path, uri: str, experiment: str, log=print) -> str | None:
    try:
        run_id = log_gate(gate_dir, uri, experiment)
    except TrackingUnavailable as exc:
        log(f"MLflow: {exc}. The verdicts are in {gate_dir / 'results.json'}.")
        return None
    log(f"MLflow: gate run {run_id} at {resolve_uri(uri)}")
    return run_id
