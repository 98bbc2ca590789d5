"""The parameters file's mlframework: section: a command for a project with no tasks.py, read strictly.

It is never a parameter; each mistake in it is one line naming the file, line and key (exit 2);
the command reaches the workers in each trial message, is shown at --dry-run and by `params`,
and is written into a reproduction's grid.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlframework.cli.main import cli
from mlframework.exceptions import ConfigError, GridError
from mlframework.sweep.driver.dispatch import trial_controls as message_controls
from mlframework.sweep.driver.reproduce import plan_reproduction
from mlframework.sweep.driver.run import check_task
from mlframework.sweep.driver.spec import SweepSpec
from mlframework.sweep.params.grid_file import load_grid, parse_grid
from mlframework.sweep.params.settings import FileCommand, load_command, parse_command
from mlframework.sweep.params.space import parse_space
from mlframework.sweep.trials.file_task import command_trial
from mlframework.sweep.trials.tasks import REGISTERED
from mlframework.sweep.trials.trial import Trial
from mlframework.sweep.wire.protocol import COMMAND_TASK, trial_controls

HYDRA_FILE = """\
mlframework:
  command: python train.py {args} --out_dir={trial_dir}/out
  arguments: hydra
  new_keys: [c]
  env: {SEED: 1, RUN: "{trial}"}
a.b: [1, 2]
c: x
"""


def test_the_section_gives_the_command_and_is_no_parameter():
    command = parse_command(HYDRA_FILE, "p.yml")
    assert command is not None
    assert command.template.words == ("python", "train.py", "{args}", "--out_dir={trial_dir}/out")
    assert command.argument_style.render({"a.b": 1, "c": "x"}) == ["a.b=1", "+c=x"]
    assert command.cwd == "project" and command.env == {"SEED": "1", "RUN": "{trial}"}
    assert list(parse_grid(HYDRA_FILE, "p.yml")) == [{"a.b": 1, "c": "x"}, {"a.b": 2, "c": "x"}]
    assert [d.name for _depth, d in parse_space(HYDRA_FILE, "p.yml").walk()] == ["a.b", "c"]


def test_defaults_and_a_command_given_as_words():
    command = parse_command("mlframework:\n  command: [python, 'my script.py', '{args}']\nlr: 1\n", "p.yml")
    assert command is not None and command.template.words == ("python", "my script.py", "{args}")
    assert command.arguments == "default" and command.cwd == "project" and not command.new_keys
    assert parse_command("lr: [1, 2]\n", "p.yml") is None


def test_a_record_gives_back_the_same_command_and_yaml_too():
    command = parse_command(HYDRA_FILE, "p.yml")
    assert command is not None
    again = FileCommand.from_record(json.loads(json.dumps(command.to_record())), "sweep.json")
    assert again.to_record() == command.to_record() and again.argument_style == command.argument_style
    assert parse_command(command.to_yaml() + "a.b: 1\n", "r.yml") == FileCommand(
        command.template, "hydra", ("c",), "project", command.env, "r.yml"
    )
    with pytest.raises(ConfigError, match=r"^sweep.json: mlframework.arguments: unknown argument style 'x'"):
        FileCommand.from_record({**command.to_record(), "arguments": "x"}, "sweep.json")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mlframework:\n  comand: python t.py\n", "p.yml:2: mlframework.comand: unknown key (keys: command, "),
        (
            "mlframework:\n  command: python t.py\n  arguments: hyrda\n",
            "p.yml:3: mlframework.arguments: unknown argument style 'hyrda' (give one of default, separate, booleans",
        ),
        ("mlframework: 3\n", "p.yml:1: mlframework: give a mapping with command:"),
        ("mlframework:\n  arguments: hydra\n", "p.yml:1: mlframework: no command: give the command line"),
        ("mlframework:\n  command: python t.py {arg}\n", "p.yml:2: mlframework.command: unknown placeholder {arg}"),
        ("mlframework:\n  command: python t.py --x={args}\n", "{args} must be a word of its own"),
        ("mlframework:\n  command: ''\n", "p.yml:2: mlframework.command: the command is empty"),
        ("mlframework:\n  command: x\n  new_keys: [a]\n", "p.yml:3: mlframework.new_keys: only Hydra overrides"),
        ("mlframework:\n  command: x\n  cwd: here\n", "p.yml:3: mlframework.cwd: give project or trial, found 'here'"),
        ("mlframework:\n  command: x\n  env: [A]\n", "p.yml:3: mlframework.env: give a mapping of variable names"),
        ("mlframework:\n  command: x\n  command: y\n", "p.yml:3: mlframework.command: given more than once"),
        ("mlframework:\n  command: {a: 1}\n", "p.yml:2: mlframework.command: give a command line, or a list"),
        ("mlframework:\n  command: !!python/name:os.system x\n", "p.yml:2: mlframework.command: unsupported"),
    ],
)
def test_a_mistake_in_the_section_is_one_line_naming_file_line_and_key(text, message):
    with pytest.raises(GridError) as caught:
        parse_command(text, "p.yml")
    assert str(caught.value).startswith(message) or message in str(caught.value), str(caught.value)
    assert "\n" not in str(caught.value)


def test_new_keys_must_be_parameters_of_the_file(tmp_path):
    path = tmp_path / "p.yml"
    path.write_text(HYDRA_FILE.replace("new_keys: [c]", "new_keys: [d]"))
    result = CliRunner().invoke(cli, ["sweep", str(tmp_path), "-p", str(path), "--dry-run"])
    assert result.exit_code == 2
    assert f"{path}: mlframework.new_keys: 'd' is not a parameter of the file (parameters: a.b, c)" in result.output


def _project(tmp_path: Path, tasks: str | None = None, text: str = HYDRA_FILE) -> Path:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "parameters.yml").write_text(text)
    if tasks is not None:
        (project / "tasks.py").write_text(tasks)
    return project


def test_params_and_dry_run_show_the_whole_command_line(tmp_path):
    project = _project(tmp_path)
    expected = [
        "python train.py a.b=1 +c=x --out_dir={trial_dir}/out",
        "python train.py a.b=2 +c=x --out_dir={trial_dir}/out",
    ]
    for extra in ([], ["--project", str(project)]):
        result = CliRunner().invoke(cli, ["params", str(project / "parameters.yml"), *extra])
        assert result.exit_code == 0, result.output
        assert result.output.splitlines() == expected
    result = CliRunner().invoke(cli, ["params", str(project / "parameters.yml"), "--json"])
    assert json.loads(result.output) == [{"a.b": 1, "c": "x"}, {"a.b": 2, "c": "x"}], "the section is no parameter"
    result = CliRunner().invoke(cli, ["sweep", str(project), "--dry-run", "--results", str(tmp_path / "res")])
    assert result.exit_code == 0, result.output
    assert "2 trial(s) of the command of the parameters file" in result.output
    assert [line.split(" ", 1)[1] for line in result.output.splitlines()[1:]] == expected


def test_a_bad_section_is_exit_2_at_params_and_at_the_sweep(tmp_path):
    project = _project(tmp_path, text="mlframework:\n  command: python t.py\n  style: hydra\nlr: 1\n")
    for args in (["params", str(project / "parameters.yml")], ["sweep", str(project), "--dry-run"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2
        assert result.output.strip().endswith(
            "parameters.yml:3: mlframework.style: unknown key (keys: command, arguments, new_keys, cwd, env)"
        )


def test_a_project_needs_tasks_py_or_the_file_s_command(tmp_path):
    command = parse_command(HYDRA_FILE, "p.yml")
    project = _project(tmp_path)
    check_task(project, "train", command)  # no tasks.py: the file's command is the task
    with pytest.raises(ConfigError, match=r"tasks.py: no tasks.py in the project directory: .*\(mlframework: command"):
        check_task(project, "train")


def test_a_tasks_py_that_defines_the_same_task_is_refused_in_one_line(tmp_path):
    project = _project(tmp_path, tasks="import mlframework as mlf\nfile_cmd_clash = mlf.echo_task('file_cmd_clash')\n")
    command = parse_command(HYDRA_FILE, "p.yml")
    with pytest.raises(ConfigError) as caught:
        check_task(project, "file_cmd_clash", command)
    assert str(caught.value) == (
        f"p.yml: mlframework.command: {project / 'tasks.py'} defines the task 'file_cmd_clash' too: "
        "give its command in one place (or --task NAME, a name tasks.py does not define)"
    )
    check_task(project, "another_name", command)  # another name: the file's command runs under it


def test_the_command_travels_in_each_trial_message_to_the_built_in_task(tmp_path):
    command = parse_command(HYDRA_FILE, "p.yml")
    assert command is not None
    controls = message_controls(tmp_path, None, (), command.to_record())
    assert trial_controls({"sweep": "s", "id": "t0000", **controls})["command"] == command.to_record()
    spec = SweepSpec(tmp_path, load_grid_text(tmp_path, HYDRA_FILE), command=command)
    assert spec.sent_task == COMMAND_TASK and SweepSpec(tmp_path, spec.plan).sent_task == "train"
    assert COMMAND_TASK not in REGISTERED, "built in, not one of the project's tasks"


def load_grid_text(tmp_path: Path, text: str):
    path = tmp_path / "grid.yml"
    path.write_text(text)
    return load_grid(path)


def test_the_built_in_task_runs_the_command_in_its_style_in_the_project_directory(tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    (project / "show.py").write_text("import os, sys\nprint(os.getcwd(), os.environ['RUN'], *sys.argv[1:])\n")
    command = parse_command(
        "mlframework:\n  command: '{python} show.py {args} --out={trial_dir}/out'\n  arguments: booleans\n"
        "  env: {RUN: '{trial}'}\n",
        "p.yml",
    )
    assert command is not None
    trial = Trial("s1", "t0002", 2, {"lr": 0.5, "compile": False}, project_dir=project, command=command.to_record())
    trial.sweep_dir = str(tmp_path / "sweep")
    command_trial(trial)
    (run,) = trial.commands
    assert run.argv == [sys.executable, "show.py", "--lr=0.5", "--compile=False", f"--out={trial.workdir}/out"]
    assert run.exit_code == 0


def test_a_reproduction_s_grid_carries_the_command(tmp_path):
    command = parse_command(HYDRA_FILE, "p.yml")
    assert command is not None
    project = tmp_path / "proj"
    project.mkdir()
    directory = tmp_path / "res" / "s1"
    directory.mkdir(parents=True)
    meta = {"id": "s1", "project": str(project), "task": "train", "command": command.to_record()}
    (directory / "sweep.json").write_text(json.dumps(meta))
    (directory / "trials.jsonl").write_text(json.dumps({"trial": "t0000", "index": 0, "params": {"a.b": 2}}) + "\n")
    _meta, _record, grid_file, _new_id = plan_reproduction(tmp_path / "res", "s1", "t0000", "again-1")
    assert list(load_grid(grid_file)) == [{"a.b": 2}]
    assert load_command(grid_file) == FileCommand(
        command.template, "hydra", ("c",), "project", command.env, str(grid_file)
    )


def test_a_dropped_false_says_how_to_pass_it_in_the_file(tmp_path):
    project = _project(tmp_path, text="mlframework:\n  command: python t.py {args}\nlr: [0.1]\ncompile: [false]\n")
    for args in (["params", str(project / "parameters.yml")], ["sweep", str(project), "--dry-run"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        assert result.output.count("false leaves --compile out") == 1
        assert (
            "add arguments: booleans to the parameters file's mlframework: section (--compile=False)" in result.output
        )


def test_a_bare_python_first_word_is_the_workers_interpreter():
    from mlframework.sweep.params.command import CommandTemplate

    template = CommandTemplate.parse("python train.py {args}", "p.yml: mlframework.command")
    argv = template.render(["--lr=0.1"], {"python": "/venv/bin/python", "trial_dir": "/t"})
    assert argv == ["/venv/bin/python", "train.py", "--lr=0.1"]
    other = CommandTemplate.parse("/usr/bin/python3 train.py", "p.yml: mlframework.command")
    assert other.render([], {"python": "/venv/bin/python"})[0] == "/usr/bin/python3", "a path is kept"
    assert template.render([], {})[0] == "python", "shown as written where the worker is not known (--dry-run)"
