"""The sweep command's options -> SweepSpec -> the options again (what --detach runs on the master) -> the same spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlframework.cli.sweep import sweep_command
from mlframework.cli.sweep_options import SweepOptions, spec_arguments, spec_from_options, spec_options
from mlframework.sweep.driver.spec import SweepSpec
from mlframework.sweep.params.grid import Grid
from mlframework.sweep.search.plan import SearchPlan, default_sampler


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
        ["-p", "search.yml", "--trials", "6", "--metric", "acc", "--prune", "hyperband", "--seed", "2"],
        ["--trials", "3", "--metric", "acc:max", "--metric", "loss:min"],
    ],
)  # fmt: skip
def test_a_spec_turned_back_into_options_parses_to_the_same_spec(project, options, monkeypatch):
    monkeypatch.chdir(project)
    spec = parse([str(project), *options])
    again = parse(spec_arguments(spec))
    assert again == spec
    assert isinstance(spec.plan, SearchPlan if "--trials" in options else Grid)


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


def test_trials_without_search_is_a_search_by_the_default_sampler(project):
    """--trials N alone asks for a search: bohb for one metric; for several, bohb pruned by asha, else tpe; --prune
    as given (default none)."""
    one = parse([str(project), "--trials", "6", "--metric", "acc"])
    assert one.search is not None and one.search.space.names == ["lr", "batch"], "the grid's lists, searched"
    settings = one.search.settings
    assert (settings.sampler, settings.trials, settings.prune, settings.seed) == ("bohb", 6, "none", None)
    pruned = parse([str(project), "--trials", "6", "--metric", "acc", "--prune", "hyperband", "--seed", "1"])
    assert pruned.search is not None and (pruned.search.settings.sampler, pruned.search.settings.prune) == (
        "bohb",
        "hyperband",
    )
    several = parse([str(project), "--trials", "6", "--metric", "acc", "--metric", "loss:min"])
    assert several.search is not None and several.search.settings.sampler == "tpe", "unpruned: MOTPE"
    pruned_several = parse(
        [str(project), "--trials", "6", "--metric", "acc", "--metric", "loss:min", "--prune", "asha"]
    )
    assert pruned_several.search is not None and pruned_several.search.settings.sampler == "bohb", "MO-ASHA's rungs"
    assert default_sampler(()) == "bohb" and default_sampler(several.objectives) == "tpe"
    assert default_sampler(several.objectives, "asha") == "bohb"  # MO-ASHA's rung values are what it models


def test_the_sampler_of_an_implicit_search_is_named_on_the_master_s_command_line(project):
    spec = parse([str(project), "--trials", "4", "--metric", "acc", "--prune", "hyperband"])
    options = spec_options(spec)
    assert options[options.index("--search") + 1] == "bohb", "a --detach-ed driver keeps the sampler"


def test_an_explicit_search_and_a_grid_are_as_they_were(project):
    explicit = parse([str(project), "--search", "tpe", "--trials", "4", "--metric", "acc"])
    assert explicit.search is not None and explicit.search.settings.sampler == "tpe"
    assert explicit.search.settings.prune == "none"
    grid = parse([str(project), "--metric", "acc", "--mode", "max"])
    assert grid.search is None and grid.grid.count == 4


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--trials", "5"], "a search \\(--trials\\) needs --metric NAME"),
        (["--search", "bohb", "--metric", "a"], "--search needs --trials N"),
        (["--prune", "hyperband", "--metric", "a"], "--prune applies only to a search: give --trials N"),
        (["--seed", "3", "--timeout", "1h"], "--seed, --timeout apply only to a search"),
        (["--prune-metric", "a"], "--prune-metric applies only to a search"),
        (["--seed", "0"], "--seed applies only to a search"),
        (["--trials", "5", "--metric", "a", "--metric", "b", "--prune", "hyperband"], "--prune hyperband watches one"),
    ],
)
def test_a_search_half_asked_for_is_one_line(project, options, message):
    from mlframework.exceptions import ConfigError

    with pytest.raises(ConfigError, match=message):
        parse([str(project), *options])
