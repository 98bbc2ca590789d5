"""GPU use per trial, end to end: an embedded sweep on `--gpus 0` with a fake nvidia-smi first on PATH."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from scratch_projects import make_project

# Answers `-L` (the GPU list embedded mode and the sampler read), the model query and the usage query;
# each usage query gives the next values, so a trial's samples differ over time.
FAKE_NVIDIA_SMI = """#!/bin/sh
state="$(dirname "$0")/samples"
case "$*" in
  *-L*) echo "GPU 0: Fake H200 (UUID: GPU-fake-0)"; echo "GPU 1: Fake H200 (UUID: GPU-fake-1)" ;;
  *name,driver_version*) echo "Fake H200, 550.54.15" ;;
  *utilization.gpu,memory.used*)
    n=$(cat "$state" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > "$state"
    echo "$(( (n * 37) % 100 )), $(( 1000 + n * 100 ))" ;;
  *) echo "fake nvidia-smi: unexpected $*" >&2; exit 9 ;;
esac
"""


def fake_gpu_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a CLI run that sees the fake nvidia-smi and samples every 0.2 s."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    script = bin_dir / "nvidia-smi"
    script.write_text(FAKE_NVIDIA_SMI)
    script.chmod(0o755)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "MLFRAMEWORK_GPU_SAMPLE_SECONDS": "0.2",
        "COLUMNS": "200",
    }


def records(results: Path) -> list[dict]:
    (sweep_dir,) = [p for p in results.iterdir() if p.is_dir()]
    return [json.loads(line) for line in (sweep_dir / "trials.jsonl").read_text().splitlines()]


def test_a_gpu_trial_records_the_mean_and_peak_use_of_its_gpu(tmp_path):
    env = fake_gpu_env(tmp_path)
    project = make_project(tmp_path / "proj", "x: [1.0]\nsleep: [2.0]\n")
    result = subprocess.run(
        [sys.executable, "-m", "mlframework", "sweep", str(project), "--local", "--gpus", "0", "--results", "res"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (record,) = records(tmp_path / "res")
    assert record["status"] == "SUCCESS" and record["gpu"] == "0"
    assert record["provenance"]["gpu_model"] == "Fake H200" and record["provenance"]["gpu_driver"] == "550.54.15"

    # The k-th sample of the fake is ((37 k) % 100 %, 1000 + 100 k MiB): the peak memory says how many were
    # taken (a sample still running when the trial ended may have been left out), the rest follows.
    taken = int((record["gpu_memory_peak_mib"] - 1000) / 100)
    assert taken >= 3, f"a 2 s trial sampled every 0.2 s: only {taken} sample(s)"
    utils = [(37 * k) % 100 for k in range(1, taken + 1)]
    assert record["gpu_util_peak"] == max(utils)
    assert record["gpu_util_mean"] == round(sum(utils) / taken, 2)
    assert record["gpu_memory_mean_mib"] == round(1000 + 100 * (taken + 1) / 2, 2)


def test_a_failing_nvidia_smi_leaves_the_fields_out_and_the_trial_succeeds(tmp_path):
    env = fake_gpu_env(tmp_path)
    # The GPU list works (embedded mode needs it) but every usage query fails.
    script = tmp_path / "fakebin" / "nvidia-smi"
    script.write_text(FAKE_NVIDIA_SMI.replace('n=$(cat "$state"', 'exit 9; n=$(cat "$state"'))
    project = make_project(tmp_path / "proj", "x: [1.0]\nsleep: [0.5]\n")
    result = subprocess.run(
        [sys.executable, "-m", "mlframework", "sweep", str(project), "--local", "--gpus", "0", "--results", "res"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (record,) = records(tmp_path / "res")
    assert record["status"] == "SUCCESS"
    assert not [key for key in record if key.startswith("gpu_")], record
