"""A PyTorch script that logs to TensorBoard only, run as it is: its event files are read as the metrics.

``--logdir {trial_dir}/runs`` puts each trial's event files in its own directory, where the
worker reads them while the script runs (``Accuracy/val``, ``Loss/val``, ``Loss/train``).
"""

import mlframework as mlf

train = mlf.command_task("{python} train.py {args} --logdir {trial_dir}/runs", arguments="separate")
