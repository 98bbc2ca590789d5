"""Trial leases: a trial may run for hours on a broker that cuts unacknowledged deliveries.

Workers take trials with late acknowledgement (see :mod:`mlframework.sweep.wire.app`):
a trial's message stays unacknowledged while it runs, so that the broker gives
it back when its worker dies. RabbitMQ closes a channel whose delivery stays
unacknowledged longer than its ``consumer_timeout`` (30 minutes by default;
each channel checks once a minute, so the cut comes up to a minute late): the
worker loses its connection (Celery 5.7 even takes it for an unrecoverable
error and stops) and the trial is delivered again, to run a second time.
RabbitMQ 3.12's per-consumer ``x-consumer-timeout`` is not available on 3.10,
so the worker and the driver share the job instead:

* the worker (:class:`TrialLease`, a consumer bootstep in the worker's main
  process) takes a trial that has run ``mlframework_lease_seconds`` (default
  10 minutes, well below the 30-minute default ``consumer_timeout``) off the
  broker's hands: it first takes away the prefetch slot that the
  acknowledgement frees (one less, or no consuming at all when every pool
  process runs a leased trial), so no other trial waits behind the long one
  while other workers idle; then it tells the driver (a ``leased`` event);
  then it acknowledges the message. The late acknowledgement at the end and
  ``task_reject_on_worker_lost`` are no-ops for it (Celery acknowledges a
  request once). The slot comes back when the trial ends.
* the driver (``SweepRun.check_leases`` in :mod:`mlframework.sweep.driver.loop`, deciding with
  ``sweep/driver/recovery.py``)
  asks the workers which trials they run; a leased trial that two checks in a
  row find nowhere (its worker or its pool process was killed) is sent again.

Only AMQP brokers get leases: embedded mode's file broker has no timeout.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import bootsteps
from celery.worker.state import active_requests

from mlframework.sweep.wire.app import LEASE_SETTING
from mlframework.sweep.wire.events import EventPublisher
from mlframework.sweep.wire.protocol import leased_event, message_trials

log = logging.getLogger(__name__)

# How often the worker looks for trials due a lease, at most (seconds).
_TICK_MAX = 1.0


class TrialLease(bootsteps.StartStopStep):
    """Acknowledges trials that run longer than the lease, keeping the worker's share of trials."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        super().__init__(c, **kwargs)
        self.lease_s = float(c.app.conf.get(LEASE_SETTING) or 0)
        self.leased: list[Any] = []  # requests acknowledged early, still running
        self._qos: Any = None  # the QoS object the counts below belong to (a new one per connection)
        self._reduced = 0  # prefetch taken away from it for leased requests
        self._paused = False  # the task consumer cancelled: every pool process runs a leased trial
        self._tref: Any = None
        self._publisher: EventPublisher | None = None

    def start(self, c: Any) -> None:
        if self.lease_s <= 0 or c.connection.transport.driver_type != "amqp":
            return
        if self._publisher is None:
            self._publisher = EventPublisher(c.app)
        self.leased = [r for r in self.leased if r in active_requests]
        if self.leased:
            self._balance(c)  # after a reconnect: leased trials still running keep their slots
        self._tref = c.timer.call_repeatedly(min(_TICK_MAX, self.lease_s / 4), self._tick, (c,))

    def stop(self, c: Any) -> None:
        if self._tref is not None:
            self._tref.cancel()
            self._tref = None

    def shutdown(self, c: Any) -> None:
        self.stop(c)
        if self._publisher is not None:
            self._publisher.close()

    # -- the periodic check ----------------------------------------------------------

    def _tick(self, c: Any) -> None:
        try:
            self.leased = [r for r in self.leased if r in active_requests]  # ended ones give their slot back
            if self.leased or self._reduced or self._paused:
                self._balance(c)
            now = time.time()
            for request in tuple(active_requests):
                if self._due(c, request, now):
                    self._lease(c, request)
        except Exception:  # the timer must go on; the next tick tries again
            log.exception("trial lease check failed")

    def _due(self, c: Any, request: Any, now: float) -> bool:
        return (
            request not in self.leased
            and not request.acknowledged
            and request.task.acks_late
            and request.time_start is not None
            and now - request.time_start >= self.lease_s
            # A delivery of an earlier connection is back on the queue already: nothing to acknowledge.
            and request.message.channel is c.task_consumer.channel
            and bool(message_trials(request.kwargs))
        )

    def _lease(self, c: Any, request: Any) -> None:
        trials = message_trials(request.kwargs)  # one, or the batch of short trials the message carries
        trial = trials[0]
        assert self._publisher is not None
        self.leased.append(request)
        self._balance(c)  # before the acknowledgement frees the slot
        try:
            # Before the acknowledgement: a driver that is not told could not send the trials again.
            for each in trials:
                self._publisher.publish(
                    str(each["sweep"]), leased_event(each, c.hostname, request.worker_pid, self.lease_s, time.time())
                )
        except Exception as exc:  # the broker is away: try again at the next tick
            log.warning(
                "trial %s: could not tell the driver about its lease (%s); not acknowledged yet", trial["id"], exc
            )
            self.leased.remove(request)
            self._balance(c)
            return
        request.acknowledge()
        log.info(
            "trial %s of sweep %s has run %.0f s: acknowledged early (lease); the driver sends it again "
            "if this worker dies",
            trial["id"],
            trial["sweep"],
            time.time() - request.time_start,
        )

    def _balance(self, c: Any) -> None:
        """Prefetch as if each leased trial still held its message: one slot less per leased request."""
        if c.qos is not self._qos:  # a new connection: a fresh QoS, and a consumer that consumes
            self._qos, self._reduced, self._paused = c.qos, 0, False
        slots = c.pool.num_processes - len(self.leased)
        if slots <= 0:
            if not self._paused:
                c.task_consumer.cancel()  # prefetch 0 would mean no limit: stop consuming instead
                self._paused = True
                log.info("every pool process runs a leased trial: not taking trials until one ends")
            return
        wanted, qos = slots * c.prefetch_multiplier, c.qos
        if qos.value and qos.value > wanted:
            self._reduced += qos.value - wanted
            qos.decrement_eventually(qos.value - wanted)
        elif qos.value and qos.value < wanted and self._reduced:
            up = min(self._reduced, wanted - qos.value)
            self._reduced -= up
            qos.increment_eventually(up)
        qos.update()
        if self._paused:
            c.task_consumer.consume()
            self._paused = False
            log.info("a leased trial ended: taking trials again")
