"""Bad-input cases (see tests/bad_input_cases/__init__.py for the format): tracking URIs that
MLflow cannot keep a run in are one line up front, not minutes of retries and a traceback."""

EVALUATE = ["evaluate", "suite=fake", "policies=[ones]", "episodes=2", "max_steps=14", "progress=false"]
FILE_FIX = ("accepted: sqlite:///PATH naming an SQLite file (created if missing) in a writable folder, "
            "http://HOST:PORT")

CASES: list = [
    ("tracking-uri-in-memory", [*EVALUATE, "tracking_uri=sqlite://"], None,
     "tracking_uri='sqlite://' is an in-memory database: the logged run would vanish when evalsuite exits; "
     "accepted: sqlite:///PATH naming a file"),
    ("tracking-uri-bad-ipv6", [*EVALUATE, "tracking_uri=http://[::1"], None,
     "tracking_uri='http://[::1' is not a valid URL (Invalid IPv6 URL); accepted: http://HOST:PORT"),
    ("tracking-uri-no-host", [*EVALUATE, "tracking_uri=http://:5000"], None,
     "tracking_uri='http://:5000' names no host"),
    ("sync-tracking-uri-none", ["sync", "{run}", "tracking_uri=none"], None,
     "tracking_uri=none: sync logs a run folder to MLflow, so it needs a backend; accepted: default, sqlite:///PATH"),
    ("sqlite-is-a-folder", ["sync", "{run}", "tracking_uri=sqlite:///{tmp}"], None,
     f"is a folder, not an SQLite file; {FILE_FIX}"),
    ("sqlite-not-a-database", ["sync", "{run}", "tracking_uri=sqlite:///{tmp}/notes.txt"], "text",
     f"notes.txt is not an SQLite database (it does not start with 'SQLite format 3'); {FILE_FIX}"),
    ("sqlite-under-a-file", [*EVALUATE, "tracking_uri=sqlite:///{tmp}/notes.txt/m.db"], "text",
     "notes.txt is a file, so "),
]

# Tested in tests/test_tracking.py: they need a subprocess that obeys file modes, or a working directory.
DOC_ROWS: list = [
    ("sqlite-read-only", "`evalsuite sync RUN tracking_uri=sqlite:///ro.db` with `ro.db` read-only",
     f"evalsuite: error: tracking_uri='sqlite:///ro.db': TMP/ro.db is read-only (MLflow writes every run into it); "
     f"{FILE_FIX}"),
    ("read-only-working-directory", "`evalsuite evaluate ...` or `evalsuite sync RUN` (tracking_uri=default) in a "
     "read-only working directory; the run folder is kept as it was",
     "evalsuite: error: tracking_uri=default keeps MLflow's database in the working directory, but TMP is read-only; "
     "accepted: tracking_uri=sqlite:///WRITABLE/mlflow.db, http://HOST:PORT, or tracking_uri=none and "
     "`evalsuite sync RUN tracking_uri=...` later"),
    ("gate-mlflow-ref-tracking-none", "`evalsuite gate baseline=mlflow-tag:role=baseline candidate=RUN "
     "tracking_uri=none`", "evalsuite: error: baseline='mlflow-tag:role=baseline' is read from MLflow, but "
     "tracking_uri=none turns MLflow off; accepted: a run folder as baseline=, or tracking_uri=default, "
     "sqlite:///PATH, http://HOST:PORT"),
    ("gate-mlflow-ref-missing-database", "`evalsuite gate baseline=mlflow-tag:role=baseline candidate=RUN "
     "tracking_uri=sqlite:///nothing.db` where nothing.db does not exist",
     "evalsuite: error: baseline='mlflow-tag:role=baseline': there is no MLflow database at TMP/nothing.db (reading "
     "would only create an empty one); accepted: a run folder, or the tracking_uri= the run was logged to"),
]
