"""Tasks of the mnist sample: the seed's `echo` and `train`.

`echo` sleeps `n` seconds (default 2), reporting each second, and returns its
parameters: the smoke test of a cluster. `train` runs train_mnist.py with one
combination of parameters.yml as `--name=value` options.
"""

import mlframework as mlf

echo = mlf.echo_task()
train = mlf.train_task("train_mnist.py")
