"""The trial source of a search: an Optuna study the driver asks for trials and tells their results to.

The study lives in the sweep's directory (``study.journal``, Optuna's journal
file storage), so ``--resume`` continues it: trials told before are never run
again, trials asked but not told are sent again with the same parameters.
Workers never touch it; the driver alone asks (ahead, one trial per free slot),
tells (every result, failure and pruning) and decides pruning from the
intermediate values a trial reports while it runs.
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna

from mlframework.exceptions import ConfigError
from mlframework.statuses import PRUNED
from mlframework.sweep.params.space import SearchSpace
from mlframework.sweep.records.objectives import Constraint, Objective
from mlframework.sweep.records.record import TrialRecord
from mlframework.sweep.search.bohb import BohbSampler
from mlframework.sweep.search.plan import SearchSettings
from mlframework.sweep.search.pruners import (
    MultiObjectiveSuccessiveHalving,
    Pruner,
    make_pruner,
    make_vector_pruner,
    rung_key,
)
from mlframework.sweep.search.storage import open_study_storage
from mlframework.sweep.trials.metric_names import metric_value

log = logging.getLogger(__name__)

JOURNAL = "study.journal"
_DUPLICATE_TRIES = 50  # asks in a row that only repeat points already tried: the space is exhausted
_MAX_RESOURCE = "hyperband_max_resource"  # the study user attribute keeping hyperband's maximum resource
# A trial's constraint values (<= 0: kept), one system attribute per --constraint: the key Optuna's own
# Trial.set_constraint writes, which its samplers and study.best_trials read.
_CONSTRAINT_KEY = "constraints:{}"
_LAST_VALUES = "objective_values"  # a running trial's system attribute: [step, values] (several objectives)


def _sampler(settings: SearchSettings, space: SearchSpace) -> optuna.samplers.BaseSampler:
    # Optuna warns that constant_liar and QMCSampler are experimental, a note on the stability of its Python API
    # for whoever calls it; someone who typed --search qmc would only see noise in the sweep's output.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _new_sampler(settings, space)


def _new_sampler(settings: SearchSettings, space: SearchSpace) -> optuna.samplers.BaseSampler:
    seed = settings.seed
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if settings.sampler == "tpe":
        # constant_liar: trials in flight count as bad guesses, so W workers get W different points.
        # --constraint: TPE reads each told trial's constraint values (SearchSource.tell) and models the
        # feasible trials apart (Optuna's c-TPE).
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    if settings.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if settings.sampler == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    if settings.sampler == "bohb":
        return BohbSampler(seed=seed)
    return _GridSampler(space.grid_space(), seed=seed)


class _GridSampler(optuna.samplers.GridSampler):
    """Optuna's GridSampler without its ``study.stop()`` once the grid is done.

    That call is only allowed inside ``study.optimize``; told through
    ask-and-tell it raises and the last result is lost. The source ends the
    search itself when the study only proposes points already tried.
    """

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        return None


def _plain_key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


class SearchSource:
    """Asks the study for trials, sends nothing itself; tells results; decides pruning."""

    def __init__(
        self,
        space: SearchSpace,
        settings: SearchSettings,
        directory: Path,
        study_name: str,
        metric: str,
        mode: str,
        objectives: Sequence[Objective] = (),
        constraints: Sequence[Constraint] = (),
    ) -> None:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.space = space
        self.settings = settings
        self.metric = metric
        self.prune_metric = settings.prune_metric or metric
        self.objectives = tuple(objectives) if len(objectives) > 1 else ()  # several: a multi-objective study
        self.constraints = tuple(constraints)
        if self.objectives and settings.sampler == "cmaes":
            raise ConfigError(
                "--search cmaes optimises one metric: with several --metric use bohb, tpe, random, qmc or grid"
            )
        if self.objectives and settings.prune not in ("asha", "none"):
            raise ConfigError(f"--prune {settings.prune} watches one metric: with several --metric use asha or none")
        storage = open_study_storage(directory / JOURNAL)
        self._journal = storage.journal
        earlier = sum(
            len(storage.get_all_trials(study._study_id, deepcopy=False))
            for study in storage.get_all_studies()
            if study.study_name == study_name
        )
        if earlier and settings.seed is not None and settings.sampler != "bohb":
            # A resumed search goes on from where it was: the same seed again would propose the same points.
            # (BohbSampler draws from the seed and each trial's number: resumed, it goes on as if never stopped.)
            settings = SearchSettings(**{**settings.to_meta(), "seed": settings.seed + earlier})
        maximize = mode == "max"
        direction = optuna.study.StudyDirection
        directions = [
            direction.MAXIMIZE if objective.mode == "max" else direction.MINIMIZE for objective in self.objectives
        ] or [direction.MAXIMIZE if maximize else direction.MINIMIZE]
        self.study = optuna.create_study(
            study_name=study_name,
            storage=storage,
            sampler=_sampler(settings, space),
            # The pruning is decided here, not by the study (sweep/search/pruners.py): Optuna's pruners read the whole
            # study at each decision, O(trials), and would be given a deep copy of the trial at each call. Ours
            # are fed the reports this source tells anyway and answer in O(log trials); a BasePruner fed that
            # way would give wrong answers to any other caller (study.optimize), so none is set on the study.
            pruner=optuna.pruners.NopPruner(),
            directions=directions,
            load_if_exists=True,
        )
        self._storage = self.study._storage
        self._study_id = self.study._study_id
        self.started = time.monotonic()
        self.exhausted_space = False
        self._ids: dict[int, int] = {}  # trial number -> storage trial id
        self._params: dict[int, dict[str, Any]] = {}
        self._seen: set[str] = set()
        self.pruned: set[int] = set()  # pruning decided (the trial may still be stopping)
        max_resource = self.study.user_attrs.get(_MAX_RESOURCE)
        self._max_resource_saved = max_resource is not None
        self.pruner: Pruner | None = None
        self.vector_pruner: MultiObjectiveSuccessiveHalving | None = None
        if self.objectives:
            if settings.prune == "asha":  # multi-objective ASHA (sweep/search/pruners.py)
                self.vector_pruner = make_vector_pruner(
                    [objective.mode == "max" for objective in self.objectives], self._vector_rung
                )
        else:
            self.pruner = make_pruner(
                settings.prune,
                maximize,
                study_name,
                max_resource if isinstance(max_resource, int) else None,
                self._rung,
            )
        finished_states = (
            optuna.trial.TrialState.COMPLETE,
            optuna.trial.TrialState.PRUNED,
            optuna.trial.TrialState.FAIL,
        )
        for frozen in self.study.get_trials(deepcopy=False):  # one pass: what was asked, pruned, and the pruner's state
            self._ids[frozen.number] = frozen._trial_id
            params = frozen.user_attrs.get("params")
            if isinstance(params, dict):
                self._params[frozen.number] = params
                self._seen.add(_plain_key(params))
            if frozen.user_attrs.get("pruned"):
                self.pruned.add(frozen.number)
            if self.vector_pruner is not None and isinstance(params, dict):
                vectors: dict[int, list[float]] = {}
                while isinstance(vector := frozen.system_attrs.get(rung_key(len(vectors))), list):
                    vectors[len(vectors)] = [float(v) for v in vector]
                last = frozen.system_attrs.get(_LAST_VALUES)
                self.vector_pruner.restore(
                    frozen.number,
                    vectors,
                    (int(last[0]), list(last[1])) if isinstance(last, list) and len(last) == 2 else None,
                    frozen.state in finished_states,
                )
            if self.pruner is not None and isinstance(params, dict):
                rungs: dict[int, float] = {}
                while (value := frozen.system_attrs.get(rung_key(len(rungs)))) is not None:
                    rungs[len(rungs)] = float(value)
                self.pruner.restore(
                    frozen.number,
                    dict(frozen.intermediate_values),
                    rungs,
                    frozen.state in finished_states,
                    frozen.state == optuna.trial.TrialState.COMPLETE,
                )

    def close(self) -> None:
        """Close the study's journal file (the source is of no more use)."""
        self._journal.close()

    def _rung(self, number: int, rung: int, value: float) -> None:
        """Save a rung value the pruner recorded, under Optuna's own key (what a resumed source rebuilds from)."""
        self._storage.set_trial_system_attr(self._ids[number], rung_key(rung), value)

    def _vector_rung(self, number: int, rung: int, values: list[float]) -> None:
        """Save the objective values multi-objective ASHA recorded at a rung (as a list, under Optuna's key)."""
        self._storage.set_trial_system_attr(self._ids[number], rung_key(rung), values)

    def _save_max_resource(self) -> None:
        """Hyperband's maximum resource, once found, kept with the study: a resumed search keeps its brackets."""
        max_resource = getattr(self.pruner, "max_resource", None)
        if max_resource is not None and not self._max_resource_saved:
            self._storage.set_study_user_attr(self._study_id, _MAX_RESOURCE, max_resource)
            self._max_resource_saved = True

    # -- asking ------------------------------------------------------------------

    @property
    def asked(self) -> int:
        """Trials sent so far, in every session of the sweep (what --trials counts)."""
        return len(self._params)

    @property
    def exhausted(self) -> bool:
        """No more trial will be asked: budget spent, time up, or every point tried."""
        if self.asked >= self.settings.trials or self.exhausted_space:
            return True
        timeout = self.settings.timeout_s
        return timeout is not None and time.monotonic() - self.started >= timeout

    def ask(self) -> tuple[int, dict[str, Any]] | None:
        """A new trial (its number and parameters), never a point asked before; None when exhausted."""
        for _ in range(_DUPLICATE_TRIES):
            if self.exhausted:
                return None
            trial = self.study.ask()
            params = self.space.sample(trial)
            key = _plain_key(params)
            if key in self._seen:
                # Optuna samplers may repeat a point of a discrete space (optuna#2039): never run it twice.
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            self._seen.add(key)
            self._ids[trial.number] = trial._trial_id
            self._storage.set_trial_user_attr(trial._trial_id, "params", params)
            self._journal.sync()  # on disk before it is sent
            self._params[trial.number] = params
            return trial.number, params
        log.info("the search space seems exhausted: %d asks in a row repeated earlier points", _DUPLICATE_TRIES)
        self.exhausted_space = True
        return None

    def params(self, number: int) -> dict[str, Any]:
        """The parameters of trial ``number`` (for a retry, or a trial sent again)."""
        return self._params[number]

    def untold(self) -> list[int]:
        """Trials asked (in an earlier session too) whose result was never told."""
        running = optuna.trial.TrialState.RUNNING
        return [t.number for t in self.study.get_trials(deepcopy=False, states=(running,)) if t.number in self._params]

    # -- telling -----------------------------------------------------------------

    def _trial_id(self, number: int) -> int:
        trial_id = self._ids.get(number)
        if trial_id is None:
            trial_id = self._ids[number] = self._storage.get_trial_id_from_study_id_trial_number(self._study_id, number)
        return trial_id

    def report(self, number: int, history: list[dict[str, Any]]) -> bool:
        """Tell intermediate values (``metrics.log`` records); True when the trial should be pruned now."""
        if self.vector_pruner is not None:
            return self._report_vectors(self.vector_pruner, number, history)
        pruner = self.pruner
        if pruner is None or number in self.pruned or number not in self._params:
            return False
        trial_id = self._trial_id(number)
        running = pruner.running.get(number)
        known = set(running.values) if running is not None else set()
        reported = False
        for record in history:
            value = metric_value(record.get("values"), self.prune_metric)  # any spelling (metric_names.py)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                continue
            step = record.get("step")
            step = int(step) if isinstance(step, (int, float)) and not isinstance(step, bool) else None
            if step is None:
                step = len(known)
            if step in known:
                continue
            # The storage's own call (what Trial.report ends in), without Trial.report's reading of the trial back.
            self._storage.set_trial_intermediate_value(trial_id, step, float(value))
            pruner.reported(number, step, float(value))
            known.add(step)
            reported = True
        if not reported:
            return False
        decided = pruner.decide(number)
        self._save_max_resource()
        if decided:
            self.pruned.add(number)
            self._storage.set_trial_user_attr(trial_id, "pruned", True)
            self._journal.sync()
        return decided

    def _report_vectors(
        self, pruner: MultiObjectiveSuccessiveHalving, number: int, history: list[dict[str, Any]]
    ) -> bool:
        """Several objectives: each step's value of every objective, read as one metric's are; pruned or not."""
        if number in self.pruned or number not in self._params:
            return False
        running = pruner.running.get(number)
        known = set(running.values) if running is not None else set()
        reported = False
        for record in history:
            values = [_finite(objective.value(record.get("values"))) for objective in self.objectives]
            if all(value is None for value in values):
                continue
            step = record.get("step")
            step = int(step) if isinstance(step, (int, float)) and not isinstance(step, bool) else None
            if step is None:
                step = len(known)
            if step in known:
                continue
            pruner.reported(number, step, values)
            known.add(step)
            reported = True
        if not reported:
            return False
        state = pruner.running[number]
        trial_id = self._trial_id(number)
        self._storage.set_trial_system_attr(
            trial_id, _LAST_VALUES, [state.last_step, list(state.values[state.last_step])]
        )  # what a resumed source goes on from
        decided = pruner.decide(number)
        if decided:
            self.pruned.add(number)
            self._storage.set_trial_user_attr(trial_id, "pruned", True)
        self._journal.sync()
        return decided

    def _values(self, record: TrialRecord) -> list[float] | None:
        """The study's value(s) of a finished trial: its metric, or each objective; None when one is missing."""
        metrics = record.get("metrics")
        if not self.objectives:
            value = _finite(metric_value(metrics, self.metric))
            return None if value is None else [value]
        values = [objective.value(metrics) for objective in self.objectives]
        return None if any(value is None for value in values) else [v for v in values if v is not None]

    def tell(self, number: int, record: TrialRecord) -> str:
        """Tell a trial's final record; returns the status to record (PRUNED for a pruned trial)."""
        state = optuna.trial.TrialState
        trial_id = self._trial_id(number)
        told = self._storage.get_trial(trial_id).state
        if told.is_finished():  # told in an earlier session (a resumed sweep replays its records)
            return PRUNED if told == state.PRUNED else str(record.get("status"))
        values = self._values(record)
        usable = values is not None
        for constraint in self.constraints:  # before the tell: the sampler reads them once the trial is told
            value = constraint.violation(record.get("metrics"))
            self._storage.set_trial_system_attr(trial_id, _CONSTRAINT_KEY.format(constraint), value)
        if number in self.pruned and not record.get("stopped") and record.get("status") == "SUCCESS" and usable:
            # Pruning was decided, but the trial ended on its own before the stop reached it: its result is
            # whole (and its GPU time spent), so it is told and recorded as the success it is.
            self.pruned.discard(number)
            self._storage.set_trial_user_attr(trial_id, "pruned", False)
        complete = False
        if number in self.pruned:
            self.study.tell(number, state=state.PRUNED)
            status = PRUNED
        else:
            complete = record.get("status") == "SUCCESS" and usable
            if complete and values is not None:
                self.study.tell(number, values)
            else:
                self.study.tell(number, state=state.FAIL)
            status = str(record.get("status"))
        self._journal.sync()
        if self.pruner is not None:
            self.pruner.finished(number, complete)
        if self.vector_pruner is not None:
            self.vector_pruner.finished(number, complete)
        return status


def _finite(value: Any) -> float | None:
    """``value`` as a finite float, None otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)
