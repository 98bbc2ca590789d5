"""A small-GPT-style trainer run as it is: a config file, then ``--key=value`` overrides read with literal_eval.

The script reads ``config/`` and ``data/`` relative to its working directory, so it runs in this
folder; ``--out_dir={trial_dir}/out`` gives each trial a checkpoint of its own. Booleans go as
``--compile=False`` (the script's own default is True). It prints ``step N: train loss X, val loss Y``:
``--metric "val loss"`` ranks (and prunes) by it.
"""

import mlframework as mlf

train = mlf.command_task(
    "{python} train.py config/train_tiny.py {args} --out_dir={trial_dir}/out",
    arguments="booleans",
)
