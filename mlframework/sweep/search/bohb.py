"""``--search bohb``: a BOHB-style sampler that models the learning curves the pruner already collects.

BOHB (Falkner, Klein, Hutter, ICML 2018) pairs Hyperband's early stopping with
a TPE-like model: the configurations measured at a budget are split into the
best ``gamma`` and the rest, a kernel density estimate is fit to each (``l``
and ``g``), and the next configuration is the one among ``n_candidates``
drawn from a widened ``l`` with the largest ``l(x) / g(x)``. The model is fit
at the **largest budget with enough observations** (at least ``d + 3``, ``d``
the parameters modelled), so the first models come from the first epochs of
many trials and later ones from the few trials ASHA let run longest. A fraction
``random_fraction`` of the trials is drawn at random (BOHB's 1/3; here 1/5).

Here the budgets are steps ``1, eta, eta^2, ...`` (``eta`` 3) of the values a
trial reports with ``metrics.log(step=...)`` (the study's intermediate values:
the source stores them when a ``--prune`` pruner is set), plus the final value
of each completed trial. A trial's value at budget ``b`` is its last reported
value at a step ``<= b``, counted once its last reported step is ``>= b``. The
pruner (``--prune asha``/``hyperband``, :mod:`mlframework.sweep.search.pruners`)
stays as it is: the sampler only chooses where new trials start, asynchronously,
one ``ask`` per free slot, with no synchronous bracket to wait for. Trials still
running without a value at the chosen budget count among the bad ones (as TPE's
``constant_liar``), so that W free slots get W different points. In a space of
discrete parameters only (a grid file's lists and intervals), a decision that
is a point a trial took already (a search never runs a point twice: the source
would tell it failed and ask again, a trial number wasted) is made again with
the trial's next draws, up to 16 times, as asking again would.

Boundaries are part of the space: every numeric parameter is mapped to [0, 1]
(log scale where the range is), candidates are drawn from the kernels and
**clipped** to [0, 1], not truncated, so the kernels' mass past a bound lands
on the bound; and the random draws put ``edge_probability`` of each
coordinate on one of its two bounds. A search finds an optimum in a corner
of the box (LCBench's: the largest learning rate, the smallest batch) without
the user widening ranges.

Several objectives (a study with several directions): a trial's value at a budget is its vector of
objective values (turned smaller-is-better) at each rung multi-objective ASHA recorded, rung r being budget
r, pruned trials' included, and the final values of a completed trial (:func:`rung_vectors`). The good set is
the best ``gamma`` by non-dominated rank, whole fronts first; the front that fits only in part gives the
members that add most hypervolume, one at a time, each objective scaled to [0, 1] over the trials at that
budget (MOTPE's split, Ozaki et al. 2020). All else (candidates, bounds, seeding) is as for one objective, and
with one objective nothing changes.

Decisions are a function of (seed, trial number, study): each trial's draws
come from a generator seeded with ``(seed, trial number)``. A driver killed and
resumed reads the same journal and makes the same next decisions as one that
was never stopped (the source does not shift this sampler's seed on resume).

Cost: finished trials' budget values, counts and encoded parameters are
computed once and cached; a decision is one pass over the study's trials (the
running ones read anew) and ``n_candidates`` x observations Gaussian kernels
with numpy: 2.3 ms a trial (ask, 52 reports, tell) at 1,000 trials, 12 ms at
10,000 (bench/README.md).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.search_space import IntersectionSearchSpace
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from mlframework.sweep.records.pareto import nondominated_ranks
from mlframework.sweep.search.pruners import rung_key

_FINAL = math.inf  # the budget of a completed trial's final value
_MISSING = object()
_RANDOM_TRIES = 16  # decisions that may repeat a tried point before one is proposed anyway


@dataclass(frozen=True)
class BohbSettings:
    """BOHB's constants (the paper's, but where a comment says otherwise)."""

    gamma: float = 0.15  # share of observations in the good set l
    n_candidates: int = 64  # draws from l per decision
    bandwidth_factor: float = 3.0  # draws use kernels this much wider than the model's
    min_bandwidth: float = 0.01  # BOHB's is 1e-3; wider keeps a good set of near-equal points from collapsing
    random_fraction: float = 0.2  # BOHB's is 1/3; our pruner already spends most trials on exploration
    eta: float = 3.0  # budgets at steps 1, eta, eta^2, ... (hyperband's factor)
    edge_probability: float = 0.2  # random draws: a coordinate on one of its bounds
    clip: bool = True  # candidates past a bound land on it (False: reflected inside, as a truncated kernel)


class _Encoder:
    """A numeric distribution mapped to [0, 1] and back (log scale where the distribution is)."""

    def __init__(self, distribution: FloatDistribution | IntDistribution) -> None:
        self.distribution = distribution
        self.integer = isinstance(distribution, IntDistribution)
        low, high = float(distribution.low), float(distribution.high)
        if self.integer:
            # Each integer gets an equal share of [0, 1] (the ends included), as Optuna's TPE pads them.
            pad = 0.5 * float(distribution.step or 1) if not distribution.log else 0.5
            low, high = low - pad, high + pad
        self.log = bool(distribution.log)
        if self.log:
            low, high = math.log(max(low, 1e-300)), math.log(high)
        self.low, self.width = low, max(high - low, 1e-12)

    def encode(self, value: float) -> float:
        """The value's position in [0, 1]."""
        x = math.log(value) if self.log else float(value)
        return min(1.0, max(0.0, (x - self.low) / self.width))

    def decode(self, u: float) -> Any:
        """The distribution's value at position ``u`` (clipped to [0, 1]), rounded to its step."""
        x = self.low + min(1.0, max(0.0, u)) * self.width
        value = math.exp(x) if self.log else x
        d = self.distribution
        if self.integer:
            assert isinstance(d, IntDistribution)
            step = d.step
            return int(min(d.high, max(d.low, d.low + round((value - d.low) / step) * step)))
        assert isinstance(d, FloatDistribution)
        if d.step is not None:
            value = d.low + round((value - d.low) / d.step) * d.step
        return float(min(d.high, max(d.low, value)))


def _is_continuous(distribution: BaseDistribution) -> bool:
    return isinstance(distribution, FloatDistribution) and distribution.step is None


def _is_numeric(distribution: BaseDistribution) -> bool:
    return isinstance(distribution, (FloatDistribution, IntDistribution)) and distribution.low < distribution.high


def _rng(seed: int, number: int, salt: str = "") -> np.random.Generator:
    return np.random.default_rng([seed, number, zlib.crc32(salt.encode())])


def budget_values(trial: FrozenTrial, eta: float) -> dict[float, float]:
    """A trial's value at each budget it reached: steps 1, eta, eta^2, ... and the final value if complete."""
    values: dict[float, float] = {}
    reports = sorted((step, value) for step, value in trial.intermediate_values.items() if math.isfinite(value))
    if reports:
        last_step = reports[-1][0]
        budget, index, latest = 1.0, 0, math.nan
        while budget <= last_step:
            while index < len(reports) and reports[index][0] <= budget:
                latest = reports[index][1]
                index += 1
            if math.isfinite(latest):
                values[budget] = latest
            budget *= eta
    if trial.state == TrialState.COMPLETE and trial.value is not None and math.isfinite(trial.value):
        values[_FINAL] = float(trial.value)
    return values


def rung_vectors(trial: FrozenTrial, signs: Sequence[float]) -> dict[float, tuple[float, ...]]:
    """Several objectives: a trial's vector (smaller is better) at each rung multi-objective ASHA recorded, and
    its final values if complete. The budget of rung r is r (its step grows with r); the final one's is inf."""
    values: dict[float, tuple[float, ...]] = {}
    rung = 0
    while isinstance(vector := trial.system_attrs.get(rung_key(rung)), list):
        point = tuple(sign * float(value) for sign, value in zip(signs, vector))
        if len(point) == len(signs) and all(math.isfinite(value) for value in point):
            values[float(rung)] = point
        rung += 1
    if trial.state == TrialState.COMPLETE and trial.values is not None and len(trial.values) == len(signs):
        point = tuple(sign * float(value) for sign, value in zip(signs, trial.values))
        if all(math.isfinite(value) for value in point):
            values[_FINAL] = point
    return values


class BohbSampler(optuna.samplers.BaseSampler):
    """BOHB's model over the budgets the trials reached, as an Optuna sampler (module docstring)."""

    def __init__(self, seed: int | None = None, settings: BohbSettings | None = None) -> None:
        self.seed = int(seed) if seed is not None else int(np.random.SeedSequence().generate_state(1)[0])
        self.settings = settings or BohbSettings()
        self._space = IntersectionSearchSpace(include_pruned=True)
        self._finished: dict[int, dict[float, Any]] = {}  # trial number -> budget values (finished trials only)
        self._counts: dict[float, int] = {}  # budget -> finished trials with a value there
        self._rows: dict[int, object] = {}  # trial number -> its modelled parameters in [0, 1] (None: some missing)
        self._rows_key: tuple[tuple[str, str], ...] = ()  # the parameters and distributions those rows are of
        self._points: set[tuple[Any, ...]] = set()  # the points (values of _points_of) the trials took
        self._points_of: tuple[str, ...] = ()
        self._points_read = 0  # trials read into _points
        self._points_pending: list[int] = []  # trials read before their parameters were all set

    def reseed_rng(self) -> None:
        """Nothing: each trial's draws come from (seed, trial number), not from a running generator."""

    # -- Optuna's sampler interface ------------------------------------------------

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        """The parameters every finished trial had (conditional ones are sampled independently)."""
        return {
            name: distribution
            for name, distribution in self._space.calculate(study).items()
            if not distribution.single()
        }

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """The joint draw of the relative space's parameters: from the model, else at random (edges included)."""
        if not search_space:
            return {}
        names = sorted(search_space)
        rng = _rng(self.seed, trial.number)
        # A space of discrete parameters only (a grid file's lists and intervals) repeats points often: there a
        # decision that is a point tried already is made again with the trial's next draws, as the source's
        # asking again would, without a trial wasted. A continuous parameter repeats only on a bound, and the
        # decisions there stay those measured (bench/README.md).
        discrete = all(not _is_continuous(search_space[name]) for name in names)
        tried = self._tried(study, trial, names) if discrete else set()
        proposed: dict[str, Any] | None = None
        for _ in range(_RANDOM_TRIES if discrete else 1):
            proposed = None
            if rng.random() >= self.settings.random_fraction:
                proposed = self._from_model(study, trial, names, search_space, rng)
            if proposed is None:
                proposed = {name: self._random(search_space[name], rng) for name in names}
            if _key(proposed, names) not in tried:
                break
        assert proposed is not None
        return proposed

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        """A parameter outside the relative space (the first trials, conditional ones): at random, edges included.

        A choice (a list) avoids, while it can in a few draws, the values the other trials took (the first
        trials of a grid file would otherwise often repeat a point, which the source refuses and asks again).
        """
        rng = _rng(self.seed, trial.number, param_name)
        value = self._random(param_distribution, rng)
        if not isinstance(param_distribution, CategoricalDistribution):
            return value
        taken = {
            repr(frozen.params[param_name])
            for frozen in study.get_trials(deepcopy=False)
            if frozen.number != trial.number and param_name in frozen.params
        }
        for _ in range(_RANDOM_TRIES):
            if repr(value) not in taken:
                break
            value = self._random(param_distribution, rng)
        return value

    # -- the model -----------------------------------------------------------------

    def _random(self, distribution: BaseDistribution, rng: np.random.Generator) -> Any:
        if isinstance(distribution, CategoricalDistribution):
            return distribution.choices[int(rng.integers(len(distribution.choices)))]
        if not _is_numeric(distribution):
            assert isinstance(distribution, (FloatDistribution, IntDistribution))
            return distribution.low
        assert isinstance(distribution, (FloatDistribution, IntDistribution))
        edge = rng.random()
        p = self.settings.edge_probability
        u = 0.0 if edge < p / 2 else 1.0 if edge < p else float(rng.random())
        return _Encoder(distribution).decode(u)

    def _tried(self, study: Study, trial: FrozenTrial, names: list[str]) -> set[tuple[Any, ...]]:
        """The points (of ``names``) the other trials of the study took: a proposal avoids them.

        The search never runs a point twice (the source tells a repeated one failed and asks again), so a
        proposal of a tried point is an ask wasted: in a discrete space, or on a bound the kernels are clipped
        to, the best candidate is often one. Kept from one call to the next: a trial's parameters are all set
        once it was asked, so each trial is read once (one still being asked is read again next time).
        """
        key = tuple(names)
        if key != self._points_of:
            self._points, self._points_of, self._points_read, self._points_pending = set(), key, 0, []
        trials = study.get_trials(deepcopy=False)
        unread = self._points_pending + list(range(self._points_read, len(trials)))
        self._points_read, self._points_pending = len(trials), []
        for number in unread:
            frozen = trials[number]  # a study's trials are numbered 0, 1, ... in order
            params = frozen.params
            if all(name in params for name in names):
                self._points.add(_key(params, names))
            elif frozen.number == trial.number or frozen.state == TrialState.RUNNING:
                self._points_pending.append(number)
        return self._points

    def observations(self, study: Study) -> tuple[list[FrozenTrial], list[dict[float, Any]], dict[float, int]]:
        """Every trial, its budget values, and how many trials have a value at each budget.

        A budget value is a float with one objective (:func:`budget_values`), a vector (smaller is better)
        with several (:func:`rung_vectors`). Finished trials' values are computed once and counted once;
        running ones are read anew.
        """
        trials = study.get_trials(deepcopy=False)
        values: list[dict[float, Any]] = []
        running: list[dict[float, Any]] = []
        signs = _signs(study)
        finished = self._finished
        for frozen in trials:
            number = frozen.number
            cached: dict[float, Any] | None = finished.get(number)
            if cached is None:
                cached = budget_values(frozen, self.settings.eta) if signs is None else rung_vectors(frozen, signs)
                if frozen.state.is_finished():
                    finished[number] = cached
                    for budget in cached:
                        self._counts[budget] = self._counts.get(budget, 0) + 1
                else:
                    running.append(cached)
            values.append(cached)
        counts = dict(self._counts)
        for budgets in running:
            for budget in budgets:
                counts[budget] = counts.get(budget, 0) + 1
        return trials, values, counts

    def choose_budget(self, values: Sequence[dict[float, Any]], needed: int) -> float | None:
        """The largest budget at which at least ``needed`` trials have a value (None: none yet)."""
        counts: dict[float, int] = {}
        for budgets in values:
            for budget in budgets:
                counts[budget] = counts.get(budget, 0) + 1
        return _largest_with(counts, needed)

    def _from_model(
        self,
        study: Study,
        trial: FrozenTrial,
        names: list[str],
        space: dict[str, BaseDistribution],
        rng: np.random.Generator,
    ) -> dict[str, Any] | None:
        s = self.settings
        trials, values, counts = self.observations(study)
        needed = len(names) + 3  # BOHB: N_min = d + 1, and a model once N_b >= N_min + 2
        budget = _largest_with(counts, needed)
        if budget is None:
            return None
        signs = _signs(study)
        sign = 1.0 if signs is not None else -1.0 if study.direction == StudyDirection.MAXIMIZE else 1.0
        numeric = [name for name in names if _is_numeric(space[name])]
        categorical = [name for name in names if isinstance(space[name], CategoricalDistribution)]
        encoders = {name: _Encoder(space[name]) for name in numeric}  # type: ignore[arg-type]
        key = tuple((name, repr(space[name])) for name in names)
        if key != self._rows_key:
            self._rows.clear()
            self._rows_key = key
        scored: list[tuple[Any, int, FrozenTrial, tuple[float, ...]]] = []
        liars: list[tuple[FrozenTrial, tuple[float, ...]]] = []
        asking = trial.number
        for frozen, budgets in zip(trials, values):
            value = budgets.get(budget)
            if value is None and frozen.state != TrialState.RUNNING:
                continue
            number = frozen.number
            if number == asking:
                continue
            row = self._rows.get(number, _MISSING)
            if row is _MISSING:
                # A trial's parameters are all set when it is asked (the one being asked now is left out).
                params = frozen.params
                row = tuple(encoders[n].encode(params[n]) for n in numeric) if all(n in params for n in names) else None
                self._rows[number] = row
            if row is None:
                continue
            assert isinstance(row, tuple)
            if value is not None:
                scored.append((value if signs is not None else sign * value, number, frozen, row))
            else:
                liars.append((frozen, row))
        n_good = max(len(names) + 1, math.ceil(s.gamma * len(scored)))
        if signs is not None:  # several objectives: the good ones by non-dominated rank, then hypervolume
            scored.sort(key=lambda item: item[1])
            chosen = set(_best_by_rank(np.array([item[0] for item in scored], dtype=float), n_good))
            scored = [item for i, item in enumerate(scored) if i in chosen] + [
                item for i, item in enumerate(scored) if i not in chosen
            ]
        else:
            scored.sort(key=lambda item: (item[0], item[1]))
        good = [(frozen, row) for _score, _number, frozen, row in scored[:n_good]]
        bad = [(frozen, row) for _score, _number, frozen, row in scored[n_good:]] + liars
        if len(good) < 2 or len(bad) < 2:
            return None

        def matrix(group: list[tuple[FrozenTrial, tuple[float, ...]]]) -> np.ndarray:
            return np.array([row for _frozen, row in group], dtype=float).reshape(len(group), len(numeric))

        good_x, bad_x = matrix(good), matrix(bad)
        good_bw, bad_bw = self._bandwidths(good_x), self._bandwidths(bad_x)
        # Candidates: a good point each, moved by a kernel bandwidth_factor times wider, clipped to the box.
        centres = rng.integers(len(good), size=s.n_candidates)
        candidates = good_x[centres] + rng.normal(size=(s.n_candidates, len(numeric))) * good_bw * s.bandwidth_factor
        if s.clip:
            candidates = np.clip(candidates, 0.0, 1.0)
        else:
            candidates = 1.0 - np.abs(1.0 - np.abs(candidates) % 2.0)
        score = _log_kde(candidates, good_x, good_bw) - _log_kde(candidates, bad_x, bad_bw)
        chosen_categories: dict[str, list[Any]] = {}
        for name in categorical:
            distribution = space[name]
            assert isinstance(distribution, CategoricalDistribution)
            choices = list(distribution.choices)
            good_p = _categorical_weights(choices, [t.params[name] for t, _row in good])
            bad_p = _categorical_weights(choices, [t.params[name] for t, _row in bad])
            # Draw from the good set's own choice (kept with probability 1 - its bandwidth), as its kernel does.
            drawn = [int(rng.choice(len(choices), p=good_p)) for _ in range(s.n_candidates)]
            score = score + np.log(good_p[drawn]) - np.log(bad_p[drawn])
            chosen_categories[name] = [choices[index] for index in drawn]
        best = int(np.argmax(score))
        proposed: dict[str, Any] = {
            name: encoders[name].decode(float(candidates[best, i])) for i, name in enumerate(numeric)
        }
        for name in categorical:
            proposed[name] = chosen_categories[name][best]
        return proposed

    def _bandwidths(self, x: np.ndarray) -> np.ndarray:
        """Scott's rule per dimension (statsmodels' ``normal_reference``, BOHB's), at least ``min_bandwidth``."""
        n, d = x.shape
        std = x.std(axis=0, ddof=1) if n > 1 else np.zeros(d)
        bandwidth: np.ndarray = 1.06 * std * n ** (-1.0 / (d + 4))
        return np.asarray(np.maximum(bandwidth, self.settings.min_bandwidth))


def _key(params: dict[str, Any], names: list[str]) -> tuple[Any, ...]:
    """A point as a set member: each value of ``names`` by type and repr (1, 1.0 and True are three values)."""
    return tuple((type(params[name]).__name__, repr(params[name])) for name in names)


def _signs(study: Study) -> tuple[float, ...] | None:
    """Several objectives: each one's sign that makes smaller better; None for one objective."""
    directions = study.directions
    if len(directions) < 2:
        return None
    return tuple(-1.0 if direction == StudyDirection.MAXIMIZE else 1.0 for direction in directions)


def _best_by_rank(points: np.ndarray, count: int) -> list[int]:
    """The indices of ``count`` best points (smaller is better): whole non-dominated fronts, best first; the
    last front that does not fit whole gives the members that add most hypervolume, one at a time (MOTPE's
    split, Ozaki et al. 2020), with each objective scaled to [0, 1] over ``points``."""
    if count >= len(points):
        return list(range(len(points)))
    ranks = nondominated_ranks(points.tolist())
    low, high = points.min(axis=0), points.max(axis=0)
    scaled = (points - low) / np.where(high > low, high - low, 1.0)
    reference = np.full(points.shape[1], 1.1)  # a little past the worst of every objective
    chosen: list[int] = []
    for rank in sorted(set(ranks)):
        front = [i for i, r in enumerate(ranks) if r == rank]
        if len(chosen) + len(front) <= count:
            chosen += front
            continue
        picked: list[np.ndarray] = []
        while len(chosen) < count:
            base = _hypervolume(picked, reference)
            gains = [_hypervolume([*picked, scaled[i]], reference) - base for i in front]
            best = front[int(np.argmax(gains))]  # the first of equal gains: the earliest trial
            chosen.append(best)
            picked.append(scaled[best])
            front.remove(best)
        break
    return chosen


def _hypervolume(points: Sequence[np.ndarray], reference: np.ndarray) -> float:
    """The volume ``points`` dominate up to ``reference`` (smaller is better), by slicing the last objective."""
    inside = [p for p in points if bool(np.all(p < reference))]
    if not inside:
        return 0.0
    if len(reference) == 1:
        return float(reference[0] - min(p[0] for p in inside))
    inside.sort(key=lambda p: float(p[-1]))
    volume = 0.0
    for i, p in enumerate(inside):
        top = float(inside[i + 1][-1]) if i + 1 < len(inside) else float(reference[-1])
        if top > p[-1]:
            volume += (top - float(p[-1])) * _hypervolume([q[:-1] for q in inside[: i + 1]], reference[:-1])
    return volume


def _largest_with(counts: dict[float, int], needed: int) -> float | None:
    enough = [budget for budget, count in counts.items() if count >= needed]
    return max(enough) if enough else None


def _log_kde(points: np.ndarray, data: np.ndarray, bandwidth: np.ndarray) -> np.ndarray:
    """The log density at ``points`` of a product-Gaussian kernel estimate over ``data`` (one row per point)."""
    if data.shape[1] == 0:
        return np.zeros(len(points))
    z = (points[:, None, :] - data[None, :, :]) / bandwidth
    log_kernel = -0.5 * np.sum(z * z, axis=2) - np.sum(np.log(bandwidth)) - 0.5 * data.shape[1] * math.log(2 * math.pi)
    top = log_kernel.max(axis=1, keepdims=True)
    return np.asarray(top[:, 0] + np.log(np.mean(np.exp(log_kernel - top), axis=1)))


def _categorical_weights(choices: list[Any], observed: list[Any], bandwidth: float = 0.2) -> np.ndarray:
    """Aitchison-Aitken kernel weights over ``choices`` (BOHB's unordered kernel) from the observed choices."""
    k = len(choices)
    weights = np.full(k, 0.0)
    for value in observed:
        index = next((i for i, choice in enumerate(choices) if choice == value), None)
        kernel = np.full(k, bandwidth / (k - 1) if k > 1 else 0.0)
        if index is not None:
            kernel[index] = 1.0 - bandwidth if k > 1 else 1.0
        else:
            kernel = np.full(k, 1.0 / k)
        weights += kernel
    weights = weights / max(len(observed), 1)
    return np.asarray(weights / weights.sum())
