"""mlframework: hyperparameter sweeps across the machines you can reach over SSH.

The public API a project's ``tasks.py`` and a notebook use::

    import mlframework as mlf

    echo = mlf.echo_task()                   # the seed's `echo` task
    train = mlf.train_task("train_mnist.py") # the seed's `train` task
    run = mlf.command_task("{python} train.py {args} --out_dir={trial_dir}/out", name="run")

    @mlf.task
    def my_task(trial):                      # a task of your own
        trial.print("hello from", trial.host)
        return {"accuracy": 0.9}

Names are imported lazily so that ``from mlframework import metrics`` in a
training script costs nothing and needs no Celery.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Trial": "mlframework.sweep.trials.trial",
    "TrialFailed": "mlframework.sweep.trials.trial",
    "echo_task": "mlframework.sweep.trials.tasks",
    "task": "mlframework.sweep.trials.tasks",
    "train_task": "mlframework.sweep.trials.tasks",
    "command_task": "mlframework.sweep.trials.tasks",
    "ArgumentStyle": "mlframework.sweep.params.arguments",
    "run_sweep": "mlframework.sweep.driver.run",
    "SweepSpec": "mlframework.sweep.driver.spec",
    "load_grid": "mlframework.sweep.params.grid_file",
    "grid_from_mapping": "mlframework.sweep.params.grid_file",
}

__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'mlframework' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
