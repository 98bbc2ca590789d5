"""The LCBench surrogate of YAHPO Gym, read with onnxruntime alone: where the data is and one call to query it.

Runs in ``bench/.venv-peers`` (numpy, onnxruntime); the training script of
``bench/projects/lcbench`` and the peers import it from there. We read
``lcbench/model.onnx`` ourselves instead of through ``yahpo-gym==1.0.2``
because that package pins ``numpy<2`` and ``configspace<=0.6.1`` and spends
most of a call in its configuration checks (measured: see README's
Benchmarks section); the encoding below is yahpo-gym's own
(``BenchmarkSet._config_to_xs``): the task id as its integer from
``encoding.json``, the eight numeric inputs unscaled, in ``CONT_NAMES`` order,
and the outputs in ``Y_NAMES`` order.

The data is ``../shared/benchmarks/yahpo`` relative to the repository root
(``$MLFRAMEWORK_YAHPO_DATA`` overrides: the folder that holds ``lcbench/``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ENV_VAR = "MLFRAMEWORK_YAHPO_DATA"
#: Simulated seconds per wall-clock second of bench/projects/lcbench/train.py (default 3600).
SCALE_ENV = "MLFRAMEWORK_LCBENCH_SCALE"
EPOCHS = 52
TASKS = ("3945", "34539", "126025")  # the three OpenML tasks
# The seven hyperparameters a trial chooses (OpenML_task_id and epoch are not searched).
HYPERPARAMETERS = ("batch_size", "learning_rate", "momentum", "weight_decay", "num_layers", "max_units", "max_dropout")
CONT_NAMES = ("epoch", *HYPERPARAMETERS)
Y_NAMES = (
    "time",
    "val_accuracy",
    "val_cross_entropy",
    "val_balanced_accuracy",
    "test_cross_entropy",
    "test_balanced_accuracy",
)
# The reference grid of the data's README (2,592 points), evaluated at epoch 52.
GRID: dict[str, list[float]] = {
    "learning_rate": [0.00011, 0.001, 0.01, 0.099],
    "batch_size": [16, 64, 256, 512],
    "weight_decay": [0.00001, 0.001, 0.1],
    "num_layers": [1, 3, 5],
    "max_units": [64, 256, 1024],
    "max_dropout": [0.0, 0.5, 1.0],
    "momentum": [0.1, 0.9],
}


class DataMissing(Exception):
    """The LCBench folder is not where it should be."""


def data_dir() -> Path:
    """The folder holding ``lcbench/`` (``$MLFRAMEWORK_YAHPO_DATA``, else ``../shared/benchmarks/yahpo``)."""
    override = os.environ.get(ENV_VAR)
    path = Path(override) if override else REPO.parent / "shared" / "benchmarks" / "yahpo"
    if not (path / "lcbench" / "model.onnx").is_file():
        raise DataMissing(f"no lcbench/model.onnx under {path} (set ${ENV_VAR} to the folder that holds lcbench/)")
    return path


def config_space() -> dict[str, dict[str, Any]]:
    """config_space.json's hyperparameters by name (type, lower, upper, log, choices)."""
    raw = json.loads((data_dir() / "lcbench" / "config_space.json").read_text(encoding="utf-8"))
    return {item["name"]: item for item in raw["hyperparameters"]}


class Surrogate:
    """One ONNX session over the LCBench model; :meth:`query` evaluates configurations at given epochs."""

    def __init__(self, threads: int = 1) -> None:
        import numpy as np  # imported here: the framework's venv imports this module's constants only
        import onnxruntime as ort

        self._np = np
        folder = data_dir() / "lcbench"
        self.encoding: dict[str, int] = json.loads((folder / "encoding.json").read_text())["OpenML_task_id"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # one core per trial, as a trial on a GPU box gets its own GPU
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        inputs = self.session.get_inputs()
        self._cat_input, self._cont_input = inputs[0].name, inputs[1].name
        self._output = self.session.get_outputs()[0].name

    def query(self, task: str, config: Mapping[str, float], epochs: Sequence[int]) -> list[dict[str, float]]:
        """The surrogate's outputs (``Y_NAMES``) for ``config`` on ``task`` at each of ``epochs``."""
        return self.query_many(task, [config], epochs)[0]

    def query_many(
        self, task: str, configs: Sequence[Mapping[str, float]], epochs: Sequence[int]
    ) -> list[list[dict[str, float]]]:
        """:meth:`query` for many configurations in one batched call."""
        np = self._np
        code = self.encoding[str(task)]
        rows = [
            [float(epoch), *(float(config[name]) for name in HYPERPARAMETERS)] for config in configs for epoch in epochs
        ]
        x_cont = np.asarray(rows, dtype=np.float32)
        x_cat = np.full((len(rows), 1), code, dtype=np.int32)
        out = self.session.run([self._output], {self._cat_input: x_cat, self._cont_input: x_cont})[0]
        per = len(epochs)
        return [[dict(zip(Y_NAMES, map(float, out[i * per + j]))) for j in range(per)] for i in range(len(configs))]
