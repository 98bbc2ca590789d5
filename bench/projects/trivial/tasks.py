"""Trivial tasks for the benchmark suite (bench/): the framework's own cost per trial.

* ``noop``    returns at once (scenario 1, trivial-trial throughput)
* ``sleep``   sleeps ``seconds`` (scenario 3, scheduling balance)
* ``spawn``   runs ``python -c 'print(1)'`` as a training script is run (scenario 2)
* ``train``   ``mlf.train_task('print_lines.py')``: prints ``--lines`` lines to stdout,
  or to /dev/null with ``--sink=devnull`` (scenario 6, live-output cost); its metrics read from them
* ``train_plain`` the same with ``output_scalars=False``: no metrics read (scenario 6, the reading's cost)
"""

import sys
import time

import mlframework as mlf

train = mlf.train_task("print_lines.py")
train_plain = mlf.train_task("print_lines.py", name="train_plain", output_scalars=False)  # no metrics read


@mlf.task
def noop(trial):
    return None


@mlf.task
def sleep(trial):
    time.sleep(float(trial.params["seconds"]))


@mlf.task
def spawn(trial):
    trial.run([sys.executable, "-c", "print(1)"])
