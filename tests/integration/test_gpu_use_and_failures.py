"""Embedded mode on two (fake) GPUs: failed trials are recorded once and the workers go on; GPU use is recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from scratch_projects import make_project

# nvidia-smi as a two-GPU machine shows it: GPU 0 uses 1000 MiB, GPU 1 3000 MiB; utilization varies per call.
FAKE_SMI = """#!/bin/sh
case "$*" in
  -L) echo "GPU 0: Fake (UUID: GPU-aaaa)"; echo "GPU 1: Fake (UUID: GPU-bbbb)" ;;
  *index,uuid,utilization.gpu,memory.used*)
    u=$(( $(date +%N | sed 's/^0*//;s/^$/0/') % 100 ))
    echo "0, GPU-aaaa, $u, 1000"; echo "1, GPU-bbbb, $u, 3000" ;;
  *) exit 9 ;;
esac
"""


def test_failed_trials_are_recorded_once_and_gpu_use_is_in_every_record(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(FAKE_SMI)
    (bin_dir / "nvidia-smi").chmod(0o755)
    project = make_project(
        tmp_path / "proj",
        "x: [1, -1, 2, -2, 3, 4]\n",
        extra_tasks="""
        @mlf.task
        def busy(trial):
            import time
            time.sleep(1.5)
            if trial.params["x"] < 0:
                raise mlf.TrialFailed("negative x")
            return {"score": trial.params["x"]}
    """,
    )
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "MLFRAMEWORK_GPU_SAMPLE_SECONDS": "0.2",
        "COLUMNS": "200",
    }
    command = [sys.executable, "-m", "mlframework", "sweep", str(project), "--local", "--gpus", "0,1"]
    result = subprocess.run(
        [*command, "--task", "busy", "--max-batch", "1", "--results", "res"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    (sweep_dir,) = (tmp_path / "res").iterdir()
    records = [json.loads(line) for line in (sweep_dir / "trials.jsonl").read_text().splitlines()]
    assert sorted(r["trial"] for r in records) == [f"t000{i}" for i in range(6)], "each trial recorded once"
    assert {r["trial"]: r["status"] for r in records if r["status"] != "SUCCESS"} == {
        "t0001": "FAILURE",
        "t0003": "FAILURE",
    }
    assert {r["gpu"] for r in records} == {"0", "1"}, "both GPU workers went on taking trials"
    for record in records:
        assert record["gpu_samples"] >= 2, record
        assert record["gpu_memory_peak_mib"] == (1000.0 if record["gpu"] == "0" else 3000.0)
        assert 0 <= record["gpu_util_mean"] <= record["gpu_util_peak"] <= 100
