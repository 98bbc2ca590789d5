"""The systems ours is compared with, each a script run as a subprocess (see bench/context.py).

Every script takes ``--runs R`` and the size of the work, does its own set-up
once, times each run and prints one JSON line last: ``{"walls": [...], ...}``.
``pool.py`` and ``celery_plain.py`` need only the framework's venv; ``ray_tune.py``
and ``optuna_peer.py`` run in ``bench/.venv-peers``.
"""
