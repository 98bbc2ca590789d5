"""The Pareto front of a sweep with several objectives: non-dominated sorting of its trials' results.

Trial *a* dominates trial *b* when *a* is at least as good as *b* in every
objective and better in one. The front (rank 1) is the trials no other
trial dominates; rank 2 is the front of what is left, and so on. Only a
trial that succeeded, reported every objective as a finite number and keeps
every constraint takes part: failed, pruned, infeasible trials and those
missing an objective have no rank and are never on the front.

The sort is the efficient non-dominated sort of Zhang et al. (2015, ENS-BS):
points in lexicographic order each go to the first front none of whose members
dominates them, found by binary search (a point dominated by front k+1 is dominated
by front k). With two objectives a front's last member decides, O(n log n) per
sort; with more, the members are scanned. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from mlframework.statuses import SUCCESS
from mlframework.sweep.records.objectives import Constraint, Objective, feasible
from mlframework.sweep.records.record import TrialRecord

Point = tuple[float, ...]  # objective values, each turned so that smaller is better


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether ``a`` dominates ``b`` (smaller is better in every coordinate): no worse anywhere, better somewhere."""
    better = False
    for x, y in zip(a, b):
        if x > y:
            return False
        better = better or x < y
    return better


def nondominated_ranks(points: Sequence[Sequence[float]]) -> list[int]:
    """The non-dominated rank of each point (1: the front), smaller better in every coordinate."""
    order = sorted(range(len(points)), key=lambda i: tuple(points[i]))
    fronts: list[list[int]] = []
    ranks = [0] * len(points)
    two = bool(points) and len(points[0]) == 2

    def dominated_by(front: list[int], point: Sequence[float]) -> bool:
        if two:  # lexicographic order: the last member has the smallest second value of its front
            return dominates(points[front[-1]], point)
        return any(dominates(points[member], point) for member in front)

    for index in order:
        low, high = 0, len(fronts)
        while low < high:  # the first front that does not dominate the point
            middle = (low + high) // 2
            if dominated_by(fronts[middle], points[index]):
                low = middle + 1
            else:
                high = middle
        if low == len(fronts):
            fronts.append([])
        fronts[low].append(index)
        ranks[index] = low + 1
    return ranks


class Fronts:
    """Non-dominated fronts kept as points come, one at a time (the incremental sort of Li et al., 2017, ENLU).

    A new point goes to the first front none of whose members dominates it; the members it dominates move
    one front down, and those they dominate in turn, until no one moves. A point costs a few dominance
    checks against the fronts it meets instead of a sort of every point, which is what a pruner deciding at
    each report needs (:class:`~mlframework.sweep.search.pruners.MultiObjectiveSuccessiveHalving`).
    """

    def __init__(self) -> None:
        self.fronts: list[list[Point]] = []  # fronts[0] is the front (rank 1)

    def __len__(self) -> int:
        return sum(len(front) for front in self.fronts)

    def add(self, point: Sequence[float]) -> int:
        """Add a point (smaller better everywhere); returns how many points lie on better fronts than its own."""
        new = tuple(point)
        low, high = 0, len(self.fronts)
        while low < high:  # the first front that does not dominate it (a point dominated by front k+1 is by k)
            middle = (low + high) // 2
            if any(dominates(member, new) for member in self.fronts[middle]):
                low = middle + 1
            else:
                high = middle
        better = sum(len(front) for front in self.fronts[:low])
        moving = [new]
        level = low
        while moving:
            if level == len(self.fronts):
                self.fronts.append(moving)
                break
            front = self.fronts[level]
            pushed = [q for q in front if any(dominates(m, q) for m in moving)]
            if pushed:
                front[:] = [q for q in front if not any(dominates(m, q) for m in moving)]
            front.extend(moving)
            moving = pushed
            level += 1
        return better

    def ranks(self) -> dict[Point, int]:
        """Each point's rank (1: the front); equal points share one entry."""
        return {point: rank for rank, front in enumerate(self.fronts, 1) for point in front}


def point(record: TrialRecord, objectives: Sequence[Objective]) -> Point | None:
    """A record's objective values turned to smaller-is-better; None when one is missing or not finite."""
    metrics = record.get("metrics")
    values = []
    for objective in objectives:
        value = objective.value(metrics)
        if value is None:
            return None
        values.append(-value if objective.mode == "max" else value)
    return tuple(values)


def eligible(record: TrialRecord, objectives: Sequence[Objective], constraints: Sequence[Constraint] = ()) -> bool:
    """Whether a record takes part in the sort: succeeded, every objective reported, every constraint kept."""
    return (
        record.get("status") == SUCCESS
        and point(record, objectives) is not None
        and feasible(record.get("metrics"), constraints)
    )


def pareto_ranks(
    records: Sequence[TrialRecord], objectives: Sequence[Objective], constraints: Sequence[Constraint] = ()
) -> dict[str, int]:
    """The non-dominated rank of each eligible record, by trial id (1: on the front); the others are left out."""
    taking_part = [record for record in records if eligible(record, objectives, constraints)]
    points = [point(record, objectives) for record in taking_part]
    ranks = nondominated_ranks([p for p in points if p is not None])
    return {str(record["trial"]): rank for record, rank in zip(taking_part, ranks)}


def pareto_front(
    records: Sequence[TrialRecord], objectives: Sequence[Objective], constraints: Sequence[Constraint] = ()
) -> list[TrialRecord]:
    """The records on the Pareto front, best first by the first objective (then the next, then trial order)."""
    ranks = pareto_ranks(records, objectives, constraints)
    front = [record for record in records if ranks.get(str(record["trial"])) == 1]

    def key(record: TrialRecord) -> tuple[Point, int]:
        return point(record, objectives) or (), int(record.get("index", 0))

    return sorted(front, key=key)
