"""GPU paths for real, on a machine with an NVIDIA GPU: skipped (and saying why) everywhere else.

Run on a lent GPU machine with ``python -m pytest tests/gpu -s``. What runs:
GPU discovery as infrainit's preflight does it (``nvidia-smi -L``), and an
embedded sweep of the mnist sample with ``--gpus all``: one worker per GPU,
each trial pinned to its worker's GPU and training there as CUDA device 0.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlframework.cluster.gpus import local_gpus

REPO = Path(__file__).resolve().parents[2]
GPUS = local_gpus()

pytestmark = pytest.mark.skipif(not GPUS, reason="no NVIDIA GPU on this machine (nvidia-smi -L lists none)")


def test_gpu_discovery_agrees_with_cuda():
    torch = pytest.importorskip("torch")
    assert [str(i) for i in range(torch.cuda.device_count())] == GPUS


def test_mnist_sweep_trains_on_each_gpu(tmp_path):
    project = tmp_path / "mnist"
    shutil.copytree(REPO / "projects" / "mnist", project, ignore=shutil.ignore_patterns("results", "__pycache__"))
    # gpu: 0 is "my worker's GPU": each worker sees only its own, as device 0. gpu: -1 is the CPU baseline.
    (project / "parameters.yml").write_text("gpu: [0, -1]\nbatchsize: [100]\nepoch: [20]\nunit: [200]\nlr: 0.01\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlframework",
            "sweep",
            str(project),
            "--local",
            "--gpus",
            "all",
            "--results",
            str(tmp_path / "res"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "160"},
    )
    print(done.stdout[-3000:], done.stderr[-2000:])
    assert done.returncode == 0, done.stdout + done.stderr
    (sweep_dir,) = (tmp_path / "res").iterdir()
    with open(sweep_dir / "results.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 2
    records = {r["params"]["gpu"]: r for r in map(json.loads, (sweep_dir / "trials.jsonl").read_text().splitlines())}
    on_gpu, on_cpu = records[0], records[-1]
    assert on_gpu["status"] == "SUCCESS" and on_gpu["gpu"] in GPUS
    log = (sweep_dir / "logs" / f"{on_gpu['trial']}.log").read_text()
    assert "device: cuda:0" in log, log[:2000]
    assert "device: cpu" in (sweep_dir / "logs" / f"{on_cpu['trial']}.log").read_text()
    assert on_gpu["metrics"]["accuracy"] >= 0.9
    print(
        f"GPU trial {on_gpu['duration_s']:.2f}s on GPU {on_gpu['gpu']} of {on_gpu['host']}, "
        f"accuracy {on_gpu['metrics']['accuracy']:.4f}; CPU trial {on_cpu['duration_s']:.2f}s"
    )
