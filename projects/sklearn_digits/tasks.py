"""Tasks of the scikit-learn sample: `train` runs train.py per combination; `echo` is the smoke test."""

import mlframework as mlf

echo = mlf.echo_task()
train = mlf.train_task("train.py")
