"""Bad-input cases (see tests/bad_input_cases/__init__.py for the format): policy servers,
``policies=[remote:ws://...]``.

A bad address, bad options or a server nobody runs are ``CASES``: one line, exit 2, before any
episode (test_remote.py's test_an_unreachable_server_is_one_line_before_anything_is_written shows
no plan.json is written either). A server that misbehaves once the run is under way is not a bad
command: the run finishes (exit 0) with its results, each fault an outcome - the policy's failure,
counted - or, for a dropped connection, an infrastructure error retried. Those need a running server
(tests/remote_servers/openpi_style_server.py, by ``--mode``), so they are ``SERVER_CASES``, run by
test_a_misbehaving_policy_server_is_counted_and_the_run_finishes in tests/test_bad_inputs.py, and
listed in the doc through ``DOC_ROWS``, made from the very lines that test asserts.
"""

from __future__ import annotations

from evalsuite import wire

EVAL = ["evaluate", "suite=fake", "episodes=2", "max_steps=14", "tracking_uri=none", "progress=false"]
NOBODY = "ws://127.0.0.1:1"  # port 1: nothing listens there (binding it needs root), so the connection is refused

CASES = [
    ("remote-unreachable", [*EVAL, f"policies=[remote:{NOBODY}]"], None,
     f"remote: cannot connect to the policy server: ConnectionRefusedError: [Errno 111] Connection refused "
     f"(/healthz: URLError); is the server running at {NOBODY}?"),
    ("remote-not-websocket", [*EVAL, "policies=[remote:http://127.0.0.1:8000]"], None,
     "remote: url 'http://127.0.0.1:8000' is not a websocket address; e.g. remote:ws://127.0.0.1:8000"),
    ("remote-no-address", [*EVAL, "policies=[remote]"], None, "remote: give the server's address"),
    ("remote-rename-map", [*EVAL, f"policies=[remote:{NOBODY}:rename_map=task]"], None,
     "rename_map: 'task' is not OURS=THEIRS; e.g. rename_map=observation.state=observation/state+task=prompt"),
    ("remote-timeout-zero", [*EVAL, f"policies=[remote:{NOBODY}:timeout=0]"], None,
     "remote: timeout=0 must be > 0 (seconds to wait for one reply)"),
]

# The run of the server-backed cases, on Meta-World drawer-open (the foreign server's controller).
SERVER_EVAL = ["evaluate", "suite=metaworld-smoke", "tasks=[drawer-open]", "episodes=2", "tracking_uri=none",
               "video=none", "progress=false"]
FIRST = "drawer-open/00000/A"

# (id, what the server does, its --mode and arguments, the final status of every trial, the line
# printed for the first trial's fault - for "error", for whichever trial lost its connection)
SERVER_CASES = [
    ("remote-server-traceback", "raises (a traceback text frame, then a close)", ("traceback",), "policy_error",
     f"trial {FIRST}: policy error, counted as a failure: policy error: ServerError: the server failed: "
     "RuntimeError: the model fell over"),
    ("remote-server-not-msgpack", "answers bytes that are not msgpack", ("garbage",), "policy_error",
     f"trial {FIRST}: policy error, counted as a failure: policy error: WireError: not a msgpack frame "
     "(FormatError)"),
    ("remote-server-wrong-shape", "answers 3 action values where the task has 4", ("wrong-shape",), "policy_error",
     f"trial {FIRST}: policy error, counted as a failure: policy returned actions of shape (2, 1, 3), expected "
     "(2, None, 4)"),
    ("remote-server-huge-frame", f"answers a frame one byte over the limit ({wire.MAX_FRAME_BYTES:,} bytes)",
     ("huge", "--huge-bytes", str(wire.MAX_FRAME_BYTES + 1)), "policy_error",
     f"trial {FIRST}: policy error, counted as a failure: policy error: WireError: the server sent a frame over "
     f"{wire.MAX_FRAME_BYTES:,} bytes"),
    ("remote-server-non-finite", "answers NaN actions", ("nan",), "policy_error",
     f"trial {FIRST}: policy error, counted as a failure: non-finite action"),
    ("remote-server-drops", "closes one connection mid-episode without a word", ("drop",), "success",
     "trial TRIAL attempt 1: infrastructure error (will retry up to 3 attempts): infrastructure error (policy "
     "call): InfrastructureError: the policy server closed the connection (/healthz answered 200)"),
]


def _outcome(status: str) -> str:
    if status == "policy_error":
        return ("exit 0 with results: every episode a policy error, counted as a failure (0/2, 2 policy errors); "
                "a line per episode")
    return ("exit 0 with results: the episode is journaled as an infrastructure error and played again, the journal "
            "complete (2/2 successes); the line")


DOC_ROWS = [
    (name, f"`evalsuite {' '.join(SERVER_EVAL)} policies=[remote:ws://...]` against a server that {what} "
     f"(`openpi_style_server.py --mode {' '.join(mode)}`; tests/test_bad_inputs.py)", f"{_outcome(status)}: `{line}`")
    for name, what, mode, status, line in SERVER_CASES
]
