"""What a sweep is and how it runs, one sub-package per role.

Imports run downhill only (checked by the import-linter contracts in ``setup.cfg``)::

    driver/   run, loop, dispatch, recovery, lock, cancel, reproduce: one sweep from start to end
    search/   an Optuna study, the trial source it feeds, its journal storage, our pruners
    records/  what a sweep leaves on disk, read back: results, catalog, ranking, exports
    trials/   the worker side: tasks, a trial, its runner and environment, scalars, GPU use, provenance
    wire/     Celery app, protocol and events between driver and workers, ids, liveness, control
    params/   the parameter grammar: grids and search spaces in parameters.yml, rendered as arguments (pure)
"""
