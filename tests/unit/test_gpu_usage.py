"""GPU use per trial, read from a fake nvidia-smi on PATH that prints readings varying over time."""

from __future__ import annotations

import os
import time

import pytest

from mlframework.sweep.trials import gpu_usage
from mlframework.sweep.trials.tasks import execute_trial
from mlframework.sweep.trials.trial import Trial

# Two GPUs; GPU 1's utilization climbs by 10 points per call (a counter file), its memory is fixed.
FAKE_SMI = """#!/bin/sh
n=$(cat "$0.count" 2>/dev/null || echo 0); echo $((n + 1)) > "$0.count"
case "$*" in
  *index,uuid,utilization.gpu,memory.used*)
    echo "0, GPU-aaaa, 5, 100"
    echo "1, GPU-bbbb, $((n * 10 % 100)), 2048" ;;
  *) echo "unexpected: $*" >&2; exit 9 ;;
esac
"""


@pytest.fixture
def fake_smi(tmp_path, monkeypatch):
    program = tmp_path / "nvidia-smi"
    program.write_text(FAKE_SMI)
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv(gpu_usage.ENV_INTERVAL, "0.1")
    monkeypatch.setattr(gpu_usage, "_nvml", lambda: None)  # the nvidia-smi path even where NVML is installed
    return program


def _until_read(program, times: int, limit: float = 20.0) -> None:
    """A trial that runs until the fake nvidia-smi was read ``times`` times (however slow a loaded machine is)."""
    counter = program.with_name(program.name + ".count")
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if counter.exists() and int(counter.read_text() or 0) >= times:
            return
        time.sleep(0.05)


def test_a_trial_on_a_gpu_worker_records_mean_and_peak_use_of_its_gpu(fake_smi):
    events: list[dict] = []
    trial = Trial(sweep_id="s", id="t0", index=0, params={}, host="h", gpu="1")
    record = execute_trial(lambda t: _until_read(fake_smi, 5), trial, events.append)
    assert record["gpu_samples"] >= 3
    assert record["gpu_memory_peak_mib"] == record["gpu_memory_mean_mib"] == 2048.0  # GPU 1's, not GPU 0's
    assert 0 <= record["gpu_util_mean"] < record["gpu_util_peak"] <= 90
    assert events[-1]["gpu_util_peak"] == record["gpu_util_peak"]


def test_a_worker_on_two_gpus_sums_their_memory_and_a_uuid_selects_a_gpu(fake_smi):
    sampler = gpu_usage.start("0,1")
    time.sleep(0.5)
    assert sampler.stop()["gpu_memory_peak_mib"] == 2148.0
    sampler = gpu_usage.start("GPU-aaaa")
    time.sleep(0.3)
    assert sampler.stop()["gpu_util_peak"] == 5.0


def test_a_cpu_worker_or_a_machine_without_nvidia_smi_records_no_gpu_fields(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(gpu_usage, "_nvml", lambda: None)
    record = execute_trial(lambda t: None, Trial(sweep_id="s", id="t0", index=0, params={}, gpu="0"), lambda e: None)
    assert not any(key.startswith("gpu_") for key in record)


def test_a_container_pinned_to_one_gpu_sees_it_as_its_only_gpu():
    lone = [gpu_usage.GpuReading("0", "GPU-x", 50.0, 10.0)]
    assert gpu_usage.select(["3"], lone) == lone  # docker --gpus device=3: index 0 inside
    two = [*lone, gpu_usage.GpuReading("1", "GPU-y", 1.0, 1.0)]
    assert gpu_usage.select(["3"], two) == []
