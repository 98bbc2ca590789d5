"""The CLI of searches: `params` on a space, --search options and their one-line errors."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from mlframework.cli.main import cli

SPACE = """\
gpu: -1
lr: !loguniform [1.0e-4, 0.1]
optimizer:
  sgd:
    momentum: !uniform [0.0, 0.99]
  adam: {}
"""


@pytest.fixture
def project(tmp_path):
    (tmp_path / "train.py").write_text("")
    (tmp_path / "tasks.py").write_text("import mlframework as mlf\ntrain = mlf.train_task('train.py')\n")
    (tmp_path / "search.yml").write_text(SPACE)
    return tmp_path


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_params_describes_a_search_space(project):
    result = invoke("params", str(project / "search.yml"))
    assert result.exit_code == 0, result.output
    assert "lr" in result.output and "float in [0.0001, 0.1], log scale" in result.output
    assert "only when optimizer=sgd" in result.output


def test_a_space_without_search_is_one_line_saying_to_add_it(project):
    result = invoke("sweep", str(project), "-p", str(project / "search.yml"), "--local")
    assert result.exit_code == 2
    assert "search.yml:2: parameter 'lr'" in result.output and "search it with --trials N" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--search", "tpe", "--trials", "5"], "--search needs --metric"),
        (["--search", "tpe", "--metric", "accuracy"], "--search needs --trials"),
        (["--trials", "5"], "a search (--trials) needs --metric"),
        (["--prune", "median"], "--prune applies only to a search: give --trials N"),
        (["--search", "tpe", "--trials", "5", "--metric", "a", "--timeout", "soon"], "--timeout"),
        (["--search", "grid", "--trials", "5", "--metric", "a"], "--search grid cannot list !loguniform"),
    ],
)
def test_search_options_are_checked_before_anything_runs(project, args, words):
    result = invoke("sweep", str(project), "-p", str(project / "search.yml"), "--local", *args)
    assert result.exit_code == 2, result.output
    assert words in result.output and "Traceback" not in result.output


def test_dry_run_of_a_search_describes_its_space(project):
    result = invoke(
        "sweep", str(project), "-p", str(project / "search.yml"), "--dry-run", "--search", "tpe", "--trials", "7",
        "--metric", "accuracy",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "a tpe search of 7 trial(s)" in result.output and "momentum" in result.output


def test_dry_run_of_trials_without_search_names_the_default_sampler(project):
    result = invoke(
        "sweep", str(project), "-p", str(project / "search.yml"), "--dry-run", "--trials", "7", "--metric", "accuracy",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "a bohb search of 7 trial(s)" in result.output and "momentum" in result.output
