"""Command templates: placeholders filled per trial, shown at --dry-run and `params --project`, errors in one line."""

from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner

from mlframework.cli.main import cli
from mlframework.exceptions import ConfigError
from mlframework.sweep.params.arguments import ArgumentStyle, display
from mlframework.sweep.params.command import CommandTemplate, check_values, fill, fill_params, placeholders_in
from mlframework.sweep.trials.trial import Trial

PLACES = {"trial_dir": "/w/t0001", "trial": "t0001", "sweep": "s1", "gpu": "0", "project_dir": "/p", "python": "/py"}


def test_a_template_renders_args_as_separate_argv_elements():
    template = CommandTemplate.parse(
        "python train.py config/x.py {args} --out_dir={trial_dir}/out --device=cuda:{gpu}", "tasks.py"
    )
    argv = template.render(["--name=two words", "--lr=0.1"], PLACES)
    assert argv == [
        PLACES["python"],  # a first word python is the worker's interpreter
        "train.py",
        "config/x.py",
        "--name=two words",
        "--lr=0.1",
        "--out_dir=/w/t0001/out",
        "--device=cuda:0",
    ]


def test_quotes_in_the_template_are_read_like_a_shell_would():
    template = CommandTemplate.parse("run 'a b' \"{trial}\" {{trial}} ${oc.env:HOME}", "tasks.py")
    assert template.render([], PLACES) == ["run", "a b", "t0001", "{trial}", "${oc.env:HOME}"]


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("python train.py {args} --out={trial_dri}/out", "unknown placeholder {trial_dri} in '--out={trial_dri}/out'"),
        ("python train.py --x={args}", "{args} must be a word of its own"),
        ("", "the command is empty"),
        ("python 'train.py", "No closing quotation"),
    ],
)
def test_a_bad_template_is_one_line_naming_the_problem(command, message):
    with pytest.raises(ConfigError) as caught:
        CommandTemplate.parse(command, "proj/tasks.py: command_task")
    assert message in str(caught.value) and str(caught.value).startswith("proj/tasks.py: command_task: ")
    assert "\n" not in str(caught.value)


def test_values_use_the_same_placeholders():
    params = {"out_dir": "{trial_dir}/out", "tags": ["{trial}", "x"], "lr": 0.1, "cfg": '{"a": {"b": 1}}'}
    assert fill_params(params, PLACES) == {
        "out_dir": "/w/t0001/out",
        "tags": ["t0001", "x"],
        "lr": 0.1,
        "cfg": '{"a": {"b": 1}}',  # braces around anything but a name are not placeholders
    }
    assert placeholders_in("${model.lr} ${x} {y} {{z}}") == ["y"]


def test_a_placeholder_not_known_yet_is_shown_as_written():
    assert fill("{trial_dir}/out", {"trial": "t0"}) == "{trial_dir}/out"
    assert display(["--out_dir={trial_dir}/out", "{a,b}"]) == "--out_dir={trial_dir}/out '{a,b}'"


def test_an_unknown_placeholder_in_a_value_names_the_parameter():
    with pytest.raises(ConfigError, match=r"parameters.yml: parameter 'out_dir': unknown placeholder \{trail_dir\}"):
        check_values({"lr": [0.1], "out_dir": ["{trail_dir}/out"]}, "parameters.yml")
    with pytest.raises(ConfigError, match=r"\{args\} belongs in the command"):
        check_values({"x": ["{args}"]}, "parameters.yml")


def test_a_trial_fills_its_own_values():
    trial = Trial("s1", "t0003", 3, {"out_dir": "{trial_dir}/out", "on": False}, arguments=ArgumentStyle.booleans())
    trial.sweep_dir = None
    options = trial.options()
    assert options[0] == f"--out_dir={trial.workdir}/out" and options[1] == "--on=False"
    assert trial.places()["python"] == sys.executable


def _project(tmp_path, tasks: str, grid: str):
    (tmp_path / "train.py").write_text("")
    (tmp_path / "tasks.py").write_text("import mlframework as mlf\n" + tasks)
    (tmp_path / "parameters.yml").write_text(grid)
    return tmp_path


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_dry_run_shows_each_trial_s_whole_command(tmp_path):
    project = _project(
        tmp_path,
        "train = mlf.command_task('python train.py cfg.py {args} --out_dir={trial_dir}/out', arguments='booleans')\n",
        "lr: [0.1, 0.01]\ncompile: [false]\n",
    )
    result = _invoke("sweep", str(project), "--dry-run", "--results", str(tmp_path / "res"))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1] == "t0000 python train.py cfg.py --lr=0.1 --compile=False --out_dir={trial_dir}/out"
    assert lines[2] == "t0001 python train.py cfg.py --lr=0.01 --compile=False --out_dir={trial_dir}/out"
    assert "warning" not in result.output


def test_params_project_shows_the_whole_command(tmp_path):
    project = _project(
        tmp_path,
        "train = mlf.command_task('{python} app.py {args}', arguments=mlf.ArgumentStyle.hydra(new=['c']))\n",
        "a.b: [1]\nc: [x]\nname: ['two words']\n",
    )
    result = _invoke("params", str(project / "parameters.yml"), "--project", str(project))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["{python} app.py a.b=1 +c=x \"name='two words'\""]


def test_dry_run_warns_once_about_a_dropped_false(tmp_path):
    project = _project(tmp_path, "train = mlf.train_task('train.py')\n", "compile: [true, false]\nlr: [0.1, 0.2]\n")
    result = _invoke("sweep", str(project), "--dry-run", "--results", str(tmp_path / "res"))
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "'compile'" in warnings[0] and "--compile=False" in warnings[0]
    assert "t0002 --lr=0.1" in result.output.splitlines()  # compile: false leaves the option out


def test_an_unknown_placeholder_is_one_line_at_dry_run(tmp_path):
    project = _project(tmp_path, "train = mlf.command_task('python train.py {args} --seed={sed}')\n", "lr: [0.1]\n")
    result = _invoke("sweep", str(project), "--dry-run", "--results", str(tmp_path / "res"))
    assert result.exit_code == 2
    assert "unknown placeholder {sed}" in result.output and "Traceback" not in result.output
    project = _project(tmp_path, "train = mlf.command_task('python train.py {args}')\n", "out: ['{trail_dir}/o']\n")
    result = _invoke("sweep", str(project), "--dry-run", "--results", str(tmp_path / "res"))
    assert result.exit_code == 2
    assert "parameter 'out': unknown placeholder {trail_dir}" in result.output


def test_a_task_names_an_argument_style(tmp_path):
    project = _project(
        tmp_path, "train = mlf.train_task('train.py', arguments='lightning')\n", "trainer.fast: [false]\n"
    )
    result = _invoke("sweep", str(project), "--dry-run", "--results", str(tmp_path / "res"))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1] == "t0000 --trainer.fast=false"
    (tmp_path / "other").mkdir()
    project = _project(tmp_path / "other", "train = mlf.train_task('train.py', arguments='hdyra')\n", "x: [1]\n")
    result = _invoke("sweep", str(project), "--dry-run", "--results", str(tmp_path / "res"))
    assert result.exit_code == 2 and "unknown argument style 'hdyra'" in result.output


def test_parameter_values_of_a_grid_and_of_a_search_space():
    from mlframework.sweep.params.command import parameter_values
    from mlframework.sweep.params.grid_file import parse_grid
    from mlframework.sweep.params.space import parse_space

    grid = parse_grid("x: !!python/tuple [0, 1000000]\ncompile: [true, false]\n")
    assert parameter_values(grid) == {"x": [], "compile": [True, False]}
    space = parse_space("lr: !loguniform [0.001, 0.1]\nopt:\n  sgd: {nesterov: [true, false]}\n  adam: {}\n")
    values = parameter_values(space)
    assert values["lr"] == [] and values["nesterov"] == [True, False]


def test_train_task_args_take_placeholders_too(tmp_path):
    project = _project(
        tmp_path, "train = mlf.train_task('train.py', args=['--out={trial_dir}/o', '{{x}}'])\n", "lr: [0.1]\n"
    )
    result = _invoke("sweep", str(project), "--dry-run", "--results", str(tmp_path / "res"))
    assert result.exit_code == 0, result.output
    (tmp_path / "bad").mkdir()
    project = _project(tmp_path / "bad", "train = mlf.train_task('train.py', args=['--out={trial_dri}'])\n", "x: [1]\n")
    result = _invoke("sweep", str(project), "--dry-run", "--results", str(tmp_path / "res"))
    assert result.exit_code == 2 and "unknown placeholder {trial_dri}" in result.output
