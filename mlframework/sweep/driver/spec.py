"""What a sweep is and how it ended: its spec, its outcome, and the observer hooks the driver calls."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlframework.statuses import PRUNED, SUCCESS
from mlframework.sweep.params.arguments import SEED_STYLE, ArgumentStyle
from mlframework.sweep.params.grid import Grid
from mlframework.sweep.records.objectives import Constraint, Objective, feasible
from mlframework.sweep.records.pareto import pareto_front
from mlframework.sweep.records.ranking import rank
from mlframework.sweep.records.record import TrialRecord
from mlframework.sweep.search.plan import SearchPlan
from mlframework.sweep.wire.protocol import COMMAND_TASK

if TYPE_CHECKING:
    from mlframework.sweep.params.settings import FileCommand
    from mlframework.sweep.params.space import SearchSpace


@dataclass
class SweepSpec:
    """What to sweep: a project, its grid (or a search), the task to run and where to record.

    A grid sweep is ``SweepSpec(project_dir, load_grid(path))``; a search is
    ``SweepSpec(project_dir, SearchPlan(load_space(path), SearchSettings(...)))``.
    """

    project_dir: Path
    plan: Grid | SearchPlan
    task: str = "train"
    results_root: Path = Path("results")
    metric: str | None = None  # the metric that ranks trials; guessed from the first one reported
    mode: str | None = None  # "max" or "min"; guessed from the metric's name
    sweep_id: str | None = None  # generated when None
    retries: int = 0  # re-runs of a trial that failed, each on another worker when there is one
    max_starts: int = 3  # a trial started this often without finishing (its worker died) is FAILURE
    max_batch: int = 200  # most trials one message carries when trials are short (1: one per message)
    trial_timeout: float | None = None  # seconds a trial's command may run before it is stopped and FAILURE
    share: float = 1.0  # its weight among the live sweeps of a cluster (sweep/driver/fairshare.py)
    priority: int = 0  # live sweeps of a higher priority get free slots first
    # The command the parameters file gives (its mlframework: section), run by the workers' built-in task
    # instead of a task of tasks.py; run_sweep reads it from the file when None.
    command: FileCommand | None = None
    objectives: tuple[Objective, ...] = ()  # two or more: a Pareto front (metric and mode are then the first's)
    constraints: tuple[Constraint, ...] = ()  # bounds a trial must keep to be the best or on the front

    @property
    def sent_task(self) -> str:
        """The Celery task its messages name: the project's ``task``, or the built-in one that runs ``command``."""
        return COMMAND_TASK if self.command is not None else self.task

    @property
    def search(self) -> SearchPlan | None:
        """The search, or None for a grid sweep."""
        return self.plan if isinstance(self.plan, SearchPlan) else None

    @property
    def grid(self) -> Grid:
        """The grid of a grid sweep (a search has none: TypeError)."""
        if isinstance(self.plan, SearchPlan):
            raise TypeError("a search sweep has no grid: use spec.search.space")
        return self.plan

    @property
    def parameters(self) -> Grid | SearchSpace:
        """What the parameters file holds: the grid, or the search's space (both have source and names)."""
        return self.plan.space if isinstance(self.plan, SearchPlan) else self.plan


def sweep_total(spec: SweepSpec) -> int:
    """Trials a sweep runs: the grid's combinations, or a search's --trials."""
    search = spec.search
    return search.settings.trials if search is not None else spec.grid.count


@dataclass
class SweepOutcome:
    """How a sweep ended."""

    sweep_id: str
    directory: Path
    total: int
    records: list[TrialRecord]
    metric: str | None = None
    mode: str | None = None
    interrupted: bool = False  # not every trial ran: Ctrl-C, a stop signal, or a cancel
    status: str = ""  # how sweep.json records the end (finished, interrupted, cancelled); "": from ``interrupted``
    signalled: bool = False  # the driver itself was stopped (Ctrl-C, SIGTERM): start nothing new on the way out
    objectives: tuple[Objective, ...] = ()  # several: the sweep's result is a Pareto front (:meth:`front`)
    constraints: tuple[Constraint, ...] = ()
    search: str = ""  # a search in words (SearchSettings.describe: sampler and pruner); "": a grid sweep

    @property
    def ended(self) -> str:
        """How the sweep ended, in the words of sweep.json and ``mlframework ls``."""
        return self.status or ("interrupted" if self.interrupted else "finished")

    @property
    def succeeded(self) -> int:
        return sum(1 for record in self.records if record.get("status") == SUCCESS)

    @property
    def failed(self) -> int:
        return sum(1 for record in self.records if record.get("status") not in (SUCCESS, PRUNED))

    @property
    def pruned(self) -> int:
        """Trials a search stopped early (--prune): not failures."""
        return sum(1 for record in self.records if record.get("status") == PRUNED)

    @property
    def exit_status(self) -> int:
        """0 when every trial succeeded (or was pruned by a search), 1 otherwise."""
        if self.interrupted or self.failed:
            return 1
        return 0 if self.succeeded + self.pruned == len(self.records) and self.records else 1

    def ranked(self) -> list[TrialRecord]:
        """Records best first by the sweep's metric; trials without it (or failed) last."""
        constraints = self.constraints
        return rank(self.records, self.metric, self.mode, lambda r: feasible(r.get("metrics"), constraints))

    def front(self) -> list[TrialRecord]:
        """The trials on the Pareto front of the sweep's objectives, best first by the first (none: one metric)."""
        return pareto_front(self.records, self.objectives, self.constraints) if self.objectives else []


class SweepObserver:
    """Hooks the driver calls as the sweep goes; the default does nothing."""

    # How the project's script takes its options, for showing a trial's command: set by the driver once it
    # has imported the project's tasks.py, before sweep_started.
    argument_style: ArgumentStyle = SEED_STYLE

    def sweep_started(self, sweep_id: str, total: int, directory: Path) -> None:
        """The sweep is recorded under ``directory`` and about to send ``total`` trials."""

    def trial_started(self, event: dict[str, Any]) -> None:
        """A worker took a trial (``event`` holds trial, host, gpu, worker, redelivered)."""

    def trial_output(self, trial: str, host: str, stream: str, line: str) -> None:
        """A trial printed a line."""

    def trial_output_lines(self, trial: str, host: str, stream: str, lines: list[str]) -> None:
        """A trial printed ``lines`` (one call per chunk that arrived); by default :meth:`trial_output` each."""
        for line in lines:
            self.trial_output(trial, host, stream, line)

    def trial_finished(self, record: TrialRecord) -> None:
        """A trial's record was written."""

    def trial_retried(self, attempt: dict[str, Any], retries: int) -> None:
        """A trial failed (``attempt`` is that attempt's record) and was sent again."""

    def trial_metrics(self, trial: str, host: str, history: list[dict[str, Any]]) -> None:
        """A running trial reported metrics (``metrics.log`` records, in order)."""

    def idle(self) -> None:
        """Called a few times a second while the driver waits."""

    def sweep_finished(self, outcome: SweepOutcome) -> None:
        """Every trial is recorded (or the sweep was interrupted)."""

    @property
    def watches_output(self) -> bool:
        """Whether this observer takes trial output (the driver skips splitting it into lines otherwise)."""
        kind = type(self)
        return (
            kind.trial_output is not SweepObserver.trial_output
            or kind.trial_output_lines is not SweepObserver.trial_output_lines
        )


class Observers(SweepObserver):
    """Several observers as one: every hook is forwarded to each, in the order given (e.g. console, live report)."""

    def __init__(self, observers: Sequence[SweepObserver]) -> None:
        self.observers = list(observers)

    @property
    def argument_style(self) -> ArgumentStyle:
        return self.observers[0].argument_style if self.observers else SEED_STYLE

    @argument_style.setter
    def argument_style(self, style: ArgumentStyle) -> None:
        for observer in self.observers:
            observer.argument_style = style

    @property
    def watches_output(self) -> bool:
        return any(observer.watches_output for observer in self.observers)

    def sweep_started(self, sweep_id: str, total: int, directory: Path) -> None:
        for observer in self.observers:
            observer.sweep_started(sweep_id, total, directory)

    def trial_started(self, event: dict[str, Any]) -> None:
        for observer in self.observers:
            observer.trial_started(event)

    def trial_output(self, trial: str, host: str, stream: str, line: str) -> None:
        for observer in self.observers:
            observer.trial_output(trial, host, stream, line)

    def trial_output_lines(self, trial: str, host: str, stream: str, lines: list[str]) -> None:
        for observer in self.observers:
            if observer.watches_output:
                observer.trial_output_lines(trial, host, stream, lines)

    def trial_finished(self, record: TrialRecord) -> None:
        for observer in self.observers:
            observer.trial_finished(record)

    def trial_retried(self, attempt: dict[str, Any], retries: int) -> None:
        for observer in self.observers:
            observer.trial_retried(attempt, retries)

    def trial_metrics(self, trial: str, host: str, history: list[dict[str, Any]]) -> None:
        for observer in self.observers:
            observer.trial_metrics(trial, host, history)

    def idle(self) -> None:
        for observer in self.observers:
            observer.idle()

    def sweep_finished(self, outcome: SweepOutcome) -> None:
        for observer in self.observers:
            observer.sweep_finished(outcome)
