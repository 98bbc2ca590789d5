"""GPU use per trial: nvidia-smi output parsed, samples summarized, the sampler never breaks a trial."""

from __future__ import annotations

import itertools
import time

import pytest

from mlframework.sweep.gpu_usage import GpuSampler, device_indices, parse_query_output, summarize


def test_query_output_is_parsed_per_gpu():
    assert parse_query_output("37, 1024\n100, 80000\n") == [(37.0, 1024.0), (100.0, 80000.0)]


@pytest.mark.parametrize("output", ["", "[N/A], 1024\n", "No devices were found\n", "1, 2, 3\n"])
def test_anything_else_is_an_error_not_a_number(output):
    with pytest.raises(ValueError):
        parse_query_output(output)


def test_summary_is_mean_and_peak():
    assert summarize([(10, 1000), (50, 3000), (90, 2000)]) == {
        "gpu_util_mean": 50.0,
        "gpu_util_peak": 90.0,
        "gpu_memory_mean_mib": 2000.0,
        "gpu_memory_peak_mib": 3000.0,
    }
    assert summarize([]) == {}


def test_pinned_gpus_are_read_under_their_index_or_renumbered_in_a_container():
    assert device_indices(["2"], ["0", "1", "2", "3"]) == ["2"]  # embedded mode: all GPUs visible
    assert device_indices(["2"], ["0"]) == ["0"]  # docker --gpus device=2: the one GPU is 0 inside
    assert device_indices(["1", "3"], ["0", "1"]) == ["0", "1"]


def test_the_sampler_reads_the_gpu_while_the_trial_runs():
    values = itertools.cycle([(20.0, 1000.0), (80.0, 3000.0)])
    asked: list[list[str]] = []

    def reader(indices):
        asked.append(list(indices))
        return next(values)

    sampler = GpuSampler("1", interval=0.01, reader=reader).start()
    time.sleep(0.3)
    fields = sampler.stop()
    assert asked[0] == ["1"] and len(asked) >= 2
    assert fields["gpu_util_peak"] == 80.0 and 20.0 <= fields["gpu_util_mean"] < 80.0
    assert fields["gpu_memory_peak_mib"] == 3000.0


def test_a_failing_reader_yields_no_fields_and_a_cpu_trial_is_not_sampled():
    def broken(indices):
        raise OSError("nvidia-smi exited with 9")

    sampler = GpuSampler("0", interval=0.01, reader=broken).start()
    time.sleep(0.05)
    assert sampler.stop() == {}

    called = []
    cpu = GpuSampler(None, interval=0.01, reader=lambda indices: called.append(1) or (0.0, 0.0)).start()
    time.sleep(0.05)
    assert cpu.stop() == {} and not called
