"""Optuna: every grid point enqueued (``enqueue_trial``), then optimized with 2 slots.

    optuna_peer.py inprocess --trials 2000 --runs 3   # in-memory storage, optimize(n_jobs=2)
    optuna_peer.py journal   --trials 2000 --runs 3   # a journal file, 2 forked processes

The clock covers creating the study, enqueuing the trials and running them;
in journal mode also forking the two worker processes (optuna is imported
before the clock, as a running cluster's workers would have it).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tempfile
import time

import optuna

try:  # optuna >= 4
    from optuna.storages.journal import JournalFileBackend
except ImportError:  # optuna 3
    from optuna.storages import JournalFileStorage as JournalFileBackend


def objective(trial: optuna.Trial) -> float:
    return float(trial.suggest_int("x", 0, 10**9))


def _work(path: str, study_name: str, trials: int) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.JournalStorage(JournalFileBackend(path))
    study = optuna.load_study(study_name=study_name, storage=storage)
    study.optimize(objective, n_trials=trials)


def inprocess(trials: int, slots: int) -> int:
    study = optuna.create_study(direction="maximize")
    for i in range(trials):
        study.enqueue_trial({"x": i})
    study.optimize(objective, n_trials=trials, n_jobs=slots)
    return len(study.trials)


def journal(trials: int, slots: int, directory: str, run: int) -> int:
    path = os.path.join(directory, f"journal-{run}.log")
    storage = optuna.storages.JournalStorage(JournalFileBackend(path))
    study = optuna.create_study(study_name=f"run{run}", storage=storage, direction="maximize")
    for i in range(trials):
        study.enqueue_trial({"x": i})
    share = [trials // slots + (1 if k < trials % slots else 0) for k in range(slots)]
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_work, args=(path, study.study_name, n)) for n in share]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
        assert worker.exitcode == 0, worker.exitcode
    return len(study.trials)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["inprocess", "journal"])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--slots", type=int, default=2)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    walls = []
    with tempfile.TemporaryDirectory(prefix="bench-optuna-") as directory:
        for run in range(args.runs):
            started = time.perf_counter()
            if args.mode == "inprocess":
                done = inprocess(args.trials, args.slots)
            else:
                done = journal(args.trials, args.slots, directory, run)
            walls.append(time.perf_counter() - started)
            assert done == args.trials, (done, args.trials)
    print(json.dumps({"walls": walls, "trials": args.trials, "version": optuna.__version__}))


if __name__ == "__main__":
    main()
