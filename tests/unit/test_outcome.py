"""A trial that does not succeed makes its Celery task FAILURE (what Flower shows), once, without retry."""

from __future__ import annotations

import sys

import pytest
from celery import Celery

from mlframework.sweep.trials import tasks
from mlframework.sweep.wire.outcome import TrialNotSucceeded, raise_unless_succeeded


@pytest.fixture
def app(monkeypatch):
    app = Celery("t", set_as_current=False)
    app.conf.update(task_always_eager=True)
    published: list[dict] = []

    class Publisher:
        def publish(self, sweep_id, event, persistent=True):
            published.append(event)

    monkeypatch.setattr(tasks, "_publisher", lambda app: Publisher())
    # No broker in a unit test: every sweep counts as live (tests/integration/test_ended_sweeps.py tests the check).
    monkeypatch.setattr(tasks.liveness, "is_live", lambda app, sweep_id, epoch: True)
    app.published = published  # type: ignore[attr-defined]
    return app


def _task(app, fn, name):
    tasks.task(fn, name=name)
    return app.tasks[name]


def fail(trial):
    if trial.params.get("x") == 1:
        raise tasks.TrialFailed("exit code 1", 1)
    return {"acc": 0.5}


def test_a_failed_trial_task_ends_failure_after_its_record_went_out(app):
    task = _task(app, fail, "unit_outcome_one")
    result = task.apply(kwargs={"params": {"x": 1}, "trial": {"sweep": "s1", "id": "t1", "index": 1}})
    assert result.state == "FAILURE"
    assert isinstance(result.result, TrialNotSucceeded) and "t1 FAILURE (exit code 1)" in str(result.result)
    assert [e["type"] for e in app.published if e["type"] == "finished"] == ["finished"]
    assert TrialNotSucceeded in task.throws and not getattr(task, "autoretry_for", ())
    ok = task.apply(kwargs={"params": {"x": 0}, "trial": {"sweep": "s1", "id": "t0", "index": 0}})
    assert ok.state == "SUCCESS" and ok.result == {"trial": "t0", "status": "SUCCESS"}


def test_a_batch_with_one_failed_trial_runs_them_all_then_ends_failure(app):
    task = _task(app, fail, "unit_outcome_batch")
    batch = [{"params": {"x": i}, "trial": {"sweep": "s2", "id": f"t{i}", "index": i}} for i in range(3)]
    result = task.apply(kwargs={"batch": batch})
    assert result.state == "FAILURE" and "t1 FAILURE" in str(result.result) and "t0" not in str(result.result)
    finished = [e for chunk in app.published for e in chunk.get("events", []) if e["type"] == "finished"]
    assert [e["trial"] for e in finished] == ["t0", "t1", "t2"]


def test_pruned_counts_as_not_succeeded():
    with pytest.raises(TrialNotSucceeded, match="t3 PRUNED"):
        raise_unless_succeeded([{"trial": "t2", "status": "SUCCESS"}, {"trial": "t3", "status": "PRUNED"}])
    raise_unless_succeeded([{"trial": "t2", "status": "SUCCESS"}])


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
