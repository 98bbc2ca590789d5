"""The driver's loop for one session of a sweep: send trials, consume events, record, recover, reconnect.

What to send comes from a trial source and is paced by :mod:`mlframework.sweep.driver.dispatch`;
what to do when a trial fails, keeps killing its worker, or is lost is decided by
:mod:`mlframework.sweep.driver.recovery`; events arrive typed (:mod:`mlframework.sweep.wire.protocol`).
This module does the I/O those decisions call for.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kombu.exceptions import OperationalError

from mlframework.statuses import FAILURE
from mlframework.sweep.driver import lock as driver_lock
from mlframework.sweep.driver.dispatch import Dispatcher, GridSource, Pacing, TrialSource, trial_controls
from mlframework.sweep.driver.fairshare import BACKLOG, URGENT, Allowance, Claim, SlotGauge, allowance
from mlframework.sweep.driver.recovery import (
    LOST_CHECK_INTERVAL,
    Finish,
    Recovery,
    Start,
    attempt_summary,
    next_attempt,
    to_send_again,
    trials_held,
    unaccounted,
)
from mlframework.sweep.driver.spec import SweepObserver, SweepOutcome, SweepSpec, sweep_total
from mlframework.sweep.params.arguments import false_warning
from mlframework.sweep.params.command import parameter_values
from mlframework.sweep.records.catalog import cancel_recorded
from mlframework.sweep.records.ranking import pick_metric
from mlframework.sweep.records.record import TrialRecord
from mlframework.sweep.records.results import ResultsStore
from mlframework.sweep.trials import tasks as task_registry
from mlframework.sweep.trials.provenance import save_environment, with_project
from mlframework.sweep.wire import lab, liveness
from mlframework.sweep.wire.app import TRIAL_QUEUE, BrokerSettings
from mlframework.sweep.wire.connection import DRIVER_HEARTBEAT, RECONNECT_SECONDS, connect
from mlframework.sweep.wire.events import EventStream
from mlframework.sweep.wire.ids import task_id, trial_id
from mlframework.sweep.wire.protocol import (
    Event,
    FinishedEvent,
    ReturnedEvent,
    StartedEvent,
    decode,
)

log = logging.getLogger(__name__)


class SweepRun:
    """One driver session of a sweep: dispatch, consume events, record, retry."""

    def __init__(
        self,
        app: Any,
        broker: BrokerSettings,
        connection: Any,
        spec: SweepSpec,
        sweep_id: str,
        store: ResultsStore,
        meta: dict[str, Any],
        observer: SweepObserver,
        heartbeat: float = DRIVER_HEARTBEAT,
    ) -> None:
        self.app = app
        self.heartbeat = heartbeat
        self.broker = broker
        self.connection = connection
        self.spec = spec
        self.sweep_id = sweep_id
        self.store = store
        self.meta = meta
        self.observer = observer
        self.watches_output = observer.watches_output
        self.total = sweep_total(spec)
        self.resend_in_flight = False
        self.seen: set[str] = set()  # trials with any event in this session
        self.awaiting: set[str] = set()  # sent before this session, not recorded: awaited
        self.drain_first = False  # record the events already queued before sending anything
        self.cancelled = False  # a "cancelled" event came: `mlframework cancel` ended the sweep
        self.lock: driver_lock.DriverLock | None = None  # this driver's hold on the sweep (sweep/driver/lock.py)
        self.recovery = Recovery(spec.retries, spec.max_starts)
        self.pacing = Pacing(spec.max_batch)
        self.source: TrialSource | None = None
        self.dispatcher: Dispatcher | None = None
        # Fair share with the other live sweeps of the broker (sweep/driver/fairshare.py, sweep/wire/lab.py)
        self.registry: lab.LabRegistry | None = None
        self.gauge = SlotGauge()
        self.running: dict[str, lab.RunningTrial] = {}  # trials started and not finished, this session
        self.urgent: set[str] = set()  # trials sent first in line that no worker took yet
        self.next_lab_poll = 0.0
        self.next_announce = 0.0
        self.worker_slots: int | None = None  # the pools' sizes, as the workers say (lab.worker_slots)
        self.started_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        for record in list(store.records.values())[-20:]:
            self.pacing.observe(record.get("duration_s"))

    def _outstanding(self) -> int:
        """Trials sent (this session or before) and not recorded yet."""
        assert self.dispatcher is not None
        return self.dispatcher.sent + len(self.awaiting) - len(self.store.records) + self.store.recorded_before

    def _allowance(self) -> Allowance:
        """What fair share with the other live sweeps allows (alone: the backlog, as ever)."""
        registry, source = self.registry, self.source
        assert source is not None
        if registry is None:
            return Allowance(urgent=0, backlog=True)
        others = registry.others()
        claims = [
            Claim(
                str(other.get("sweep")),
                float(other.get("share") or 1.0),
                int(other.get("priority") or 0),
                int(other.get("running") or 0),
                bool(other.get("wants")),
            )
            for other in others
        ]
        me = Claim(self.sweep_id, self.spec.share, self.spec.priority, len(self.running), not source.exhausted)
        return allowance(me, claims, self._slots())

    def _slots(self) -> int:
        """The cluster's trial slots: what the workers say, else the most this driver and the others saw busy."""
        if self.worker_slots:
            return self.worker_slots
        others = self.registry.others() if self.registry is not None else []
        return max([self.gauge.slots, *(int(other.get("slots") or 0) for other in others)])

    def _lookahead(self, unsent: int) -> int:
        """Trials a driver on a shared broker keeps queued beyond its running ones: about a message for half the slots.

        Little enough that a sweep starting later finds its first trial run on one of the next few free slots;
        enough that a slot that frees finds a trial waiting while the driver sends the next.
        """
        return max(1, math.ceil(self._slots() / 2)) * max(1, self.pacing.batch_size(unsent))

    def _room(self, window: int) -> int:
        """How many trials may be sent now to the backlog (0 while other sweeps share the cluster)."""
        dispatcher, source = self.dispatcher, self.source
        assert dispatcher is not None and source is not None
        if source.exhausted or not self._allowance().backlog:
            return 0
        outstanding, unsent = self._outstanding(), self.total - source.next_index
        room = source.room(outstanding)
        if room is not None:
            return room
        if self.registry is not None:
            window = min(window, len(self.running) + self._lookahead(unsent))
        return self.pacing.room(window, outstanding, unsent, len(self.seen), dispatcher.sent)

    def _urgent_room(self) -> int:
        """How many trials to send first in line now: this sweep's missing share, while others share the cluster."""
        source = self.source
        assert source is not None
        if self.registry is None or source.exhausted:
            return 0
        share = self._allowance()
        if share.backlog:
            return 0
        room = share.urgent - len(self.urgent)
        limit = source.room(self._outstanding())
        return max(0, room if limit is None else min(room, limit))

    def _done(self) -> bool:
        assert self.source is not None
        return self.source.done(len(self.store.records))

    def _dispatch(self, window: int) -> None:
        assert self.dispatcher is not None and self.source is not None
        urgent = self._urgent_room()
        if urgent > 0:  # one trial a message: a worker that takes it is one slot for this sweep
            self.dispatcher.priority = URGENT
            if self.dispatcher.send(urgent):
                self.urgent.update(self.dispatcher.last_sent)
                self.store.note_dispatched(self.source.next_index)
            return
        room = self._room(window)
        pacing = self.pacing
        batch_size = (lambda unsent: max(1, pacing.batch_size(unsent))) if self.source.batched else (lambda _: 1)
        self.dispatcher.priority = None if self.registry is None else BACKLOG
        if room > 0 and self.dispatcher.send(room, batch_size):
            self.store.note_dispatched(self.source.next_index)

    # -- the lab: the other live sweeps of the broker --------------------------------

    def _state(self) -> lab.SweepState:
        """What this driver announces to the other sweeps and to `mlframework status`."""
        assert self.source is not None
        done, running = len(self.store.records), len(self.running)
        seconds = self.pacing.trial_seconds
        return {
            "sweep": self.sweep_id,
            "project": Path(self.spec.project_dir).name,
            "owner": str(self.meta.get("owner") or lab.owner()),
            "share": self.spec.share,
            "priority": self.spec.priority,
            "total": self.total,
            "done": done,
            "running": running,
            "queued": max(0, self._outstanding() - running),
            "wants": not self.source.exhausted,
            "eta_s": (self.total - done) * seconds / running if seconds is not None and running else None,
            "started_at": self.started_at,
            "slots": self._slots(),
            "running_trials": list(self.running.values())[:256],
        }

    def _join_lab(self, stream: EventStream) -> None:
        """Meet the other live sweeps of the broker before sending anything (RabbitMQ only)."""
        if not lab.supported(self.connection):
            return
        self.registry = lab.LabRegistry(self.connection, self.sweep_id)
        self._count_slots()
        self.registry.announce(self._state())  # the others stop growing their backlogs now
        self.registry.hello()
        stream.drain(timeout=lab.HELLO_SECONDS)  # their answers (and any event of this sweep) are handled
        self.next_announce = time.monotonic() + lab.ANNOUNCE_SECONDS

    def _lab_tick(self) -> None:
        """Forget the sweeps gone silent; announce this one once a period (or at once to a newcomer).

        What the others announce arrives while the loop drains its events; nothing here waits for the broker.
        """
        registry = self.registry
        if registry is None:
            return
        now = time.monotonic()
        if now >= self.next_lab_poll:
            registry.forget_silent()
            self.next_lab_poll = now + 0.25
            others = registry.others()
            self.gauge.observe(len(self.running) + sum(int(other.get("running") or 0) for other in others), now)
        if registry.hello_received or now >= self.next_announce:
            registry.hello_received = False
            registry.announce(self._state())
            self.next_announce = now + lab.ANNOUNCE_SECONDS

    def _count_slots(self) -> None:
        """Ask the workers how many trials they run at once (when joining the lab and after a reconnect)."""
        try:
            self.worker_slots = lab.worker_slots(self.app, self.connection) or self.worker_slots
        except self._connection_errors():
            log.debug("counting the workers' slots failed", exc_info=True)

    def _leave_lab(self) -> None:
        """Tell the others this sweep no longer claims slots (its driver ends); the connection's end closes the rest."""
        registry, self.registry = self.registry, None
        if registry is None:
            return
        try:
            registry.goodbye()  # a publish: nothing waits for the broker's answer
        except Exception:  # the broker may be gone: the others then forget this sweep after EXPIRE_SECONDS
            log.debug("saying goodbye to the lab failed", exc_info=True)

    def unrecorded_below(self, end: int) -> set[str]:
        """Trials of grid index < ``end`` with no record."""
        return {trial_id(i, self.total) for i in range(end)} - set(self.store.records)

    # -- events ---------------------------------------------------------------

    def on_message(self, body: Any) -> None:
        """Handle one consumed message (an event, or a batch of them)."""
        event = decode(body)
        if event is not None:
            self.on_event(event)

    def on_event(self, event: Event) -> None:
        """Handle one typed event."""
        if event["type"] == "events":  # a batch's events, in order
            for each in event["events"]:
                self.on_event(each)
            return
        if event["type"] == "returned":
            self._returned(event)
            return
        if event["type"] == "cancelled":
            log.warning("sweep %s was cancelled (%s): the driver stops", self.sweep_id, event["by"])
            self.cancelled = True
            return
        trial = event["trial"]
        self.seen.add(trial)
        self.urgent.discard(trial)
        if event["type"] == "started":
            self._started(event)
        elif event["type"] == "output":
            self.store.append_output(trial, event["chunks"])
            if self.watches_output:
                for stream, text in event["chunks"]:
                    self.observer.trial_output_lines(trial, event["host"], stream, text.split("\n"))
        elif event["type"] == "finished":
            self._finished(event)
        elif event["type"] == "leased":
            self.recovery.leased(event)
        elif event["type"] == "metrics":
            self.observer.trial_metrics(trial, event["host"], event["history"])
            assert self.source is not None
            self.source.report(trial, event["index"], event["history"])

    def _started(self, event: StartedEvent) -> None:
        save_environment(self.store.directory, event)
        trial, attempt = event["trial"], event["attempt"]
        verdict = self.recovery.started(event, trial in self.store.records)
        if verdict is Start.REPEAT:
            return
        if verdict is Start.GIVE_UP:
            log.warning(
                "trial %s started %d times without finishing: recorded FAILURE",
                trial,
                self.recovery.starts[(trial, attempt)],
            )
            # Workers drop a revoked task on arrival and stop it where it runs now.
            self.app.control.revoke(task_id(self.sweep_id, trial, attempt), terminate=True, signal="SIGKILL")
            assert self.source is not None
            given_up: dict[str, Any] = {
                **event,
                "type": "finished",
                "status": FAILURE,
                "params": self.source.params(event["index"]),
                "duration_s": None,
                "exit_code": None,
                "error": self.recovery.give_up_reason(trial, attempt),
            }
            self._finished(given_up, final=True)  # type: ignore[arg-type]  # a started event made a record
            return
        self.running[trial] = {
            "trial": trial,
            "host": str(event.get("host") or ""),
            "worker": str(event.get("worker") or ""),
            "gpu": event.get("gpu"),
            "since": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        self.observer.trial_started(dict(event))

    def _returned(self, event: ReturnedEvent) -> None:
        """A lost worker's batch came back: send its unrecorded trials again, one per message."""
        batch = event["batch"]
        if not self.recovery.first_return(batch):
            return
        assert self.dispatcher is not None
        again = to_send_again(event["trials"], self.store.records)
        log.warning("a worker was lost during batch %s: %d unrecorded trial(s) sent again", batch, len(again))
        for trial in again:
            self.dispatcher.resend(int(trial["index"]), int(trial["attempt"]))

    def _finished(self, event: FinishedEvent, final: bool = False) -> None:
        trial, attempt = event["trial"], event["attempt"]
        self.running.pop(trial, None)
        if event.get("stopped") == "cancelled":  # stopped by `mlframework cancel`: no record, --resume runs it
            log.info("trial %s was stopped by a cancel: not recorded", trial)
            return
        self.pacing.observe(event.get("duration_s"))
        earlier = self.store.attempts.get(trial, [])
        verdict = self.recovery.finished(
            trial in self.store.records, {int(a.get("attempt") or 1) for a in earlier}, attempt, event["status"], final
        )
        if verdict is Finish.RECORDED_ALREADY:
            log.info("ignoring another result for trial %s", trial)
            return
        if verdict is Finish.ATTEMPT_ALREADY:
            log.info("ignoring a second result for attempt %d of trial %s", attempt, trial)
            return
        if verdict is Finish.RETRY:
            self.store.record_attempt(event)
            self.store.append_output(
                trial, [["stdout", f"[mlframework] attempt {attempt} failed: {event.get('error')}; sent again"]]
            )
            assert self.dispatcher is not None
            self.dispatcher.resend(event["index"], attempt + 1, avoid=event.get("worker"))
            self.observer.trial_retried(dict(event), self.spec.retries)
            return
        record: TrialRecord = {**event, "attempts": [attempt_summary(a) for a in earlier]}
        assert self.source is not None
        record["status"] = self.source.tell(event["index"], record)
        record = with_project(record, self.meta.get("project_revision"))
        if self.store.record(record):
            self.observer.trial_finished(record)

    # -- lost trials ----------------------------------------------------------

    def resend_lost(self) -> None:
        """Send again the awaited trials that no queue holds and no worker runs."""
        candidates = unaccounted(self.awaiting, self.seen, self.store.records)
        if not candidates:
            return
        with self.connection.channel() as channel:
            queued = channel.queue_declare(TRIAL_QUEUE, passive=True).message_count
        if queued:
            return  # they may be among those: wait
        replies = self.app.control.inspect(timeout=2.0)
        held = trials_held(replies.active(), self.sweep_id) | trials_held(replies.reserved(), self.sweep_id)
        lost = [t for t in candidates if t not in held]
        if lost:
            log.warning(
                "%d trial(s) sent before the driver stopped are neither queued nor running: sent again", len(lost)
            )
        assert self.dispatcher is not None
        for trial in lost:
            self.dispatcher.resend(int(trial[1:]), next_attempt(self.store.attempts.get(trial, [])))
            self.dispatcher.sent += 1
            self.awaiting.discard(trial)

    def check_leases(self) -> None:
        """Send again the leased trials that no worker runs any more.

        A worker acknowledges a long trial's message early (``sweep/trials/lease.py``),
        so the broker no longer gives it back when that worker or its pool
        process dies: the driver does (``Recovery.lost_leases`` decides).
        """
        if not self.recovery.lease_check_due(self.store.records, time.monotonic()):
            return
        running = trials_held(self.app.control.inspect(timeout=2.0).active(), self.sweep_id)
        assert self.dispatcher is not None
        for lease in self.recovery.lost_leases(running, time.monotonic()):
            log.warning(
                "trial %s, acknowledged early by %s, is running nowhere (worker killed?): sent again",
                lease.trial,
                lease.worker,
            )
            self.dispatcher.resend(lease.index, lease.attempt, avoid=lease.worker)

    # -- the broker connection -----------------------------------------------------

    def _connection_errors(self) -> tuple[type[BaseException], ...]:
        return (*self.connection.connection_errors, *self.connection.channel_errors, OSError, OperationalError)

    def _stream(self) -> EventStream:
        return EventStream(self.connection, self.sweep_id, self.on_message, before_ack=self.store.sync)

    def _reconnect(self, error: BaseException) -> EventStream:
        """A new connection and event consumer after the broker went away (a restart, a network cut).

        Unacknowledged events come again and are recorded once; trials in the
        broker's durable queue wait there meanwhile.
        """
        log.warning("lost the broker connection (%s); reconnecting to %s", error, self.broker.redacted_url())
        try:
            self.connection.release()
        except Exception:  # the old connection is already broken; closing it may fail too
            log.debug("closing the broken connection failed", exc_info=True)
        self.connection = connect(
            self.app, self.broker, timeout=RECONNECT_SECONDS, max_retries=None, heartbeat=self.heartbeat
        )
        if self.lock is not None:
            self.lock = driver_lock.acquire(self.connection, self.sweep_id)  # refused if another took over meanwhile
        if self.registry is not None:
            self.registry = lab.LabRegistry(self.connection, self.sweep_id)
            self._count_slots()
        stream = self._stream()
        log.warning("reconnected to the broker; the sweep goes on")
        return stream

    # -- the loop -------------------------------------------------------------

    def _open_source(self, start: int, epoch: int) -> None:
        """The sweep's trial source and its dispatcher; a search also picks up the trials it left untold."""
        spec = self.spec
        plan = spec.search
        asked = (  # read from output in any spelling
            spec.metric,
            plan.settings.prune_metric if plan else None,
            *(objective.name for objective in spec.objectives),
            *(constraint.name for constraint in spec.constraints),
        )
        command = spec.command.to_record() if spec.command is not None else None  # the parameters file's
        controls = trial_controls(Path(spec.results_root) / self.sweep_id, spec.trial_timeout, asked, command)
        if plan is None:
            self.source = GridSource(spec.grid, self.total, start=start, skip=self.store.records.keys())
            self.dispatcher = Dispatcher(self.app, spec.sent_task, self.sweep_id, self.source, controls, epoch)
            return
        from mlframework.sweep.search.source import open_search

        search = open_search(
            self.app, plan, spec.metric, spec.mode, self.sweep_id, self.store, self.total, spec.objectives,
            spec.constraints,
        )  # fmt: skip
        self.source = search
        self.dispatcher = Dispatcher(self.app, spec.sent_task, self.sweep_id, search, controls, epoch)
        for number in search.untold(self.store.records):
            trial = trial_id(number, self.total)
            if self.resend_in_flight:
                self.dispatcher.resend(number, next_attempt(self.store.attempts.get(trial, [])))
                self.dispatcher.sent += 1
            else:
                self.awaiting.add(trial)  # still queued or running somewhere: awaited (resend_lost checks)

    def drive(self, window: int, health_check: Callable[[], None] | None, start: int = 0) -> SweepOutcome:
        """Run the session until every trial is recorded, the sweep is cancelled, or an interrupt."""
        store, meta = self.store, self.meta
        interrupted = False
        try:
            epoch = int(meta.get("epoch") or 0)
            liveness.mark_live(self.connection, self.sweep_id, epoch)
            stream = self._stream()
            self._open_source(start, epoch)
            self._join_lab(stream)
            command = self.spec.command
            self.observer.argument_style = (
                command.argument_style if command is not None else task_registry.argument_style(self.spec.task)
            )
            dropped = false_warning(
                self.observer.argument_style, parameter_values(self.spec.parameters), in_file=command is not None
            )
            if dropped:
                log.warning("%s", dropped)  # a false that silently drops an option: said once, at the start
            self.observer.sweep_started(self.sweep_id, self.total, store.directory)
            if self.awaiting or self.drain_first:
                stream.drain(timeout=1.0)  # what finished while the driver was away
            next_lost_check = time.monotonic()
            # A sweep cancelled from elsewhere (`mlframework cancel`, sweep/driver/cancel.py) gets a "cancelled" event
            # on its event queue (on_event sets self.cancelled): no broker round trip here, which a frozen
            # broker would block before the heartbeat check could notice it.
            while not self._done() and not self.cancelled:
                try:
                    self._dispatch(window)
                    stream.drain(
                        timeout=0.1,
                        until=lambda: self._urgent_room() > 0 or self._room(window) > 0 or self._done(),
                    )
                    self.connection.heartbeat_check()
                    self._lab_tick()
                    if self.awaiting and time.monotonic() >= next_lost_check:
                        self.resend_lost()
                        next_lost_check = time.monotonic() + LOST_CHECK_INTERVAL
                    self.check_leases()
                except self._connection_errors() as exc:
                    stream = self._reconnect(exc)
                if health_check is not None:
                    health_check()
                self.observer.idle()
            stream.cancel()
            if not self.cancelled:  # a cancelled sweep keeps its event queue: --resume collects what is in it
                stream.delete_queue()
                liveness.end_sweep(self.connection, self.sweep_id, epoch, "finished")  # its leftover copies never run
            if self.lock is not None:
                self.lock.release(delete=not self.cancelled)
        except KeyboardInterrupt:
            interrupted = True
            # `mlframework cancel` of an embedded sweep ends its driver with SIGTERM, after recording the cancel
            self.cancelled = self.cancelled or cancel_recorded(store.directory)
            raise
        finally:
            self._leave_lab()
            store.close()
            if self.source is not None:
                self.source.close()
            records = list(store.records.values())
            metric, mode = pick_metric(records, self.spec.metric, self.spec.mode)
            searched = self.spec.search is not None and self.source is not None
            unfinished = not self._done() if searched else len(records) < self.total
            status = "cancelled" if self.cancelled else "interrupted" if interrupted or unfinished else "finished"
            outcome = SweepOutcome(
                self.sweep_id,
                store.directory,
                self.total,
                records,
                metric,
                mode,
                interrupted or self.cancelled,
                status=status,
                signalled=interrupted,
                objectives=self.spec.objectives,
                constraints=self.spec.constraints,
                search=self.spec.search.settings.describe() if self.spec.search is not None else "",
            )
            meta.update(
                status=status,
                finished_at=_dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                succeeded=outcome.succeeded,
                failed=outcome.failed,
                pruned=outcome.pruned,
                metric=metric,
                mode=mode,
            )
            store.write_sweep(meta)
            self.connection.release()
            if interrupted:  # the summary of what was recorded, before the interrupt goes on up
                self.observer.sweep_finished(outcome)
        self.observer.sweep_finished(outcome)
        return outcome
