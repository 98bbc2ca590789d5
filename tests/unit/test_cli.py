"""The `mlframework` command's input handling: output formats, one-line errors, exit statuses."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from mlframework.cli.main import cli
from mlframework.cluster.config_file import save_config
from mlframework.cluster.secrets import ClusterSecrets
from mlframework.cluster.spec import ClusterSpec

SEED_GRID = """\
gpu: -1
batchsize: [100, 500]
epoch: !!python/tuple [5,20,5]
"""


@pytest.fixture
def seed_grid(tmp_path):
    path = tmp_path / "parameters.yml"
    path.write_text(SEED_GRID)
    return path


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_params_prints_the_seed_grid_as_its_six_option_lines(seed_grid):
    result = invoke("params", str(seed_grid))
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        "--gpu=-1 --batchsize=100 --epoch=5",
        "--gpu=-1 --batchsize=100 --epoch=10",
        "--gpu=-1 --batchsize=100 --epoch=15",
        "--gpu=-1 --batchsize=500 --epoch=5",
        "--gpu=-1 --batchsize=500 --epoch=10",
        "--gpu=-1 --batchsize=500 --epoch=15",
    ]


def test_params_json_and_count(seed_grid):
    combos = json.loads(invoke("params", "--json", str(seed_grid)).output)
    assert combos[0] == {"gpu": -1, "batchsize": 100, "epoch": 5} and len(combos) == 6
    assert invoke("params", "--count", str(seed_grid)).output == "6\n"


def test_count_of_a_huge_grid_is_computed_not_expanded(tmp_path):
    path = tmp_path / "big.yml"
    path.write_text("a: !!python/tuple [0, 1000000]\nb: !!python/tuple [0, 1000000]\nc: [1, 2]\n")
    assert invoke("params", "--count", str(path)).output == "2000000000000\n"


def test_values_with_spaces_are_shown_quoted_as_one_argument(tmp_path):
    path = tmp_path / "p.yml"
    path.write_text("name: 'two words'\nverbose: true\nquiet: false\n")
    lines = invoke("params", str(path)).output.splitlines()
    assert lines[0] == "'--name=two words' --verbose"
    assert lines[1].startswith("mlframework: warning: parameter 'quiet': false leaves --quiet out")


@pytest.mark.parametrize(
    ("grid", "expected"),
    [
        ("epoch: !!python/tuple [5, 20, 0]\n", "parameter 'epoch'"),
        ("a: 1\nbatchsize: []\n", ":2: parameter 'batchsize'"),
        ("- 1\n- 2\n", "p.yml"),
        ("x: !!python/object/apply:os.system ['true']\n", "python/object/apply"),
    ],
)
def test_bad_grids_are_one_line_exit_2_naming_file_and_parameter(tmp_path, grid, expected):
    path = tmp_path / "p.yml"
    path.write_text(grid)
    process = subprocess.run(
        [sys.executable, "-m", "mlframework", "params", str(path)], capture_output=True, text=True, timeout=60
    )
    assert process.returncode == 2
    assert process.stdout == ""
    assert len(process.stderr.strip().splitlines()) == 1, process.stderr
    assert expected in process.stderr and str(path) in process.stderr


def test_a_missing_file_is_exit_2(tmp_path):
    result = CliRunner().invoke(cli, ["params", str(tmp_path / "nope.yml")])
    assert result.exit_code == 2
    assert "nope.yml" in result.output


def test_dry_run_lists_trials_and_sends_nothing(tmp_path, seed_grid):
    (tmp_path / "train.py").write_text("")
    (tmp_path / "tasks.py").write_text("import mlframework as mlf\ntrain = mlf.train_task('train.py')\n")
    result = invoke("sweep", str(tmp_path), "--dry-run", "--results", str(tmp_path / "res"))
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].startswith("dry run: 6 trial(s) of task 'train'")
    assert lines[1] == "t0000 --gpu=-1 --batchsize=100 --epoch=5"
    assert not (tmp_path / "res").exists()


def test_dry_run_shows_the_options_as_the_project_s_script_takes_them(tmp_path):
    (tmp_path / "parameters.yml").write_text("layers: [[64, 64]]\nlr: [0.1]\nnesterov: [false]\n")
    (tmp_path / "train.py").write_text("")
    (tmp_path / "tasks.py").write_text(
        "import mlframework as mlf\n"
        "style = mlf.ArgumentStyle(separate=True, spread_lists=True, negatable=True)\n"
        "train = mlf.train_task('train.py', arguments=style)\n"
    )
    result = invoke("sweep", str(tmp_path), "--dry-run", "--results", str(tmp_path / "res"))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1] == "t0000 --layers 64 64 --lr 0.1 --no-nesterov"


def test_sweep_without_a_broker_says_how_to_get_one(tmp_path, seed_grid, monkeypatch):
    monkeypatch.delenv("MLFRAMEWORK_BROKER_URL", raising=False)
    monkeypatch.chdir(tmp_path)  # no checkout here: no config.sh, whatever the repository's own holds
    (tmp_path / "tasks.py").write_text("import mlframework as mlf\ntrain = mlf.train_task('train.py')\n")
    result = CliRunner().invoke(cli, ["sweep", str(tmp_path)])
    assert result.exit_code == 2
    assert "--local" in result.output and "Traceback" not in result.output


def test_a_missing_project_directory_is_named(tmp_path):
    result = CliRunner().invoke(cli, ["sweep", str(tmp_path / "nowhere"), "--local"])
    assert result.exit_code == 2
    assert textwrap.shorten(result.output, 500).count("nowhere") >= 1


def _checkout(tmp_path, monkeypatch, **options):
    """A checkout (infra/ and mlframework/ mark one) as the current directory, with config.sh from ``options``."""
    for name in ("infra", "mlframework"):
        (tmp_path / name).mkdir()
    spec = ClusterSpec.from_options(remote_path="mlf", project="mnist", **options)
    save_config(tmp_path / "config.sh", spec.to_config())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_secrets_prints_the_credentials_broker_url_and_flower_login(tmp_path, monkeypatch):
    repo = _checkout(tmp_path, monkeypatch, hosts="u@gpu1,u@10.0.0.7", master="2", workers="1,2", cluster_name="lab")
    secrets = ClusterSecrets("mlf-lab", "p@ss/w:rd", "mlf-lab", "flower-lab", "fl0wer-secret", "COOKIE")
    secrets.save(repo / ".mlframework" / "secrets.env")
    result = invoke("secrets")
    assert result.exit_code == 0, result.output
    assert str(repo / ".mlframework" / "secrets.env") in result.output.splitlines()[0]
    shown = dict(line.strip().split(":", 1) for line in result.output.splitlines()[1:])
    assert {key: value.strip() for key, value in shown.items()} == {
        "RabbitMQ user": "mlf-lab",
        "RabbitMQ password": "p@ss/w:rd",
        "RabbitMQ vhost": "mlf-lab",
        "broker URL": "amqp://mlf-lab:p%40ss%2Fw%3Ard@10.0.0.7:5672/mlf-lab",
        "Flower": "http://10.0.0.7:5555/",
        "Flower user": "flower-lab",
        "Flower password": "fl0wer-secret",
    }
    assert "COOKIE" not in result.output, "the Erlang cookie is the broker's business, not the user's"


def test_secrets_of_a_cluster_on_its_own_broker_shows_no_flower(tmp_path, monkeypatch):
    repo = _checkout(tmp_path, monkeypatch, hosts="u@h1", broker="rabbit.lan:5673", workers="1")
    ClusterSecrets.generate("x").save(repo / ".mlframework" / "secrets.env")
    result = invoke("secrets")
    assert result.exit_code == 0, result.output
    assert "@rabbit.lan:5673/mlf-x" in result.output
    assert "Flower:            not started" in result.output


def test_secrets_before_infrainit_is_one_line_naming_the_file(tmp_path, monkeypatch):
    repo = _checkout(tmp_path, monkeypatch, hosts="u@h1", master="1", workers="1")
    result = invoke("secrets")
    assert result.exit_code == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert str(repo / ".mlframework" / "secrets.env") in line and "infrainit" in line, line
    assert not (repo / ".mlframework").exists(), "showing never creates credentials"


def test_a_readable_secrets_file_is_refused_not_shown(tmp_path, monkeypatch):
    repo = _checkout(tmp_path, monkeypatch, hosts="u@h1", master="1", workers="1")
    path = repo / ".mlframework" / "secrets.env"
    ClusterSecrets.generate("x").save(path)
    path.chmod(0o644)
    result = CliRunner().invoke(cli, ["secrets"])
    assert result.exit_code == 2
    assert "readable by others" in result.output and "chmod 600" in result.output
    assert "password" not in result.output.lower()


def test_params_keeps_one_line_per_combination_and_json_strict(tmp_path):
    grid = tmp_path / "g.yml"
    grid.write_text('note: ["a\\nb"]\nx: [.inf, .nan]\n')
    lines = invoke("params", str(grid)).output.splitlines()
    assert lines == ["$'--note=a\\nb' --x=inf", "$'--note=a\\nb' --x=nan"]
    as_json = json.loads(invoke("params", "--json", str(grid)).output, parse_constant=lambda name: 1 / 0)
    assert as_json == [{"note": "a\nb", "x": "inf"}, {"note": "a\nb", "x": "nan"}]


def test_an_error_with_a_cause_shows_the_cause_s_last_lines_indented(tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    (project / "tasks.py").write_text("def broken():\n    raise RuntimeError('no GPU here')\n\nbroken()\n")
    (project / "parameters.yml").write_text("x: [1]\n")
    result = CliRunner().invoke(cli, ["sweep", str(project), "--local", "--results", str(tmp_path / "r")])
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert lines[0].startswith("mlframework: error: ") and "RuntimeError: no GPU here" in lines[0]
    assert "  |     raise RuntimeError('no GPU here')" in lines
    assert not (tmp_path / "r").exists()
