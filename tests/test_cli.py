"""User mistakes: one line naming the bad value and what is accepted, exit code 2, no traceback."""

import subprocess
import sys

import pytest

from evalsuite.cli import main
from evalsuite.commands.options import parse_list
from tests.conftest import REPO

BASE = ["evaluate", "suite=metaworld-smoke", "tracking_uri=none", "progress=false"]


@pytest.mark.parametrize("argv,fragment", [
    (["evaluate", "suite=metaworld-smoke", "policies=[scripted]", "epsiodes=3"], "unknown key 'epsiodes'; did you mean episodes=?"),
    (["evaluate", "suite=nope", "policies=[scripted]"], "unknown suite 'nope'; accepted: metaworld"),
    ([*BASE, "policies=[scripted,nope]"], "unknown policy 'nope'; accepted: "),
    ([*BASE, "policies=[scripted]", "tasks=[pick-place,fly]"], "unknown task 'fly' in suite 'metaworld-smoke'; accepted: "),
    ([*BASE, "policies=[scripted]", "episodes=ten"], "episodes='ten' is not an integer"),
    ([*BASE, "policies=[scripted]", "episodes=0"], "episodes=0 must be >= 1"),
    ([*BASE, "policies=[noisy-scripted:nois=0.3]"], "policy 'noisy-scripted' has no parameter 'nois'; accepted: group, label, noise"),
    ([*BASE, "policies=[noisy-scripted:noise=abc]"], "noise='abc' is not a float"),
    ([*BASE, "policies=[scripted:foo]"], "policy 'scripted' takes no positional argument"),
    ([*BASE, "policies=[scripted]", "interval=wald"], "interval='wald'; accepted: clopper-pearson, jeffreys, wilson"),
    ([*BASE, "policies=[scripted]", "level=95"], "level='95' must be in (0.0, 1.0)"),
    (["evaluate", "suite=metaworld-smoke", "policies=[scripted]", "tracking_uri=ftp://x"], "tracking_uri='ftp://x' is not understood"),
    (["evaluate", "policies=[scripted]"], "missing suite="),
    ([*BASE, "policies=[scripted]", "init_states=x.hdf5"], "init_states= is an option of suites robomimic, robomimic-image, not of suite 'metaworld-smoke'"),
    (["evaluate", "suite=metaworld-smoke", "policies"], "argument 'policies' is not key=value"),
    (["report", "/nonexistent/run"], "/nonexistent/run is not a run folder"),
    (["fly"], "unknown command 'fly'; accepted: agreement, check-policy, check-suite, compose, demos, evaluate, export, "
              "gate, leaderboard, list, operator, plan, report, review, select, serve, sync, train, trial, unblind, video"),
])
def test_usage_errors(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err
    assert len(err.splitlines()) == 1 and err.startswith("evalsuite: error: ")


def test_console_script_exit_code_and_no_traceback(tmp_path):
    out = subprocess.run([sys.executable, "-m", "evalsuite", "evaluate", "suite=metaworld-smoke", "policies=[x]"],
                         cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "unknown policy 'x'" in out.stderr


def test_list_shows_suites_tasks_and_policies(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("metaworld-smoke", "pick-place (hard)", "noisy-scripted", "mlp-bc             [path]"):
        assert word in out


def test_parse_list():
    assert parse_list("k", "[a, b,c]") == ["a", "b", "c"]
    assert parse_list("k", "a") == ["a"]


def test_demos_command_writes_dp3_fields_for_metaworld(tmp_path, capsys):
    import h5py

    out = tmp_path / "drawer.hdf5"
    assert main(["demos", "suite=metaworld-smoke", "task=drawer-open", "n=2", f"out={out}"]) == 0
    with h5py.File(out) as f:
        ends = f["meta/episode_ends"][()]
        assert len(ends) == 2 and f["data/full_state"].shape == (ends[-1], 39)
        assert f["data/action"].shape == (ends[-1], 4)


def test_demos_command_usage_errors(capsys):
    assert main(["demos", "suite=metaworld-smoke", "task=drawer-open", "n=2", "out=x.zarr"]) == 2
    assert "use a .hdf5 file name" in capsys.readouterr().err
    assert main(["demos", "suite=metaworld-smoke", "task=drawer-open", "out=x.hdf5"]) == 2
    assert "missing n=" in capsys.readouterr().err


def test_plan_command(capsys, tmp_path):
    import json

    assert main(["plan", "p_baseline=0.7", "delta=0.1", "design=independent"]) == 0
    assert capsys.readouterr().out.startswith("294 episodes per policy")
    assert main(["plan", "p_baseline=0.7", "delta=0.1", "discordance=0.2"]) == 0
    assert capsys.readouterr().out.startswith("155 pairs")
    pilot = tmp_path / "pilot"
    pilot.mkdir()
    pilot_results = json.loads((REPO / "reports" / "example" / "results.json").read_text())  # a real run's file
    first = pilot_results["pairwise"][0]
    pilot_results["pairwise"] = [{**first, "n_pairs": 50, "a_only": 6, "b_only": 4},
                                 {**first, "n_pairs": 50, "a_only": 7, "b_only": 3}]
    (pilot / "results.json").write_text(json.dumps(pilot_results))
    assert main(["plan", "p_baseline=0.7", "delta=0.1", f"pilot={pilot}"]) == 0
    assert "discordance 0.200 (estimated from 100 pilot pairs)" in capsys.readouterr().out
    assert main(["plan", "p_baseline=0.7", "delta=0.1", "design=crossover"]) == 2
    assert "design='crossover'; accepted: independent, paired" in capsys.readouterr().err
    assert main(["plan", "p_baseline=0.95", "delta=0.1"]) == 2


def test_plan_for_a_gate_takes_the_edge_rates_and_either_sign_of_the_drop(capsys):
    """The gate table's own row (1.00 -> 0.85 over 3 tasks: 82 pairs) plans from the command line,
    a drop is a drop whichever sign delta has, and a drop the baseline cannot have is refused."""
    assert main(["plan", "p_baseline=1.0", "delta=-0.15", "margin=0.05", "tasks=3"]) == 0
    out = capsys.readouterr().out
    assert "82 pairs per task to call a drop 1 -> 0.85" in out
    assert main(["plan", "p_baseline=1.0", "delta=0.15", "margin=0.05", "tasks=3"]) == 0
    assert capsys.readouterr().out == out
    assert main(["plan", "p_baseline=0.99", "delta=0.15", "margin=0.05"]) == 0  # refused before: 0.99 + 0.15 > 1
    assert "a drop 0.99 -> 0.84" in capsys.readouterr().out
    assert main(["plan", "p_baseline=0.1", "delta=-0.15", "margin=0.05"]) == 2
    assert "0 < |delta| <= p_baseline=0.1" in capsys.readouterr().err


@pytest.mark.parametrize("args,fragment", [
    (["stopping=later"], "stopping='later'; accepted: fixed, sequential"),
    (["alpha=0.1"], "alpha= applies to stopping=sequential only"),
    (["stopping=sequential", "episodes=10"], "give max_episodes=, not episodes="),
    (["stopping=sequential", "round_size=0"], "round_size=0 must be >= 1"),
])
def test_sequential_usage_errors(args, fragment, capsys):
    assert main([*BASE, "policies=[scripted]", *args]) == 2
    assert fragment in capsys.readouterr().err


@pytest.mark.parametrize("argv,fragment", [
    ([*BASE[:1], "suite=metaworld-family/pick-place", "tracking_uri=none", "policies=[scripted]", "mdps=many"],
     "mdps='many' and design_seed=0 must be integers"),
    ([*BASE[:1], "suite=metaworld-family/pick-place", "tracking_uri=none", "policies=[scripted]", "vary=[gravity]"],
     "has no axis 'gravity'; accepted: "),
    ([*BASE[:1], "suite=metaworld-family/pick-place", "tracking_uri=none", "policies=[scripted]", "sampler=halton"],
     "sampler='halton'; accepted: grid, lhs, sobol"),
    ([*BASE[:1], "suite=metaworld-family/pick-place", "tracking_uri=none", "policies=[scripted]", "worst_case=cma"],
     "worst_case='cma'; accepted: cem, none"),
    ([*BASE, "policies=[scripted]", "generations=3"], "generations= is an option of suites metaworld-family/drawer-open"),
    ([*BASE, "policies=[scripted]", "obs=rgb"], "obs='rgb'; accepted: state, pointcloud"),
    ([*BASE, "policies=[gpc:members=dp3+scripted]"], "gpc member 'scripted' exposes no denoiser"),
])
def test_family_and_composition_usage_errors(argv, fragment, capsys, tmp_path):
    assert main([*argv, f"out={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("command,key", [("evaluate", "episodes"), ("gate", "margin"), ("report", "interval"),
                                         ("train", "policy"), ("export", "format"), ("plan", None)])
def test_every_command_has_help_from_its_key_table(command, key, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"evalsuite {command}") and (key is None or f"  {key} " in out)


# Where each generated key table lives in the docs site (docs/, `nox -s docs`).
KEY_TABLES = {"evaluate": "guide/evaluate.md", "suite-options": "guide/evaluate.md", "gate": "gate.md",
              "video": "guide/video.md", "report": "guide/report.md", "sync": "guide/sync.md",
              "export": "guide/export.md", "plan": "guide/plan.md", "select": "guide/select.md",
              "compose": "guide/compose.md", "demos": "guide/demos.md", "train": "guide/train.md", "serve": "guide/serve.md",
              "trial": "trials.md", "operator": "trials.md", "review": "guide/review.md",
              "check-policy": "plugins/policy.md", "check-suite": "plugins/suite.md",
              "leaderboard": "guide/leaderboard.md", "agreement": "guide/agreement.md"}


@pytest.mark.parametrize("command,page", sorted(KEY_TABLES.items()))
def test_docs_key_tables_are_the_declarations(command, page):
    """A command's key table in the docs is generated from the same ``OPTIONS`` its parser uses
    (`EVALSUITE_WRITE_DOCS_KEYS=1 pytest tests/test_cli.py -k key_tables` rewrites it)."""
    import os
    import re

    from evalsuite.commands import module
    from evalsuite.commands.options import Option, markdown_table

    path = REPO / "docs" / page
    text = path.read_text()
    begin, end = f"<!-- keys:{command} -->", f"<!-- /keys:{command} -->"
    if command == "suite-options":  # what the built-in suite plugins declare
        from evalsuite.commands.catalog import suite_options_table

        table = f"{begin}\n{suite_options_table()}\n{end}"
    elif command == "train":  # a plugin command (evalsuite_policies): its module's KEYS give its --help
        from evalsuite_policies.cli_train import KEYS

        table = f"{begin}\n{markdown_table(tuple(Option(k, v) for k, v in KEYS.items()))}\n{end}"
    else:
        table = f"{begin}\n{markdown_table(module(command).OPTIONS)}\n{end}"
    found = re.search(re.escape(begin) + ".*?" + re.escape(end), text, re.S)
    assert found, f"docs/{page} lacks {begin}"
    if os.environ.get("EVALSUITE_WRITE_DOCS_KEYS") or os.environ.get("EVALSUITE_WRITE_README_KEYS"):
        path.write_text(text.replace(found.group(0), table))
    else:
        assert found.group(0) == table, \
            f"docs/{page}: key table out of date: EVALSUITE_WRITE_DOCS_KEYS=1 pytest tests/test_cli.py -k key_tables"


def test_key_table_cells_show_angle_brackets_and_pipes_as_typed():
    """Rendered as the docs site renders it (Python-Markdown's tables): ``<suite>`` is text, not a
    swallowed HTML tag, a ``|`` stays inside its cell, and a code span shows its text unchanged."""
    import markdown

    from evalsuite.commands.options import Option, markdown_table

    table = markdown_table([Option("out", "run folder (default: reports/<suite>-<hash>)"),
                            Option("executor", "local | ray, see `a<b>|c`", default="local")])
    html = markdown.markdown(table, extensions=["tables"])
    assert "reports/&lt;suite&gt;-&lt;hash&gt;" in html and "<suite>" not in html
    assert html.count("<td>") == 6  # two rows of three cells: no pipe split a cell
    assert "local &#124; ray" in html and "<code>a&lt;b&gt;|c</code>" in html


def test_help_lists_every_declared_option_with_its_default(capsys):
    from evalsuite.commands import evaluate

    assert main(["evaluate", "--help"]) == 0
    out = capsys.readouterr().out
    for option in evaluate.OPTIONS:
        assert f"  {option.name} " in out
    assert "batch_size" in out and "(default: 8)" in out


@pytest.mark.parametrize("argv,fragment", [
    (["evaluate", "suite=fake", "n_episodes=3"], "unknown key 'n_episodes'; did you mean episodes=?"),
    (["evaluate", "suite=fake", "output_dir=runs/x"], "unknown key 'output_dir'; did you mean out=?"),
    (["evaluate", "--suite=fake", "--n_episodes=3"], "did you mean episodes=?"),
    (["evaluate", "suite=fake", "colour=red"], "unknown key 'colour'; accepted: alpha, batch_size"),
])
def test_an_unknown_key_says_what_was_meant(argv, fragment, fake_suite, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fragment in err, err


def test_dashed_keys_are_keys(fake_suite, tmp_path):
    out = tmp_path / "run"
    assert main(["evaluate", "--suite=fake", "--policies=[ones]", "--episodes=2", "--max_steps=14",
                 "--tracking_uri=none", "--progress=false", "--video=none", f"--out={out}"]) == 0
    assert (out / "results.json").exists()


def test_the_console_ends_with_the_paired_comparison_and_keeps_long_labels_in_columns(fake_suite, tmp_path, capsys):
    long = "ones:group=a-very-long-variant-name-that-overflows"
    assert main(["evaluate", "suite=fake", f"policies=[ones,{long}]", "episodes=3", "max_steps=14",
                 "tracking_uri=none", "progress=false", f"out={tmp_path / 'run'}"]) == 0
    out = capsys.readouterr().out.splitlines()
    table = [line for line in out if line.startswith(("t1 ", "t2 ", "mean over tasks"))]
    rate_columns = {line.index(" [") for line in table}
    assert len(rate_columns) == 1, table  # every row's interval starts in the same column
    assert any(line.startswith("paired ") and "(mean over tasks)" in line for line in out), out[-3:]


def test_label_names_a_variant_everywhere(fake_suite, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["evaluate", "suite=fake", "policies=[ones:label=fast,ones:speed=0.5:label=slow]", "episodes=3",
                 "max_steps=14", "tracking_uri=none", "progress=false", f"out={out}"]) == 0
    import json

    results = json.loads((out / "results.json").read_text())
    assert set(results["policies"]) == {"fast", "slow"}
    assert "paired fast - slow (mean over tasks)" in capsys.readouterr().out
    assert main(["evaluate", "suite=fake", "policies=[ones:label=x,ones:speed=0.5:label=x]", "episodes=3",
                 "max_steps=14", "tracking_uri=none", "progress=false", f"out={tmp_path / 'twice'}"]) == 2
    assert "the same policy is listed twice" in capsys.readouterr().err
