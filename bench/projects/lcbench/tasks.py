"""The LCBench project of the bench (bench/scenarios/search.py): one ``train`` task over the surrogate.

``train`` runs ``train.py`` with the bench's peers interpreter (bench/.venv-peers,
which holds numpy and onnxruntime; ``$MLFRAMEWORK_LCBENCH_PYTHON`` overrides),
with the trial's parameters as ``--name=value`` options.
"""

import os
from pathlib import Path

import mlframework as mlf

_PEERS_PYTHON = Path(__file__).resolve().parents[2] / ".venv-peers" / "bin" / "python"

train = mlf.train_task("train.py", python=os.environ.get("MLFRAMEWORK_LCBENCH_PYTHON", str(_PEERS_PYTHON)))
