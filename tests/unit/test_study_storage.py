"""The study's journal as the driver keeps it: Optuna's own format, what Optuna would read, no scan for enqueued trials."""

from __future__ import annotations

import logging

import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from mlframework.exceptions import SweepError
from mlframework.sweep.search.storage import DriverJournal, open_study_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _optunas_view(path):
    """The journal read by Optuna's own file backend, as another program (or an older mlframework) would."""
    return optuna.load_study(study_name="s", storage=optuna.storages.JournalStorage(JournalFileBackend(str(path))))


def _snapshot(study):
    return [
        (t.number, t.state, t.params, t.value, dict(t.intermediate_values), t.user_attrs, t.system_attrs)
        for t in study.get_trials(deepcopy=False)
    ]


# One step of a driver's life with its study: (what, trial it is about, a value).
_STEPS = st.lists(
    st.tuples(
        st.sampled_from(["ask", "report", "attr", "tell", "fail", "prune", "reopen"]),
        st.integers(0, 5),
        st.floats(-1e6, 1e6, allow_nan=False),
    ),
    max_size=30,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=_STEPS)
def test_what_the_driver_sees_is_what_optuna_reads_from_the_file(tmp_path_factory, steps):
    path = tmp_path_factory.mktemp("journal") / "study.journal"

    def study_of(storage):
        return optuna.create_study(study_name="s", storage=storage, load_if_exists=True, direction="maximize")

    storage = open_study_storage(path)
    study = study_of(storage)
    running: list[int] = []
    for what, pick, value in steps:
        if what == "ask":
            trial = study.ask()
            trial.suggest_float("x", -1, 1)
            trial.suggest_categorical("kind", ["a", "b"])
            running.append(trial.number)
        elif what == "reopen":
            storage.journal.close()
            storage = open_study_storage(path)
            study = study_of(storage)
        elif running:
            number = running[pick % len(running)]
            trial_id = study.get_trials(deepcopy=False)[number]._trial_id
            if what == "report":
                storage.set_trial_intermediate_value(trial_id, len(study.trials[number].intermediate_values), value)
            elif what == "attr":
                storage.set_trial_user_attr(trial_id, "params", {"x": value, "layers": (64, 64)})
            else:
                running.remove(number)
                if what == "tell":
                    study.tell(number, value)
                else:
                    study.tell(number, state=TrialState.FAIL if what == "fail" else TrialState.PRUNED)
    assert _snapshot(study) == _snapshot(_optunas_view(path))
    storage.journal.close()


def test_an_enqueued_trial_is_still_asked_first_also_after_a_reopen(tmp_path):
    path = tmp_path / "study.journal"
    storage = open_study_storage(path)
    study = optuna.create_study(study_name="s", storage=storage)
    study.ask()
    study.enqueue_trial({"x": 0.25})
    storage.journal.close()
    again = optuna.load_study(study_name="s", storage=open_study_storage(path))
    assert again.ask().suggest_float("x", 0, 1) == 0.25
    fresh = open_study_storage(tmp_path / "other.journal")
    study = optuna.create_study(study_name="s", storage=fresh)
    study.enqueue_trial({"x": 0.5})
    assert study.ask().suggest_float("x", 0, 1) == 0.5


def test_a_last_line_cut_short_by_a_crash_is_dropped_and_the_file_stays_readable(tmp_path, caplog):
    path = tmp_path / "study.journal"
    storage = open_study_storage(path)
    study = optuna.create_study(study_name="s", storage=storage)
    study.tell(study.ask(), 1.0)
    storage.journal.close()
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"op_code":4,"worker_id":"x","study_id":0,"datetime_st')
    with caplog.at_level(logging.WARNING):
        storage = open_study_storage(path)
    assert "a line cut short" in caplog.text and path.read_bytes() == whole
    study = optuna.load_study(study_name="s", storage=storage)
    study.tell(study.ask(), 2.0)
    storage.journal.close()
    assert [t.value for t in _optunas_view(path).trials] == [1.0, 2.0]


def test_a_damaged_line_names_the_file_and_line(tmp_path):
    path = tmp_path / "study.journal"
    path.write_text('{"op_code":0}\nnot json\n{"op_code":0}\n')
    with pytest.raises(SweepError, match=r"study\.journal:2: not a journal line"):
        DriverJournal(path)


def test_appended_logs_come_back_once_and_as_the_file_gives_them(tmp_path):
    journal = DriverJournal(tmp_path / "study.journal")
    journal.append_logs([{"op_code": 1, "value": (1, 2), "keys": {3: "a"}}])
    assert list(journal.read_logs(0)) == [{"op_code": 1, "value": [1, 2], "keys": {"3": "a"}}]
    assert list(journal.read_logs(1)) == []
    assert [log["op_code"] for log in journal.read_logs(0)] == [1], "an earlier log asked again is read from the file"
    journal.close()
