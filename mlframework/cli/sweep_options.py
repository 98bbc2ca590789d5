"""The ``sweep`` command's options as a :class:`SweepSpec`, and a SweepSpec back as those options.

:func:`spec_from_options` checks how the options combine and builds the spec; :func:`spec_arguments`
turns a spec back into the command line that builds it again (``--detach`` starts the driver on the
master with it), so that the two cannot drift apart (tests/unit/test_sweep_options.py: a round trip).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlframework.cli.common import format_duration
from mlframework.exceptions import ConfigError
from mlframework.sweep.driver.spec import SweepSpec
from mlframework.sweep.params.grid import Grid
from mlframework.sweep.records.objectives import (
    Constraint,
    Objective,
    objectives_to_meta,
    parse_constraint,
    parse_objective,
    parse_objectives,
)
from mlframework.sweep.search.plan import SearchPlan, SearchSettings, default_sampler


@dataclass(frozen=True)
class SweepOptions:
    """What ``mlframework sweep`` was given, one field per option (as click names its parameters)."""

    project_dir: Path | None = None
    parameters_file: Path | None = None
    task_name: str = "train"
    results_root: Path = Path("results")
    metric: tuple[str, ...] = ()  # --metric, each NAME, NAME:max or NAME:min; twice or more: several objectives
    mode: str | None = None
    constraint: tuple[str, ...] = ()  # --constraint NAME<VALUE, repeatable
    dry_run: bool = False
    local: bool = False
    workers: int | None = None
    gpus: str | None = None
    broker_url: str | None = None
    retries: int = 0
    max_starts: int = 3
    max_batch: int = 200
    trial_timeout: float | None = None  # seconds
    share: float = 1.0
    priority: int = 0
    resume_id: str | None = None
    detach: bool = False
    search_name: str | None = None
    trials: int | None = None
    seed: int | None = None
    search_timeout: float | None = None  # seconds
    prune: str = "none"
    prune_metric: str | None = None
    sweep_id: str | None = None
    show_output: bool = False
    quiet: bool = False

    @property
    def parameters_path(self) -> Path:
        """The parameters file: -p, else PROJECT_DIR/parameters.yml."""
        assert self.project_dir is not None
        return self.parameters_file or self.project_dir / "parameters.yml"


def check_combination(options: SweepOptions) -> None:
    """One line (ConfigError) for options that do not go together."""
    from mlframework.cli.common import check_local_options

    check_local_options(options.local, options.broker_url, options.workers, options.gpus)
    if options.resume_id:
        if options.dry_run or (options.project_dir is None and options.parameters_file is not None):
            raise ConfigError(
                "--resume takes the grid of the sweep it resumes: no --dry-run, no -p without PROJECT_DIR"
            )
        if options.search_name is not None:
            raise ConfigError("--resume continues the search it resumes: give no --search")
    elif options.project_dir is None:
        raise ConfigError("give a PROJECT_DIR (or --resume SWEEP_ID)")


@dataclass(frozen=True)
class Ranking:
    """What --metric, --mode and --constraint ask: one metric (and its mode), or several objectives."""

    metric: str | None
    mode: str | None
    objectives: tuple[Objective, ...] = ()  # two or more: a Pareto front (the first is also ``metric``)
    constraints: tuple[Constraint, ...] = ()


def ranking(options: SweepOptions) -> Ranking:
    """The metric(s) and constraints of ``options``; one metric keeps its --mode unguessed (decided later)."""
    constraints = tuple(parse_constraint(text) for text in options.constraint)
    if len(options.metric) == 1:
        text = options.metric[0]
        given = text.strip().endswith((":max", ":min"))
        objective = parse_objective(text, options.mode)
        return Ranking(objective.name, objective.mode if given else options.mode, (), constraints)
    objectives = parse_objectives(options.metric, options.mode)
    if not objectives:
        return Ranking(None, options.mode, (), constraints)
    return Ranking(objectives[0].name, objectives[0].mode, objectives, constraints)


def recorded_objectives(options: SweepOptions) -> dict[str, object]:
    """What sweep.json records of the metric(s) and constraints ``options`` ask for (--resume compares them)."""
    asked = ranking(options)
    return {
        "requested_metric": asked.metric,
        "requested_mode": asked.mode,
        "objectives": objectives_to_meta(asked.objectives) or None,
        "constraints": [str(constraint) for constraint in asked.constraints] or None,
    }


def _check_objectives(options: SweepOptions, settings: SearchSettings | None, asked: Ranking) -> None:
    """Several objectives: the samplers and pruners that cannot take them are refused in one line."""
    if len(asked.objectives) < 2:
        return
    if settings is not None and settings.sampler == "cmaes":
        raise ConfigError(
            "--search cmaes optimises one metric: with several --metric use bohb, tpe, random, qmc or grid"
        )
    if settings is not None and options.prune in ("median", "hyperband"):
        raise ConfigError(
            f"--prune {options.prune} watches one metric: with several --metric use --prune asha "
            "(multi-objective successive halving) or none"
        )
    if options.prune_metric:
        raise ConfigError("--prune-metric names one metric: with several --metric, --prune asha watches them all")


def searched(options: SweepOptions) -> bool:
    """Whether the options ask for a search: --search, or --trials N without it (the default sampler's search)."""
    return options.search_name is not None or options.trials is not None


def search_settings(options: SweepOptions) -> SearchSettings | None:
    """The SearchSettings of --search (or --trials alone) and its options, or None for a grid sweep.

    Without --search, --trials N asks for a search with the default sampler (:func:`default_sampler`: bohb
    for one metric; for several, bohb when --prune asha, else tpe) and ``--prune`` as given (default none);
    without --trials either, the sweep is the grid of the parameters file, as ever.
    """
    if not searched(options):
        given = [
            name
            for name, value in (("--seed", options.seed), ("--timeout", options.search_timeout))
            if value is not None
        ]
        given += ["--prune"] if options.prune != "none" else []
        given += ["--prune-metric"] if options.prune_metric else []
        if given and not options.resume_id:
            verb = "applies" if len(given) == 1 else "apply"
            raise ConfigError(f"{', '.join(given)} {verb} only to a search: give --trials N (and --search to pick one)")
        return None
    sampler = options.search_name or default_sampler(ranking(options).objectives, options.prune)
    what = "--search" if options.search_name else "a search (--trials)"
    if not options.metric:
        raise ConfigError(f"{what} needs --metric NAME: the metric the search optimises (e.g. --metric accuracy)")
    if options.trials is None:
        raise ConfigError(f"{what} needs --trials N: how many trials to run")
    return SearchSettings(
        sampler, options.trials, options.seed, options.search_timeout, options.prune, options.prune_metric
    )


def spec_from_options(options: SweepOptions) -> SweepSpec:
    """The spec of a new sweep (not --resume): its grid or search space read, every option checked."""
    from mlframework.sweep.params.grid_file import load_grid
    from mlframework.sweep.params.settings import load_command
    from mlframework.sweep.params.space import load_space
    from mlframework.sweep.wire.ids import check_sweep_id

    check_combination(options)
    if options.resume_id:
        raise ConfigError("--resume continues a recorded sweep: it has a spec already")
    assert options.project_dir is not None
    if not options.project_dir.is_dir():
        raise ConfigError(f"{options.project_dir}: project directory not found")
    settings = search_settings(options)
    asked = ranking(options)
    _check_objectives(options, settings, asked)
    plan: Grid | SearchPlan
    if settings is None:
        plan = load_grid(options.parameters_path)
    else:
        plan = SearchPlan(load_space(options.parameters_path), settings)
        if settings.sampler == "grid":
            plan.space.grid_space()  # a continuous parameter cannot be listed: say so before anything starts
    if options.sweep_id is not None:
        check_sweep_id(options.sweep_id)
    return SweepSpec(
        options.project_dir,
        plan,
        options.task_name,
        options.results_root,
        asked.metric,
        asked.mode,
        sweep_id=options.sweep_id,
        retries=options.retries,
        max_starts=options.max_starts,
        max_batch=options.max_batch,
        trial_timeout=options.trial_timeout,
        share=options.share,
        priority=options.priority,
        command=load_command(options.parameters_path),  # the file's mlframework: section, if any
        objectives=asked.objectives,
        constraints=asked.constraints,
    )


def spec_options(spec: SweepSpec) -> list[str]:
    """The options of ``mlframework sweep`` that give a sweep ``spec``'s task, metric, retries and search.

    Where it runs and what it reads (PROJECT_DIR, -p, --results, --sweep-id) are left to the caller:
    :func:`spec_arguments` adds them as they are here, ``--detach`` as they are on the master.
    """
    options = ["--task", spec.task, "--retries", str(spec.retries)]
    options += ["--max-starts", str(spec.max_starts), "--max-batch", str(spec.max_batch)]
    options += ["--trial-timeout", format_duration(spec.trial_timeout)] if spec.trial_timeout is not None else []
    options += ["--share", f"{spec.share:g}"] if spec.share != 1.0 else []
    options += ["--priority", str(spec.priority)] if spec.priority else []
    if spec.objectives:
        options += [part for objective in spec.objectives for part in ("--metric", str(objective))]
    else:
        options += ["--metric", spec.metric] if spec.metric else []
        options += ["--mode", spec.mode] if spec.mode else []
    options += [part for constraint in spec.constraints for part in ("--constraint", str(constraint))]
    search = spec.search
    if search is not None:
        settings = search.settings
        options += ["--search", settings.sampler, "--trials", str(settings.trials), "--prune", settings.prune]
        options += ["--seed", str(settings.seed)] if settings.seed is not None else []
        options += ["--timeout", format_duration(settings.timeout_s)] if settings.timeout_s is not None else []
        options += ["--prune-metric", settings.prune_metric] if settings.prune_metric else []
    return options


def spec_arguments(spec: SweepSpec) -> list[str]:
    """The arguments of ``mlframework sweep`` that build ``spec`` again (its parameters file read anew)."""
    arguments = [str(spec.project_dir), "-p", str(spec.parameters.source), "--results", str(spec.results_root)]
    arguments += ["--sweep-id", spec.sweep_id] if spec.sweep_id else []
    return arguments + spec_options(spec)
