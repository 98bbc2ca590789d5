"""The built-in task every worker has: it runs the command a sweep's parameters file gives.

A project with no tasks.py of its own names its command in the parameters file
(``mlframework: command: ...``, :mod:`mlframework.sweep.params.settings`). The driver sends
its trials to the task :data:`~mlframework.sweep.wire.protocol.COMMAND_TASK`, each message
carrying the command (``trial["command"]``); this module defines that task. Importing it
registers the task with Celery (the worker app imports it whether or not the project has a
tasks.py); it is not one of the project's tasks (``REGISTERED``).
"""

from __future__ import annotations

from typing import Any

from mlframework.sweep.params.command import fill
from mlframework.sweep.params.settings import FileCommand
from mlframework.sweep.trials.tasks import REGISTERED, task
from mlframework.sweep.trials.trial import Trial, TrialFailed
from mlframework.sweep.wire.protocol import COMMAND_TASK

__all__ = ["command_trial", "file_command"]


def command_trial(trial: Trial) -> None:
    """Run the trial's command (its message's ``command``) in its argument style, as ``command_task`` does."""
    if not trial.command:
        raise TrialFailed(f"the task message names no command: {COMMAND_TASK} runs a parameters file's command")
    command = FileCommand.from_record(trial.command, "the sweep's parameters file (mlframework: section)")
    trial.arguments = command.argument_style
    places = trial.places()
    trial.run(
        command.template.render(trial.options(places), places),
        cwd=trial.workdir if command.cwd == "trial" else trial.project_dir,
        env={key: fill(value, places) for key, value in command.env.items()},
    )


file_command: Any = task(command_trial, name=COMMAND_TASK)
del REGISTERED[COMMAND_TASK]  # built in: not a task of the project's tasks.py (`--task`, `params --project`)
