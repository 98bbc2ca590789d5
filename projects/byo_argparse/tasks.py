"""An argparse script run as it is: options as ``--name value``, booleans as ``--shuffle`` / ``--no-shuffle``.

train.py prints Keras-style progress bars; ``--metric val_accuracy`` is read from them as printed.
"""

import mlframework as mlf

train = mlf.command_task("{python} train.py {args}", arguments=mlf.ArgumentStyle(separate=True, negatable=True))
