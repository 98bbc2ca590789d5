"""The benchmark suite of issue 6: ours against plain Celery, Ray Tune, Optuna and the process-pool floor.

Run ``bench/run.sh`` (or ``python -m bench`` from the repository root with the
framework's venv); see bench/README.md.
"""
