"""MLflow tracking of a finished run folder: one parent run per evaluation, a child per policy.

Tracking reads only the run folder, so it can happen later: when the server is down the results
stay on disk and ``evalsuite sync RUN_DIR tracking_uri=...`` logs them when it is back. Logging
the same folder again updates the MLflow run that ``RUN_DIR/tracking.json`` records for that
tracking URI; when updating it in place would leave stale values (a parameter changed, a metric
went away), a new run replaces it. Either way the folder has one active run there.

A tracking URI is checked before MLflow sees it: an in-memory database, a folder, a file that is
not SQLite, a read-only file or folder, or a malformed URL is one line up front, instead of MLflow
retrying for minutes and ending in pages of traceback.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalsuite import fsio, names
from evalsuite.errors import UsageError
from evalsuite.results import Results

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

    from evalsuite.plan import Plan

Log = Callable[[str], object]  # where a one-line message goes (print, by default)

DEFAULT_DB = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"
TRACKING_FILE = names.TRACKING
UID_TAG = "evalsuite.run_uid"
ACCEPTED = "default, none, sqlite:///PATH, http://HOST:PORT, https://HOST:PORT"
SQLITE_MAGIC = b"SQLite format 3\x00"
_FIX = "accepted: sqlite:///PATH naming an SQLite file (created if missing) in a writable folder, http://HOST:PORT"


class TrackingUnavailable(Exception):
    """The tracking backend cannot be reached; the run folder is intact."""


class BadBackend(UsageError):
    """A tracking URI MLflow cannot keep runs in (in memory, a folder, not SQLite, read-only)."""


def resolve_uri(uri: str, key: str = "tracking_uri") -> str:
    """The URI MLflow gets for ``uri`` (``default``: ``./mlflow.db``), checked first: a bad one is
    a one-line error here rather than minutes of MLflow retries and a traceback later."""
    if uri == "default":
        path = Path(DEFAULT_DB).resolve()
        _check_sqlite_file(path, f"{key}=default", default=True)
        return f"sqlite:///{path}"
    if not re.match(r"^(sqlite|https?|file|postgresql|mysql|databricks)[:+]", uri):
        raise UsageError(f"{key}={uri!r} is not understood; accepted: {ACCEPTED}")
    if uri.startswith("sqlite"):
        _check_sqlite_file(_sqlite_path(uri, key), f"{key}={uri!r}")
    elif uri.startswith("http"):
        _check_url(uri, key)
    return uri


def _sqlite_path(uri: str, key: str) -> Path:
    """The database file of an SQLAlchemy SQLite URL (``sqlite:///rel``, ``sqlite:////abs``)."""
    rest = re.sub(r"^sqlite(\+\w+)?://", "", uri, count=1)
    if rest == uri or (rest and not rest.startswith("/")):
        raise UsageError(f"{key}={uri!r} is not an SQLite URL; accepted: sqlite:///PATH (three slashes; four for an "
                         "absolute path), http://HOST:PORT")
    database, _, query = rest[1:].partition("?")
    if database in ("", ":memory:") or "mode=memory" in query:
        raise BadBackend(f"{key}={uri!r} is an in-memory database: the logged run would vanish when evalsuite exits; "
                         "accepted: sqlite:///PATH naming a file, http://HOST:PORT, https://HOST:PORT")
    return Path(database).resolve()


def _check_sqlite_file(path: Path, what: str, default: bool = False) -> None:
    """What SQLite needs: a database file (or none yet) that is writable, in a writable folder
    (SQLite writes its journal beside the file)."""
    if path.is_dir():
        raise BadBackend(f"{what}: {path} is a folder, not an SQLite file; {_FIX}")
    if path.exists():
        if not path.is_file():
            raise BadBackend(f"{what}: {path} is not a regular file; {_FIX}")
        try:
            with open(path, "rb") as fh:
                head = fh.read(len(SQLITE_MAGIC))
        except OSError as exc:
            raise BadBackend(f"{what}: {path} cannot be read ({exc.strerror}); {_FIX}") from None
        if head and head != SQLITE_MAGIC:  # an empty file is a new database
            raise BadBackend(f"{what}: {path} is not an SQLite database (it does not start with 'SQLite format 3'); "
                             f"{_FIX}")
        if not os.access(path, os.R_OK | os.W_OK):
            raise BadBackend(f"{what}: {path} is read-only (MLflow writes every run into it); {_FIX}")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:  # MLflow creates the missing folders
        folder = folder.parent
    if not folder.is_dir():
        raise BadBackend(f"{what}: {folder} is a file, so {path} cannot be created; {_FIX}")
    if not os.access(folder, os.W_OK | os.X_OK):
        if default:
            raise BadBackend(f"{what} keeps MLflow's database in the working directory, but {folder} is read-only; "
                             "accepted: tracking_uri=sqlite:///WRITABLE/mlflow.db, http://HOST:PORT, or tracking_uri=none "
                             "and `evalsuite sync RUN tracking_uri=...` later")
        raise BadBackend(f"{what}: the folder {folder} is read-only (SQLite writes beside {path.name}); {_FIX}")


def _check_url(uri: str, key: str) -> None:
    try:
        parts = urllib.parse.urlsplit(uri)
        _ = parts.port  # a port that is not a number raises ValueError
    except ValueError as exc:
        raise UsageError(f"{key}={uri!r} is not a valid URL ({exc}); accepted: http://HOST:PORT, https://HOST:PORT") \
            from None
    if not parts.hostname:
        raise UsageError(f"{key}={uri!r} names no host; accepted: http://HOST:PORT, https://HOST:PORT")


def run_uid(run_dir: Path, plan: Plan | None = None) -> str:
    """The run folder's MLflow identity: its plan.json bytes and where it is. ``plan``: the plan the
    caller just wrote there (its bytes are known), else the file is read."""
    data = fsio.json_text(plan.to_dict()).encode() if plan is not None else (run_dir / names.PLAN).read_bytes()
    return hashlib.sha256(data + str(run_dir.resolve()).encode()).hexdigest()[:24]


def _check_reachable(uri: str) -> None:
    if uri.startswith("http"):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=3).read()
        except (urllib.error.URLError, OSError) as exc:
            raise TrackingUnavailable(f"tracking server {uri} is unreachable ({exc})") from None
        except ValueError as exc:  # http.client.InvalidURL: a URL urlsplit let through
            raise UsageError(f"tracking_uri={uri!r} is not a valid URL ({exc}); accepted: http://HOST:PORT, "
                             "https://HOST:PORT") from None


def client(uri: str) -> MlflowClient:
    """An MlflowClient for a resolved ``uri`` that fails fast: no HTTP retries, and no SQLAlchemy
    engine retries for SQLite (MLflow retries a bad database for minutes; a local file that fails
    once fails again, and resolve_uri already said what is wrong with it)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a slow server never stalls the run
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    if uri.startswith("sqlite"):
        from mlflow.store.db import utils as db_utils

        if hasattr(db_utils, "MAX_RETRY_COUNT"):
            db_utils.MAX_RETRY_COUNT = 1
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


class LiveProgress:
    """Progress in MLflow while a run goes: one run tagged with the run folder's uid and
    ``evalsuite.live=true`` whose metrics (episodes done, episodes/s, ETA, and done per task and
    blinding code - codes only, so whoever watches stays blind) are written at most every
    ``interval_s``. ``log_run`` replaces it with the final run (same uid) at the end."""

    def __init__(self, client: MlflowClient, run_id: str, interval_s: float) -> None:
        self.client, self.run_id, self.interval_s = client, run_id, interval_s
        self._last = -float("inf")
        self._state: tuple[dict[tuple[str, str], int], int, float] | None = None
        self._step = 0

    @classmethod
    def start(cls, run_dir: Path, uri: str, experiment: str, log: Log = print, interval_s: float = 5.0,
              plan: Plan | None = None) -> LiveProgress | None:
        """The live run, or None (said in one line) when the backend cannot take it."""
        try:
            uri = resolve_uri(uri)
            _check_reachable(uri)
            mlflow_client = client(uri)
            exp_id = _experiment_id(mlflow_client, experiment, uri)
            run = mlflow_client.create_run(exp_id, run_name=f"{run_dir.name} (running)",
                                           tags={UID_TAG: run_uid(run_dir, plan), "evalsuite.live": "true",
                                                 "evalsuite.run_dir": str(run_dir.resolve())})
            return cls(mlflow_client, run.info.run_id, interval_s)
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
        with contextlib.suppress(Exception):
            self.client.set_terminated(self.run_id)


def _metric_key(text: str) -> str:
    """A name MLflow accepts for metrics, params and tags, kept readable: quotes dropped, ``=`` as
    ``-`` (``dp3:steps=10`` -> ``dp3:steps-10``), any other character MLflow refuses as ``_``; no
    path traversal ("..", as in checkpoint paths people type), no empty or leading path segments,
    bounded length."""
    key = re.sub(r"[^A-Za-z0-9_\-. /:]", "_", text.replace("'", "").replace('"', "").replace("=", "-"))
    key = re.sub(r"\.{2,}", "_", key)
    key = "/".join(part for part in key.split("/") if part.strip() not in ("", "."))  # normpath-stable
    return key[:250].strip().rstrip("/").strip() or "_"


def _experiment_id(mlflow_client: MlflowClient, experiment: str, uri: str) -> str:
    """The experiment's id, created on first use (sqlite: artifacts beside the database, which
    resolve_uri found writable - not in whatever the working directory is)."""
    exp = mlflow_client.get_experiment_by_name(experiment)
    if exp is not None:
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite"):
        location = (_sqlite_path(uri, "tracking_uri").parent / DEFAULT_ARTIFACTS).as_uri()
    return mlflow_client.create_experiment(experiment, artifact_location=location)


class _Logged:
    """What one run folder puts in MLflow: the parent run's params, metrics and tags, and each
    policy's child run (params, metrics). Gathered before MLflow is touched."""

    def __init__(self, run_dir: Path, results: Results | None = None, info: dict[str, Any] | None = None) -> None:
        from evalsuite import analyses
        from evalsuite import results as results_mod
        from evalsuite.plan import read_json

        if results is None:  # `evalsuite sync`: the folder's files; `evaluate` passes what it just wrote
            results = results_mod.load(run_dir)
            info = read_json(run_dir / names.RUN_INFO) if (run_dir / names.RUN_INFO).exists() else {}
        info = info or {}
        # unique and descriptive: the folder (its name holds the request's hash) and what it compares
        self.name = _metric_key(f"{run_dir.name}: {' vs '.join(results.policies)} on {results.suite} "
                                f"seed {results.seed}")[:240]
        self.started, self.ended = _millis(info.get("started")), _millis(info.get("ended"))
        self.tags = {"evalsuite.suite": results.suite, "evalsuite.run_dir": str(run_dir.resolve()),
                     "evalsuite.complete": str(results.trials.complete), **info.get("tags", {}),
                     "mlflow.note.content": _description(results)}
        params: dict[str, Any] = {
            "suite": results.suite, "tasks": ",".join(results.tasks), "seed": results.seed,
            "episodes_per_task": results.episodes_per_task, "policies": ",".join(results.policies),
            "interval": results.options.interval, "level": results.options.level,
            "correction": results.options.correction, "git_commit": info.get("git_commit", "unknown"),
        }
        params.update({f"version.{k}": v for k, v in info.get("versions", {}).items()})
        self.params = params
        metrics: dict[str, float] = {}
        for agg in results.aggregate:
            metrics[_metric_key(f"{agg.policy}/mean")] = agg.mean
            metrics[_metric_key(f"{agg.policy}/mean_ci_low")] = agg.ci_low
            metrics[_metric_key(f"{agg.policy}/mean_ci_high")] = agg.ci_high
        if info.get("episodes_per_s"):
            metrics["episodes_per_s"] = info["episodes_per_s"]
        metrics.update(_pair_metrics(results))
        for spec, section_metrics in analyses.present(results, "metrics"):
            metrics.update({_metric_key(name): value
                            for name, value in section_metrics(results.section(spec.id)).items()})
        self.metrics = metrics
        self.tags.update({_metric_key(f"letters.{task}"): " ".join(f"{p}={g}" for p, g in groups.items())
                          for task, groups in results.letters.items()})
        for spec, section_tags in analyses.present(results, "tags"):
            self.tags.update({_metric_key(name): value for name, value in section_tags(results.section(spec.id)).items()})
        self.children: dict[str, tuple[dict[str, Any], dict[str, float]]] = {}
        for name, pol in results.policies.items():
            rows = [r for r in results.per_task if r.policy == name]
            child_params = {"policy_id": pol["id"], "policy_label": name, "blinding_code": pol["code"],
                            **{f"param.{k}": v for k, v in _resolved_params(pol).items()},
                            **{_metric_key(f"fingerprint.{r.task}"): r.fingerprint for r in rows}}
            child_metrics = {_metric_key(f"{r.task}/{field}"): getattr(r, field) for r in rows if r.rate is not None
                             for field in ("rate", "ci_low", "ci_high", "n", "successes", "policy_errors", "missing")}
            self.children[name] = (child_params, child_metrics)


def _millis(stamp: Any) -> int | None:
    """An ISO time from run_info.json as MLflow's milliseconds (None: not recorded)."""
    from datetime import datetime

    try:
        return int(datetime.fromisoformat(str(stamp)).timestamp() * 1000) if stamp else None
    except ValueError:
        return None


def _description(results: Results) -> str:
    """The run's description in MLflow: the report's summary (the comparison asked for)."""
    from evalsuite import report

    return "\n".join(report.summary_lines(results))[:5000]


def _pair_metrics(results: Results) -> dict[str, float]:
    """Each paired comparison as metrics: ``pair/<task>/<A> - <B>/difference`` with ``ci_low``,
    ``ci_high``, ``p_value``, ``p_adjusted``; and ``pair/mean over tasks/<A> - <B>/...``."""
    out: dict[str, float] = {}
    for p in results.pairwise:
        if p.difference is None:
            continue
        name = f"pair/{p.task}/{p.policy_a} - {p.policy_b}"
        out.update({_metric_key(f"{name}/{field}"): float(value) for field, value in (
            ("difference", p.difference), ("ci_low", p.ci_low), ("ci_high", p.ci_high), ("p_value", p.p_value),
            ("p_adjusted", p.p_adjusted))})
    for d in results.mean_differences:
        name = f"pair/mean over tasks/{d.policy_a} - {d.policy_b}"
        out.update({_metric_key(f"{name}/{field}"): float(value) for field, value in (
            ("difference", d.difference), ("ci_low", d.ci_low), ("ci_high", d.ci_high))})
    return out


def _resolved_params(policy: dict[str, Any]) -> dict[str, Any]:
    """Every parameter a policy ran with: its spec's defaults overridden by the given ones (only
    the given ones where the policy's plugin is not installed, e.g. syncing a received folder)."""
    from evalsuite import registry

    try:
        defaults = dict(registry.policies.get(policy["id"]).params)
    except Exception:  # the plugin is not here: what the key recorded is what is known
        defaults = {}
    return {**defaults, **policy["params"]}


def _stale(run: Run, params: dict[str, Any], metrics: dict[str, float]) -> bool:
    """Whether updating ``run`` in place would leave a wrong value behind: MLflow never changes a
    logged parameter, and a metric the results no longer have would stay."""
    return (any(key in run.data.params and run.data.params[key] != str(value) for key, value in params.items())
            or any(key not in metrics for key in run.data.metrics))


def _children(mlflow_client: MlflowClient, exp_id: str, parent_id: str) -> dict[str, Run]:
    runs = mlflow_client.search_runs([exp_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    return {run.info.run_name: run for run in runs}


def _recorded_run(mlflow_client: MlflowClient, run_dir: Path, uri: str, exp_id: str, uid: str,
                  logged: _Logged) -> Run | None:
    """The run RUN_DIR/tracking.json records at ``uri`` when it can be updated in place: still
    active, in this experiment, logged from this folder (a copy of the folder gets its own run),
    and nothing would go stale. Otherwise None: a new run replaces it."""
    from mlflow.exceptions import MlflowException

    try:
        recorded = json.loads((run_dir / TRACKING_FILE).read_text(encoding="utf-8"))
        run_id = recorded["run_id"] if recorded["tracking_uri"] == uri else None
    except (OSError, ValueError, KeyError, TypeError):  # absent or damaged: a received folder may hold anything
        return None
    if not isinstance(run_id, str) or not re.fullmatch(r"[0-9A-Za-z_-]{1,64}", run_id):
        return None
    try:
        run = mlflow_client.get_run(run_id)
    except MlflowException:
        return None
    if (run.info.lifecycle_stage != "active" or run.info.experiment_id != exp_id
            or run.data.tags.get(UID_TAG) != uid or _stale(run, logged.params, logged.metrics)):
        return None
    children = _children(mlflow_client, exp_id, run_id)
    if any(_stale(child, *logged.children[name]) for name, child in children.items() if name in logged.children):
        return None
    return run


def _write(mlflow_client: MlflowClient, run_id: str, params: dict[str, Any], metrics: dict[str, float], tags: dict[str, str]) -> None:
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    mlflow_client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
                            params=[Param(k, str(v)) for k, v in params.items()],
                            tags=[RunTag(k, str(v)) for k, v in tags.items()])


def _new_run(mlflow_client: MlflowClient, exp_id: str, name: str, tags: dict[str, str],
             start_time: int | None = None) -> str:
    try:  # the tags MLflow's own start_run adds (user, source)
        from mlflow.tracking.context.registry import resolve_tags

        tags = resolve_tags(tags)
    except Exception:
        pass
    run = mlflow_client.create_run(exp_id, run_name=name, tags=tags, start_time=start_time)
    return str(run.info.run_id)  # RunInfo.run_id is untyped


def log_run(run_dir: Path, uri: str, experiment: str = "evalsuite", results: Results | None = None,
            info: dict[str, Any] | None = None, plan: Plan | None = None) -> str:
    """Log ``run_dir`` (results, plan, versions, artifacts) to MLflow; returns the parent run id.
    ``results`` and ``info`` (run_info.json): what the caller holds, else read from the folder.
    The run tracking.json records there is updated in place when it can be (see _recorded_run);
    any other run of this folder (the live progress run, a replaced one) is deleted once the new
    one is complete."""
    uri = resolve_uri(uri)
    _check_reachable(uri)
    logged = _Logged(run_dir, results, info)
    mlflow_client = client(uri)
    exp_id = _experiment_id(mlflow_client, experiment, uri)
    uid = run_uid(run_dir, plan)
    reused = _recorded_run(mlflow_client, run_dir, uri, exp_id, uid, logged)
    tags = {UID_TAG: uid, **logged.tags}
    if reused is None:
        parent_id, children = _new_run(mlflow_client, exp_id, logged.name, tags, logged.started), {}
    else:
        parent_id, children = reused.info.run_id, _children(mlflow_client, exp_id, reused.info.run_id)
        for key in reused.data.tags:  # verdicts of an earlier analysis that this one no longer makes
            if key.startswith(("letters.", "sequential.")) and key not in tags:
                mlflow_client.delete_tag(parent_id, key)
    try:
        _write(mlflow_client, parent_id, logged.params, logged.metrics, tags)
        for name, (params, metrics) in logged.children.items():
            child = children.pop(name, None)
            child_id = child.info.run_id if child is not None else _new_run(
                mlflow_client, exp_id, name, {"mlflow.parentRunId": parent_id})
            _write(mlflow_client, child_id, params, metrics, {})
            mlflow_client.set_terminated(child_id)
        for child in children.values():  # a policy this folder no longer has
            mlflow_client.delete_run(child.info.run_id)
        mlflow_client.log_artifacts(parent_id, str(run_dir), artifact_path="run")
    except BaseException:
        if reused is None:
            with contextlib.suppress(Exception):  # a new run left half-written says so; the next sync replaces it
                mlflow_client.set_terminated(parent_id, "FAILED")
        raise
    mlflow_client.set_terminated(parent_id, end_time=logged.ended)  # the evaluation's own end, not the upload's
    for old in mlflow_client.search_runs([exp_id], filter_string=f"tags.`{UID_TAG}` = '{uid}'"):
        if old.info.run_id != parent_id:
            for child in _children(mlflow_client, exp_id, old.info.run_id).values():
                mlflow_client.delete_run(child.info.run_id)
            mlflow_client.delete_run(old.info.run_id)
    return parent_id


def log_or_explain(run_dir: Path, uri: str, experiment: str, log: Log = print, results: Results | None = None,
                   info: dict[str, Any] | None = None, plan: Plan | None = None) -> str | None:
    """Log the run and record it in RUN_DIR/tracking.json. When the backend is unreachable or fails
    midway, say so in one line and how to sync later, and keep going: the results are on disk."""
    record = run_dir / TRACKING_FILE
    if record.is_symlink():  # refused before anything reaches MLflow, so no run goes unrecorded
        raise UsageError(f"{record} is a symbolic link; evalsuite never writes through a link - remove it and rerun")
    try:
        run_id = log_run(run_dir, uri, experiment, results, info, plan)
    except (TrackingUnavailable, BadBackend) as exc:
        reason = str(exc)
    except UsageError:  # the run folder itself is damaged: syncing later would not help
        raise
    except Exception as exc:  # MLflow or its database failed midway; nothing in the folder depends on it
        reason = f"logging failed ({type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]})"
    else:
        resolved = resolve_uri(uri)
        fsio.write_json(record, {"tracking_uri": resolved, "run_id": run_id})
        log(f"MLflow: run {run_id} at {resolved}")
        return run_id
    log(f"MLflow: {reason}. Results are safe in {run_dir}; log them later with:\n"
        f"  evalsuite sync {run_dir} tracking_uri={uri}")
    return None


def log_gate(gate_dir: Path, uri: str, experiment: str = "evalsuite") -> str:
    """Log a gate's verdicts as tags (overall and per task), its bounds as metrics, its summary as an artifact."""
    uri = resolve_uri(uri)
    _check_reachable(uri)
    import mlflow

    result = json.loads((gate_dir / "results.json").read_text())
    exp_id = _experiment_id(client(uri), experiment, uri)
    mlflow.set_tracking_uri(uri)
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
        return str(run.info.run_id)  # RunInfo.run_id is untyped


def log_gate_or_explain(gate_dir: Path, uri: str, experiment: str, log: Log = print) -> str | None:
    """Log the gate; a backend that is unreachable or fails is one line, the verdicts stay on disk."""
    try:
        run_id = log_gate(gate_dir, uri, experiment)
    except (TrackingUnavailable, BadBackend) as exc:
        reason = str(exc)
    except UsageError:
        raise
    except Exception as exc:
        reason = f"logging failed ({type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]})"
    else:
        log(f"MLflow: gate run {run_id} at {resolve_uri(uri)}")
        return run_id
    log(f"MLflow: {reason}. The verdicts are in {gate_dir / 'results.json'}.")
    return None
