"""Recovery decisions without a broker: retries, --max-starts, leases, returned batches and lost trials.

The same behaviour with real workers killed under it is in tests/integration/test_reliability.py
and test_long_trials.py; these pin each decision down in milliseconds.
"""

from __future__ import annotations

from mlframework.statuses import FAILURE, SUCCESS
from mlframework.sweep.driver.recovery import (
    LEASE_CHECK_INTERVAL,
    Finish,
    Recovery,
    Start,
    attempt_summary,
    next_attempt,
    to_send_again,
    trials_held,
    unaccounted,
)
from mlframework.sweep.wire.protocol import LeasedEvent, StartedEvent, TrialRef


def started(trial: str = "t0003", attempt: int = 1, pid: int = 100, worker: str = "w1@host") -> StartedEvent:
    event = StartedEvent(
        type="started",
        trial=trial,
        index=int(trial[1:]),
        attempt=attempt,
        host="host",
        gpu=None,
        pid=pid,
        redelivered=pid != 100,
        time=1000.0 + pid,
    )
    event["worker"] = worker
    return event


def leased(trial: str = "t0001", lease_s: float = 600.0, worker: str = "w1@host") -> LeasedEvent:
    return LeasedEvent(
        type="leased", trial=trial, index=int(trial[1:]), attempt=2, worker=worker, pid=7, lease_s=lease_s, time=0.0
    )


# -- --max-starts -------------------------------------------------------------------------------


def test_a_trial_that_killed_its_worker_max_starts_times_is_given_up_on_the_next_start():
    recovery = Recovery(max_starts=3)
    verdicts = [recovery.started(started(pid=100 + n), recorded=False) for n in range(4)]
    assert verdicts == [Start.RUNNING, Start.RUNNING, Start.RUNNING, Start.GIVE_UP]
    reason = recovery.give_up_reason("t0003", 1)
    assert "died 3 times" in reason and "after 3 starts" in reason
    # Its FAILURE record is final: no retry, even with --retries left.
    assert Recovery(retries=2, max_starts=3).finished(False, set(), 1, FAILURE, final=True) is Finish.RECORD


def test_the_same_start_event_delivered_again_after_a_reconnect_is_not_another_start():
    recovery = Recovery(max_starts=1)
    event = started()
    assert recovery.started(event, recorded=False) is Start.RUNNING
    for _ in range(5):
        assert recovery.started(dict(event), recorded=False) is Start.REPEAT  # type: ignore[arg-type]
    assert recovery.starts[("t0003", 1)] == 1


def test_starts_count_per_attempt_and_a_recorded_trial_is_never_given_up():
    recovery = Recovery(max_starts=1)
    assert recovery.started(started(attempt=1, pid=100), recorded=False) is Start.RUNNING
    assert recovery.started(started(attempt=2, pid=101), recorded=False) is Start.RUNNING, "a retry starts afresh"
    assert recovery.started(started(attempt=2, pid=102), recorded=True) is Start.RUNNING, "recorded: nothing to stop"
    assert recovery.started(started(attempt=2, pid=103), recorded=False) is Start.GIVE_UP


# -- --retries ------------------------------------------------------------------------------------


def test_a_failed_trial_is_sent_again_until_its_retries_are_spent_then_recorded():
    recovery = Recovery(retries=2)
    assert recovery.finished(False, set(), 1, FAILURE, final=False) is Finish.RETRY
    assert recovery.finished(False, {1}, 2, FAILURE, final=False) is Finish.RETRY
    assert recovery.finished(False, {1, 2}, 3, FAILURE, final=False) is Finish.RECORD
    assert Recovery(retries=0).finished(False, set(), 1, FAILURE, final=False) is Finish.RECORD


def test_a_success_is_recorded_at_once_and_results_that_come_twice_are_ignored():
    recovery = Recovery(retries=3)
    assert recovery.finished(False, set(), 1, SUCCESS, final=False) is Finish.RECORD
    assert recovery.finished(True, set(), 1, SUCCESS, final=False) is Finish.RECORDED_ALREADY
    assert recovery.finished(False, {1}, 1, FAILURE, final=False) is Finish.ATTEMPT_ALREADY


def test_a_record_keeps_a_summary_of_each_earlier_attempt():
    attempt = {"attempt": 1, "status": FAILURE, "host": "h", "error": "exit code 1", "params": {"x": 1}}
    summary = attempt_summary(attempt)
    assert summary["error"] == "exit code 1" and summary["host"] == "h"
    assert "params" not in summary, "the parameters are the trial's, kept once"


# -- leases ---------------------------------------------------------------------------------------


def test_a_leased_trial_found_running_nowhere_twice_in_a_row_is_sent_again_to_another_worker():
    recovery = Recovery()
    recovery.leased(leased("t0001"))
    assert recovery.lease_check_due(recorded=set(), now=0.0)
    assert recovery.lost_leases(running=set(), now=0.0) == [], "one missed reply is a slow worker"
    assert not recovery.lease_check_due(recorded=set(), now=1.0), "the next check waits"
    assert recovery.lease_check_due(recorded=set(), now=LEASE_CHECK_INTERVAL)
    (lost,) = recovery.lost_leases(running=set(), now=LEASE_CHECK_INTERVAL)
    assert (lost.trial, lost.index, lost.attempt, lost.worker) == ("t0001", 1, 2, "w1@host")
    assert not recovery.leases, "sent again once, not at every check"


def test_a_leased_trial_seen_running_starts_counting_again():
    recovery = Recovery()
    recovery.leased(leased("t0001"))
    assert recovery.lost_leases(running=set(), now=0.0) == []
    assert recovery.lost_leases(running={"t0001"}, now=1.0) == []
    assert recovery.lost_leases(running=set(), now=2.0) == [], "the miss before the sighting does not count"


def test_leases_of_recorded_trials_are_forgotten_and_need_no_check():
    recovery = Recovery()
    recovery.leased(leased("t0001"))
    assert not recovery.lease_check_due(recorded={"t0001"}, now=0.0)
    assert not recovery.leases


def test_lease_checks_come_a_quarter_of_the_shortest_lease_apart_within_bounds():
    recovery = Recovery()
    recovery.leased(leased("t0001", lease_s=8.0))
    recovery.leased(leased("t0002", lease_s=600.0))
    recovery.lost_leases(running={"t0001", "t0002"}, now=100.0)
    assert recovery.next_lease_check == 102.0
    recovery.leases.pop("t0001")
    recovery.lost_leases(running={"t0002"}, now=200.0)
    assert recovery.next_lease_check == 200.0 + LEASE_CHECK_INTERVAL
    recovery.leased(leased("t0003", lease_s=1.0))
    recovery.lost_leases(running={"t0002", "t0003"}, now=300.0)
    assert recovery.next_lease_check == 301.0, "at least a second apart"


# -- returned batches, lost trials ------------------------------------------------------------------


def test_a_returned_batch_sends_its_unrecorded_trials_again_once():
    recovery = Recovery()
    trials = [TrialRef(sweep="s", id=f"t000{i}", index=i, attempt=1) for i in range(4)]
    assert recovery.first_return("s.t0000+4")
    assert [t["id"] for t in to_send_again(trials, recorded={"t0000", "t0002"})] == ["t0001", "t0003"]
    assert not recovery.first_return("s.t0000+4"), "the notice delivered again sends nothing twice"


def test_awaited_trials_with_no_event_and_no_record_are_the_candidates_for_lost():
    assert unaccounted({"t0003", "t0001", "t0002", "t0004"}, seen={"t0002"}, recorded={"t0004"}) == ["t0001", "t0003"]
    assert next_attempt([]) == 1 and next_attempt([{"attempt": 1}, {"attempt": 2}]) == 3


def test_trials_held_reads_single_and_batch_messages_of_this_sweep_only():
    listings = {
        "w1@a": [
            {"kwargs": {"params": {}, "trial": {"sweep": "mine", "id": "t0001", "index": 1, "attempt": 1}}},
            {"kwargs": {"batch": [{"params": {}, "trial": {"sweep": "mine", "id": f"t000{i}"}} for i in (2, 3)]}},
        ],
        "w2@b": [
            {"kwargs": {"params": {}, "trial": {"sweep": "other", "id": "t0009"}}},
            {"kwargs": "not a mapping"},
        ],
    }
    assert trials_held(listings, "mine") == {"t0001", "t0002", "t0003"}
    assert trials_held(None, "mine") == set(), "no worker answered"
