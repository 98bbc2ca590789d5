"""Fair share between the live sweeps of a cluster: how many trials a driver keeps first in line. Decisions only.

All sweeps of a cluster send to one trial queue, which RabbitMQ serves by
message priority, then in order. A sweep alone keeps its backlog (the
driver's window) at the low priority, as ever. When other sweeps are live
(:mod:`mlframework.sweep.wire.lab`), every driver stops growing its backlog
and keeps at most its missing share waiting at the high priority: trials
that go ahead of every backlog, so the next slot that frees goes to a sweep
below its share. A sweep's share of the slots is ``slots * share / sum of the
shares`` of the live sweeps of the highest ``--priority`` that still have
trials to send; a sweep of a lower priority sends nothing new until those run
out (its trials already queued or running are left alone). When nobody keeps
a trial at the high priority, the backlogs run: no slot idles while a sweep
has trials waiting.

The cluster's slots are estimated from what the drivers see (:class:`SlotGauge`):
the most trials running at once, among all live sweeps, over the last minutes.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

#: Message priorities on the trial queue (its ``x-max-priority`` is ``URGENT``).
BACKLOG = 0
URGENT = 1


@dataclass(frozen=True)
class Claim:
    """A live sweep's claim on the cluster's slots."""

    sweep: str
    share: float = 1.0
    priority: int = 0
    running: int = 0
    wants: bool = True  # it has trials left to send


@dataclass(frozen=True)
class Allowance:
    """What a driver may send now."""

    urgent: int  # trials to keep waiting at the high priority (ahead of every backlog)
    backlog: bool  # whether its low-priority backlog may grow (it is alone)
    fair_slots: float | None = None  # its share of the slots (None: alone)


def allowance(me: Claim, others: Sequence[Claim], slots: int) -> Allowance:
    """How many trials ``me`` keeps first in line, given the other live sweeps and the cluster's ``slots``."""
    rivals = [claim for claim in others if claim.wants]
    if not rivals:
        return Allowance(urgent=0, backlog=True)
    if not me.wants:
        return Allowance(urgent=0, backlog=False)
    top = max(claim.priority for claim in [me, *rivals])
    if me.priority < top:
        return Allowance(urgent=0, backlog=False, fair_slots=0.0)
    shares = me.share + sum(claim.share for claim in rivals if claim.priority == top)
    fair = max(1, slots) * me.share / shares
    missing = fair - me.running
    return Allowance(urgent=max(0, math.ceil(missing - 1e-9)), backlog=False, fair_slots=fair)


class SlotGauge:
    """The cluster's trial slots as the drivers see them: the most trials running at once in the last minutes.

    Underestimating would let a dead driver's backlog take the slots its share
    left; overestimating only keeps a trial or two more first in line. So the
    peak is kept for :attr:`window` seconds, and other drivers' estimates count.
    """

    def __init__(self, window: float = 600.0) -> None:
        self.window = window
        self._peaks: deque[tuple[float, int]] = deque()  # (when, busy slots), busy slots decreasing

    def observe(self, busy: int, now: float | None = None) -> None:
        """``busy`` slots were running trials at once (``now``: time.monotonic())."""
        now = time.monotonic() if now is None else now
        while self._peaks and self._peaks[-1][1] <= busy:
            self._peaks.pop()
        self._peaks.append((now, busy))
        while self._peaks and now - self._peaks[0][0] > self.window:
            self._peaks.popleft()

    @property
    def slots(self) -> int:
        """The estimate (at least 1)."""
        return max(1, self._peaks[0][1]) if self._peaks else 1
