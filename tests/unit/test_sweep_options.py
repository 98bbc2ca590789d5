"""The sweep command's options -> SweepSpec -> the options again (what --detach runs on the master) -> the same spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlframework.cli.sweep import sweep_command
from mlframework.cli.sweep_options import SweepOptions, spec_arguments, spec_from_options, spec_options
from mlframework.sweep.driver.spec import SweepSpec
from mlframework.sweep.params.grid import Grid
from mlframework.sweep.search.plan import SearchPlan


def parse(arguments: list[str]) -> SweepSpec:
    """A command line of `mlframework sweep` as click parses it, turned into its spec."""
    context = sweep_command.make_context("sweep", list(arguments))
    return spec_from_options(SweepOptions(**context.params))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "parameters.yml").write_text("lr: [0.1, 0.01]\nbatch: [16, 32]\n")
    (tmp_path / "search.yml").write_text("lr: !loguniform [1.0e-4, 0.1]\nbatch: [16, 32]\n")
    return tmp_path


@pytest.mark.parametrize(
    "options",
    [
        [],
        ["--task", "echo", "--retries", "2", "--max-starts", "5", "--max-batch", "1", "--trial-timeout", "1.5m"],
        ["--metric", "loss", "--mode", "min", "--sweep-id", "my-sweep", "--results", "elsewhere"],
        ["-p", "search.yml", "--search", "tpe", "--trials", "9", "--metric", "acc"],
        ["-p", "search.yml", "--search", "random", "--trials", "4", "--metric", "acc", "--seed", "7",
         "--timeout", "2h", "--prune", "asha", "--prune-metric", "val"],
        ["--metric", "accuracy:max", "--metric", "latency_ms:min", "--constraint", "memory_mb<8000"],
        ["-p", "search.yml", "--search", "tpe", "--trials", "5", "--metric", "acc", "--metric", "val loss",
         "--prune", "asha", "--constraint", "params<=1e6"],
        ["--metric", "score:min", "--constraint", "size>2.5"],
    ],
)  # fmt: skip
def test_a_spec_turned_back_into_options_parses_to_the_same_spec(project, options, monkeypatch):
    monkeypatch.chdir(project)
    spec = parse([str(project), *options])
    again = parse(spec_arguments(spec))
    assert again == spec
    assert isinstance(spec.plan, SearchPlan if "--search" in options else Grid)


def test_detach_passes_on_the_options_of_the_spec(project):
    spec = parse([str(project), "--retries", "1", "--trial-timeout", "90s", "--metric", "acc"])
    assert spec_options(spec) == [
        "--task", "train", "--retries", "1", "--max-starts", "3", "--max-batch", "200", "--trial-timeout", "90",
        "--metric", "acc",
    ]  # fmt: skip


def test_a_grid_sweep_has_no_search_and_a_search_no_grid(project):
    grid = parse([str(project)])
    assert grid.search is None and grid.grid.count == 4 and grid.parameters is grid.grid
    search = parse(
        [str(project), "-p", str(project / "search.yml"), "--search", "qmc", "--trials", "3", "--metric", "a"]
    )
    assert search.search is not None and search.search.settings.trials == 3
    assert search.parameters is search.search.space
    with pytest.raises(TypeError, match="no grid"):
        search.grid  # noqa: B018


def test_several_metrics_are_objectives_and_one_stays_one_metric(project):
    from mlframework.sweep.records.objectives import Constraint, Objective

    several = parse([str(project), "--metric", "accuracy", "--metric", "val loss", "--constraint", "mem < 8000"])
    assert several.objectives == (Objective("accuracy", "max"), Objective("val loss", "min"))
    assert (several.metric, several.mode) == ("accuracy", "max")
    assert several.constraints == (Constraint("mem", "<", 8000.0),)
    one = parse([str(project), "--metric", "accuracy"])
    assert (one.metric, one.mode, one.objectives) == ("accuracy", None, ()), "one metric: its mode guessed later"
    assert (parse([str(project), "--metric", "loss:max"]).mode) == "max"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--search", "cmaes"], "--search cmaes optimises one metric"),
        (["--search", "tpe", "--prune", "median"], "--prune median watches one metric"),
        (["--search", "tpe", "--prune", "hyperband"], "--prune hyperband watches one metric"),
        (["--search", "tpe", "--prune", "asha", "--prune-metric", "a"], "--prune-metric names one metric"),
        (["--mode", "max"], "--mode applies to one --metric"),
    ],
)
def test_what_cannot_take_several_objectives_is_refused_in_one_line(project, options, message):
    from mlframework.exceptions import ConfigError

    search = ["-p", str(project / "search.yml"), "--trials", "3"] if "--search" in options else []
    with pytest.raises(ConfigError, match=message):
        parse([str(project), *search, *options, "--metric", "a", "--metric", "b"])


def test_bohb_takes_several_objectives_with_multi_objective_asha(project):
    from mlframework.sweep.records.objectives import Objective

    search = ["-p", str(project / "search.yml"), "--search", "bohb", "--trials", "3", "--prune", "asha"]
    spec = parse([str(project), *search, "--metric", "a:max", "--metric", "b:min"])
    assert spec.search is not None
    assert (spec.search.settings.sampler, spec.search.settings.prune) == ("bohb", "asha")
    assert spec.objectives == (Objective("a", "max"), Objective("b", "min"))


def test_a_constraint_that_is_not_one_is_refused(project):
    from mlframework.exceptions import ConfigError

    with pytest.raises(ConfigError, match="--constraint 'memory': write NAME<VALUE"):
        parse([str(project), "--constraint", "memory"])
