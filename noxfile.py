"""Sessions: `evaluate` (the main job), `tests` (default: lint, docs, tests, the project's own gate),
`unit` (the edit-test loop), `lint`, `docs`, `gate`, `tests_slow`, `benchmark`, `wheel`, `numpy2`.

Every session but `wheel` runs in one shared environment, `.nox/shared`, built once and rebuilt
only when pyproject.toml, constraints.txt or the install line change (`wheel` tests a built wheel
in its own). torch is pinned in the same pip command as the rest so pip takes the CPU wheel
instead of a multi-GB CUDA build.
"""

import hashlib
import os
import shutil
import sys
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

INSTALL = ["-e", ".[metaworld,robomimic,torch,lbm,ray,video,remote,console,test]", "torch==2.13.0", "ruff==0.17.6", "mypy==2.4.1",
           "-c", "constraints.txt"]
SHARED = Path(".nox/shared")
# The project's own regression gate: today's scripted expert on the shipped baseline's initial conditions.
SHIPPED_BASELINE = "reports/baselines/metaworld-smoke-scripted"
# mypy --strict on the whole core (pyproject's [tool.mypy]); ruff's rule set is pyproject's [tool.ruff].
STRICT = ["evalsuite"]
LINTED = ["evalsuite", "policies", "suites", "tests", "benchmarks", "noxfile.py"]


def _shared(session: nox.Session) -> dict[str, str]:
    """The shared environment, (re)installed when what defines it changed; returns the variables
    that make a command run inside it."""
    python = SHARED / "bin" / "python"
    if not python.exists():
        session.run(sys.executable, "-m", "venv", str(SHARED), external=True)
    spec = hashlib.sha256(" ".join(INSTALL).encode() + Path("pyproject.toml").read_bytes()
                          + Path("constraints.txt").read_bytes()).hexdigest()
    stamp = SHARED / "installed.sha256"
    if not stamp.exists() or stamp.read_text() != spec:
        session.run(str(python), "-m", "pip", "install", "-q", *INSTALL, external=True)
        stamp.write_text(spec)
    return {"PATH": f"{(SHARED / 'bin').resolve()}{os.pathsep}{os.environ.get('PATH', '')}",
            "VIRTUAL_ENV": str(SHARED.resolve())}


def _run(session: nox.Session, program: str, *args: str) -> None:
    """``program`` from the shared environment's bin/ (nox would look it up on the outer PATH)."""
    env = _shared(session)
    session.run(str((SHARED / "bin" / program).resolve()), *args, env=env, external=True)


def _lint(session: nox.Session) -> None:
    _run(session, "ruff", "check", *LINTED)
    _run(session, "mypy", *STRICT)


def _docs(session: nox.Session) -> None:
    """The docs site (mkdocs.yml, docs/) built strictly: a warning or a broken internal link fails."""
    env = {**_shared(session), "NO_MKDOCS_2_WARNING": "1"}  # quiet mkdocs-material's end-of-life banner
    session.run(str((SHARED / "bin" / "mkdocs").resolve()), "build", "--strict", "--site-dir",
                f"{session.create_tmp()}/site", env=env, external=True)


@nox.session(venv_backend="none")
def evaluate(session: nox.Session) -> None:
    """`nox -s evaluate -- suite=metaworld-smoke [policies=[...] episodes=N ...]`."""
    _run(session, "evalsuite", "evaluate", *(list(session.posargs) or ["suite=metaworld-smoke"]))


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """What CI runs: lint, the docs site, the default tests (slow simulations excluded), the project's own gate."""
    _lint(session)
    _docs(session)
    # a test file per process (pytest-xdist; at most 4): the tests wait on servers, browsers and
    # subprocesses as much as they compute; the slowest 15 printed, for the next trim
    _run(session, "pytest", "-m", "not slow", "-n", str(min(4, os.cpu_count() or 1)), "--dist", "loadfile",
         "--durations=15", *session.posargs)
    _run(session, "evalsuite", "gate", f"baseline={SHIPPED_BASELINE}", "candidate_policy=scripted",
         "tracking_uri=none", "progress=false", f"out={session.create_tmp()}/gate")


@nox.session(venv_backend="none", default=False)
def unit(session: nox.Session) -> None:
    """The edit-test loop: the tests marked ``unit`` (no simulator in them)."""
    _run(session, "pytest", "-m", "unit and not slow", *session.posargs)


@nox.session(venv_backend="none", default=False)
def docs(session: nox.Session) -> None:
    """The docs site: `mkdocs build --strict` into a temporary folder (`mkdocs serve` to read it locally)."""
    _docs(session)


@nox.session(venv_backend="none", default=False)
def lint(session: nox.Session) -> None:
    """ruff (pyproject's rule set: pyflakes, imports, bugbear, pyupgrade, simplify, complexity) over every
    Python file; mypy --strict on the core."""
    _lint(session)


@nox.session(default=False)
def wheel(session: nox.Session) -> None:
    """Build the wheel, install it (not the source tree) in this session's own environment, and
    evaluate the shipped dp3 checkpoint with it from a folder outside the source tree."""
    import glob

    tmp = session.create_tmp()
    shutil.rmtree("build", ignore_errors=True)  # setuptools packs whatever an earlier build left in build/lib
    shutil.rmtree(f"{tmp}/dist", ignore_errors=True)
    session.run("python", "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", f"{tmp}/dist", ".")
    (built,) = glob.glob(f"{tmp}/dist/evalsuite-*.whl")
    size_mb = os.path.getsize(built) / 1e6  # a package index takes files up to 100 MB
    session.log(f"wheel: {Path(built).name}, {size_mb:.1f} MB (limit 100 MB)")
    if size_mb > 100:
        session.error(f"the wheel is {size_mb:.1f} MB, over a package index's 100 MB")
    session.install("--force-reinstall", "--no-deps", built)  # the same version number: never a stale wheel
    session.install(f"{built}[metaworld,torch]", "torch==2.13.0", "-c", "constraints.txt")
    session.chdir(tmp)
    shutil.rmtree("wheel-run", ignore_errors=True)  # a fresh run each time, never a resume of an old one
    session.run("python", "-c", "import evalsuite_policies as p, evalsuite_suites; assert 'site-packages' in p.__file__, p.__file__")
    session.run("evalsuite", "evaluate", "suite=metaworld-smoke", "policies=[scripted,dp3]", "episodes=2",
                "tracking_uri=none", "progress=false", "out=wheel-run")


@nox.session(venv_backend="none", default=False)
def gate(session: nox.Session) -> None:
    """`nox -s gate -- baseline=RUN candidate_policy=ID [margin=0.05 ...]` (default: the shipped baseline)."""
    _run(session, "evalsuite", "gate", *(list(session.posargs) or [f"baseline={SHIPPED_BASELINE}",
                                                                      "candidate_policy=scripted"]))


@nox.session(venv_backend="none", default=False)
def tests_slow(session: nox.Session) -> None:
    """Long simulations and end-to-end runs."""
    _run(session, "pytest", "-m", "slow", *session.posargs)


@nox.session(venv_backend="none", default=False)
def benchmark(session: nox.Session) -> None:
    """Runner throughput (Meta-World, robomimic workers), sequential savings (binary and progress),
    aggregates vs rliable, gate sizes, inference latency."""
    for script in ("throughput.py", "robomimic_workers.py", "sequential.py", "progress_sequential.py", "aggregates.py",
                   "gate.py", "latency.py", "videos.py", "remote.py", "profile.py"):
        _run(session, "python", f"benchmarks/{script}", *(session.posargs if script == "throughput.py" else []))


# LeRobot (>= 0.5) needs Python >= 3.12, numpy >= 2 and torch < 2.12; evalsuite needs numpy < 2 (robosuite's
# mink pin) and torch 2.13, so LeRobot lives in an environment of its own behind a policy server
# (docs/lerobot.md). torch is installed first, from the CPU wheel index where it is reachable.
LEROBOT_ENV = Path(".nox/lerobot")
LEROBOT_TORCH = ["torch==2.11.0", "torchvision==0.26.0"]  # the newest lerobot 0.6.1 admits (torch < 2.12)
LEROBOT_INSTALL = ["lerobot[dataset,accelerate-dep]==0.6.1", *LEROBOT_TORCH, "websockets>=13", "msgpack>=1"]
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _python312(session: nox.Session) -> str:
    """The first interpreter >= 3.12 that runs: posargs[0], $EVALSUITE_PYTHON312, python3.12 on PATH, pyenv's
    (a pyenv shim is on PATH even where it cannot run 3.12, so each candidate is tried)."""
    import glob
    import subprocess

    candidates = [*session.posargs[:1], os.environ.get("EVALSUITE_PYTHON312", ""), shutil.which("python3.12") or "",
                  *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")), reverse=True)]
    for candidate in filter(None, candidates):
        probe = [candidate, "-c", "import sys; sys.exit(sys.version_info < (3, 12))"]
        if subprocess.run(probe, capture_output=True).returncode == 0:
            return candidate
    session.error("no Python >= 3.12 runs here: pass one, `nox -s lerobot_env -- /path/to/python3.12`")


@nox.session(venv_backend="none", default=False)
def lerobot_env(session: nox.Session) -> None:
    """`.nox/lerobot`: Python 3.12 with lerobot 0.6.1 (policies=[lerobot:PATH], demos format=lerobot,
    lerobot-train); `nox -s lerobot_env [-- /path/to/python3.12]`."""
    from nox.command import CommandFailed

    python = LEROBOT_ENV / "bin" / "python"
    if not python.exists():
        session.run(_python312(session), "-m", "venv", str(LEROBOT_ENV), external=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    try:  # the CPU build (no CUDA libraries: GBs less) where the PyTorch index answers
        session.run(*pip, "--retries", "0", "--timeout", "20", "--index-url", TORCH_CPU_INDEX, *LEROBOT_TORCH,
                    external=True, silent=True)
    except CommandFailed:
        session.warn(f"{TORCH_CPU_INDEX} not reachable: torch comes from PyPI (a CUDA build, several GB)")
    session.run(*pip, *LEROBOT_INSTALL, external=True)
    session.run(str(python), "-c", "import lerobot, torch, numpy; print('lerobot', lerobot.__version__, 'torch', "
                "torch.__version__, 'numpy', numpy.__version__)", external=True)


@nox.session(venv_backend="none", default=False)
def numpy2(session: nox.Session) -> None:
    """The core alone on numpy 2 (only the robomimic extra needs numpy < 2): a fresh environment
    without constraints.txt analyses committed run folders to their recorded results
    (tests/test_numpy2.py; a minute or two with pip's cache warm)."""
    _run(session, "pytest", "-m", "slow", "tests/test_numpy2.py", *session.posargs)
