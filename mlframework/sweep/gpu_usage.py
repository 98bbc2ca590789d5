"""Worker side: what a trial's GPU did while it ran (utilization and memory, mean and peak) and what GPU it is.

A :class:`GpuSampler` thread reads the pinned GPU(s) every few seconds
(``MLFRAMEWORK_GPU_SAMPLE_SECONDS``, default 2) while the trial runs: through
NVML (the ``nvidia-ml-py`` package, ``pip install mlframework[gpu]``) when it
imports and initialises, else with one ``nvidia-smi --query-gpu`` call per
sample. Sampling never slows or breaks a trial: a GPU that cannot be read
just leaves the fields out of the record (said once per process in the log).

Which index to read: a worker is pinned to host GPU N (``CUDA_VISIBLE_DEVICES``
in embedded mode, where every GPU stays visible to NVML and nvidia-smi, which
ignore that variable); in a worker container (``docker run --gpus device=N``)
the one visible GPU is index 0. :func:`device_indices` maps one to the other.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import statistics
import subprocess
import threading
from collections.abc import Callable, Sequence
from typing import Any

from mlframework.cluster.gpus import parse_gpu_list

log = logging.getLogger(__name__)

ENV_INTERVAL = "MLFRAMEWORK_GPU_SAMPLE_SECONDS"
DEFAULT_INTERVAL = 2.0
QUERY = "utilization.gpu,memory.used"
_TIMEOUT = 10.0  # seconds for one nvidia-smi call; a hung driver must not hang the sampler's stop()

Sample = tuple[float, float]  # (utilization %, memory used MiB), summed/averaged over the trial's GPUs
Reader = Callable[[Sequence[str]], Sample]

_warned: set[str] = set()  # what was already logged in this process (once each)


def _warn_once(key: str, message: str, *args: Any) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(message, *args)


def parse_query_output(output: str) -> list[Sample]:
    """The ``(utilization, memory MiB)`` of each line of ``nvidia-smi --query-gpu=utilization.gpu,memory.used
    --format=csv,noheader,nounits`` output.

    Raises ValueError on anything else (``[N/A]``, an error message), so that the
    caller records no numbers rather than wrong ones.
    """
    samples = []
    for line in output.strip().splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != 2:
            raise ValueError(f"unexpected nvidia-smi line: {line!r}")
        samples.append((float(fields[0]), float(fields[1])))
    if not samples:
        raise ValueError("nvidia-smi printed nothing")
    return samples


def summarize(samples: Sequence[Sample]) -> dict[str, float]:
    """The record fields for a trial's samples: mean and peak of utilization (%) and memory (MiB); {} for none."""
    if not samples:
        return {}
    util = [s[0] for s in samples]
    memory = [s[1] for s in samples]
    return {
        "gpu_util_mean": round(statistics.fmean(util), 2),
        "gpu_util_peak": round(max(util), 2),
        "gpu_memory_mean_mib": round(statistics.fmean(memory), 2),
        "gpu_memory_peak_mib": round(max(memory), 2),
    }


def device_indices(pinned: Sequence[str], visible: Sequence[str]) -> list[str]:
    """The indices to query for the ``pinned`` host GPUs, given the ``visible`` ones (``nvidia-smi -L``).

    Every pinned GPU visible under its own index: those (embedded mode). Else,
    as many GPUs visible as are pinned: they were renumbered from 0 (a worker
    container given exactly its GPUs).
    """
    if all(gpu in visible for gpu in pinned):
        return list(pinned)
    if len(visible) == len(pinned):
        return list(visible)
    return list(pinned)  # let the query say what is wrong


@functools.cache
def _nvml() -> Any | None:
    """The initialised ``pynvml`` module, or None (not installed, no driver)."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # ImportError, or NVMLError without a driver: fall back to nvidia-smi
        return None
    return pynvml


_visible: list[str] = []  # the GPU indices this process sees, once read (they do not change under it)


def _visible_indices() -> list[str]:
    if _visible:
        return _visible
    nvml = _nvml()
    if nvml is not None:
        found = [str(i) for i in range(nvml.nvmlDeviceGetCount())]
    else:
        done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=_TIMEOUT)
        found = parse_gpu_list(done.stdout) if done.returncode == 0 else []
    _visible[:] = found  # a failure is not kept: asked again next trial
    return found


def _combine(per_gpu: Sequence[Sample]) -> Sample:
    # Several GPUs for one trial: the mean utilization and the total memory.
    return statistics.fmean(s[0] for s in per_gpu), sum(s[1] for s in per_gpu)


def read_nvml(indices: Sequence[str]) -> Sample:
    """One sample of ``indices`` through NVML."""
    nvml = _nvml()
    assert nvml is not None
    per_gpu = []
    for index in indices:
        handle = nvml.nvmlDeviceGetHandleByIndex(int(index))
        per_gpu.append(
            (
                float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
                nvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20,
            )
        )
    return _combine(per_gpu)


def read_nvidia_smi(indices: Sequence[str]) -> Sample:
    """One sample of ``indices`` from one nvidia-smi call; raises on any failure."""
    done = subprocess.run(
        ["nvidia-smi", f"--query-gpu={QUERY}", "--format=csv,noheader,nounits", "-i", ",".join(indices)],
        capture_output=True,
        text=True,
        timeout=_TIMEOUT,
    )
    if done.returncode != 0:
        raise OSError(f"nvidia-smi exited with {done.returncode}: {(done.stderr or done.stdout).strip()[:200]}")
    return _combine(parse_query_output(done.stdout))


def default_reader() -> Reader | None:
    """How to read GPUs on this machine: NVML, nvidia-smi, or None when neither is there."""
    if _nvml() is not None:
        return read_nvml
    if shutil.which("nvidia-smi") is not None:
        return read_nvidia_smi
    return None


def sample_interval() -> float:
    """Seconds between samples (``MLFRAMEWORK_GPU_SAMPLE_SECONDS``, default 2)."""
    try:
        value = float(os.environ.get(ENV_INTERVAL) or DEFAULT_INTERVAL)
    except ValueError:
        _warn_once("interval", "%s is not a number of seconds: sampling every %g s", ENV_INTERVAL, DEFAULT_INTERVAL)
        return DEFAULT_INTERVAL
    return max(value, 0.05)


class GpuSampler:
    """Samples a trial's GPU(s) in a thread from :meth:`start` to :meth:`stop`."""

    def __init__(self, gpu: str | None, interval: float | None = None, reader: Reader | None = None) -> None:
        self.pinned = [part.strip() for part in (gpu or "").split(",") if part.strip()]
        self.interval = sample_interval() if interval is None else interval
        self._reader = reader
        self._samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> GpuSampler:
        """Begin sampling (nothing on a CPU trial or a machine without a GPU reader)."""
        if self.pinned:
            self._thread = threading.Thread(target=self._run, name="gpu-usage", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        try:
            reader = self._reader or default_reader()
            if reader is None:
                _warn_once("reader", "GPU %s: neither NVML nor nvidia-smi here; no GPU use recorded", self.pinned)
                return
            indices = self.pinned if self._reader else device_indices(self.pinned, _visible_indices())
            while True:
                self._samples.append(reader(indices))  # list.append is atomic: stop() may read meanwhile
                if self._stop.wait(self.interval):
                    return
        except Exception as exc:  # never the trial's problem
            _warn_once("read", "GPU %s: cannot read its utilization (%s); no GPU use recorded", self.pinned, exc)
            self._samples.clear()

    def stop(self) -> dict[str, float]:
        """Stop sampling; the record fields (``gpu_util_mean`` ...), {} when nothing was read."""
        self._stop.set()
        if self._thread is not None:
            # Not waiting for a sample in progress (an nvidia-smi call takes tens of milliseconds, more
            # on a busy machine): a short trial's record must not wait for it; that sample is dropped.
            self._thread.join(timeout=0.05)
        return summarize(list(self._samples))


@functools.cache
def gpu_model(gpu: str) -> dict[str, str]:
    """``{"gpu_model", "gpu_driver"}`` of the (first) pinned GPU from nvidia-smi, cached; {} when unknown."""
    pinned = [part.strip() for part in gpu.split(",") if part.strip()]
    if not pinned or shutil.which("nvidia-smi") is None:
        return {}
    try:
        index = device_indices(pinned, _visible_indices())[0]
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader", "-i", index],
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
        )
        name, driver = (field.strip() for field in done.stdout.strip().splitlines()[0].rsplit(",", 1))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        _warn_once("model", "GPU %s: model and driver unknown (%s)", gpu, exc)
        return {}
    return {"gpu_model": name, "gpu_driver": driver} if done.returncode == 0 else {}
