"""A Hydra app run as it is: parameters become overrides (``optim.lr=0.1``), a key new to its config ``+key=value``.

``hydra.run.dir`` puts Hydra's own output folder in each trial's directory. The app prints
Hugging Face-style dict lines; ``--metric eval_accuracy`` ranks by the value it prints.
"""

import mlframework as mlf

train = mlf.command_task(
    "{python} train.py {args} hydra.run.dir={trial_dir}/hydra",
    arguments=mlf.ArgumentStyle.hydra(new=["trainer.label_smoothing"]),
)
