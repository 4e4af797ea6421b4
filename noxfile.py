"""Sessions: `evaluate` (the main job), `tests` (default), `unit` (the edit-test loop), `lint`,
`gate`, `tests_slow`, `benchmark`.

All sessions share one environment spec; torch is pinned in the same pip command as the rest so
pip takes the CPU wheel instead of a multi-GB CUDA build.
"""

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

INSTALL = ["-e", ".[metaworld,robomimic,torch,lbm,ray,test]", "torch==2.13.0", "-c", "constraints.txt"]
# The project's own regression gate: today's scripted expert on the shipped baseline's initial conditions.
SHIPPED_BASELINE = "reports/baselines/metaworld-smoke-scripted"


def _install(session: nox.Session) -> None:
    session.install(*INSTALL)


@nox.session
def evaluate(session: nox.Session) -> None:
    """`nox -s evaluate -- suite=metaworld-smoke [policies=[...] episodes=N ...]`."""
    _install(session)
    args = list(session.posargs) or ["suite=metaworld-smoke"]
    session.run("evalsuite", "evaluate", *args)


@nox.session
def tests(session: nox.Session) -> None:
    """The default test run (slow simulations excluded)."""
    _install(session)
    session.run("pytest", "-m", "not slow", *session.posargs)
    session.run("evalsuite", "gate", f"baseline={SHIPPED_BASELINE}", "candidate_policy=scripted",
                "tracking_uri=none", "progress=false", f"out={session.create_tmp()}/gate")


# Statistics, plan, journal, the fake-suite runner and executors, the gate's logic: no simulator.
UNIT = ["tests/stats", "tests/test_plan_and_journal.py", "tests/test_runner.py", "tests/test_groups_and_combine.py",
        "tests/test_bad_inputs.py", "tests/test_runlock.py", "tests/test_import_graph.py"]


@nox.session(default=False)
def unit(session: nox.Session) -> None:
    """Under two minutes: the parts with no simulator in them."""
    _install(session)
    session.run("pytest", "-m", "not slow", "-k", "not metaworld and not robomimic", *UNIT, *session.posargs)


STRICT = ["evalsuite/stats", "evalsuite/interfaces.py", "evalsuite/specs.py"]


@nox.session(default=False)
def lint(session: nox.Session) -> None:
    """ruff (pyflakes rules and syntax errors) over every Python file of the project; mypy --strict
    on the statistics, the plugin interfaces and the specs (numpy's own stubs, so numpy is installed)."""
    session.install("ruff==0.17.6", "mypy==2.4.1", "-c", "constraints.txt", "numpy", "scipy")
    session.run("ruff", "check", "--select", "F,E9", "evalsuite", "policies", "suites", "tests", "benchmarks",
                "noxfile.py")
    session.run("mypy", *STRICT)


@nox.session(default=False)
def wheel(session: nox.Session) -> None:
    """Build the wheel, install it (not the source tree) in this session's own environment, and
    evaluate the shipped dp3 checkpoint with it from a folder outside the source tree."""
    import glob

    tmp = session.create_tmp()
    session.run("python", "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", f"{tmp}/dist", ".")
    (built,) = glob.glob(f"{tmp}/dist/evalsuite-*.whl")
    session.install("--force-reinstall", "--no-deps", built)  # the same version number: never a stale wheel
    session.install(f"{built}[metaworld,torch]", "torch==2.13.0", "-c", "constraints.txt")
    session.chdir(tmp)
    session.run("python", "-c", "import evalsuite_policies as p, evalsuite_suites; assert 'site-packages' in p.__file__, p.__file__")
    session.run("evalsuite", "evaluate", "suite=metaworld-smoke", "policies=[scripted,dp3]", "episodes=2",
                "tracking_uri=none", "progress=false", "out=wheel-run")


@nox.session(default=False)
def gate(session: nox.Session) -> None:
    """`nox -s gate -- baseline=RUN candidate_policy=ID [margin=0.05 ...]` (default: the shipped baseline)."""
    _install(session)
    args = list(session.posargs) or [f"baseline={SHIPPED_BASELINE}", "candidate_policy=scripted"]
    session.run("evalsuite", "gate", *args)


@nox.session(default=False)
def tests_slow(session: nox.Session) -> None:
    """Long simulations and end-to-end runs."""
    _install(session)
    session.run("pytest", "-m", "slow", *session.posargs)


@nox.session(default=False)
def benchmark(session: nox.Session) -> None:
    """Runner throughput (Meta-World, robomimic workers), sequential savings, aggregates vs rliable."""
    _install(session)
    session.run("python", "benchmarks/throughput.py", *session.posargs)
    session.run("python", "benchmarks/robomimic_workers.py")
    session.run("python", "benchmarks/sequential.py")
    session.run("python", "benchmarks/aggregates.py")
    session.run("python", "benchmarks/gate.py")
    session.run("python", "benchmarks/latency.py")
