"""GPU use per trial: sample the worker's GPU(s) while a trial runs; mean and peak go in its record.

Readings come from NVML through ``nvidia-ml-py`` (``pip install
mlframework[gpu]``) when it is importable and finds a driver, else from
``nvidia-smi --query-gpu=... --format=csv,noheader,nounits``. A background
thread takes one reading at once and then one every
``MLFRAMEWORK_GPU_SAMPLE_SECONDS`` (default 2 s); stopping it never waits for a
reading in progress, so a short trial pays nothing for it.

Which GPU: the worker's (``MLFRAMEWORK_GPU`` / ``CUDA_VISIBLE_DEVICES``,
indices or UUIDs as ``nvidia-smi`` lists them). A container pinned to one GPU
(``docker run --gpus device=N``) sees only that one, as index 0: when the
machine shows a single GPU, that is the worker's whatever its host index.

Record fields (absent on CPU workers and when no reading came back):
``gpu_util_mean`` / ``gpu_util_peak`` (percent; the mean over the worker's
GPUs at each reading), ``gpu_memory_mean_mib`` / ``gpu_memory_peak_mib`` (MiB
used, summed over its GPUs), ``gpu_samples``.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from typing import Any

from mlframework import envvars

log = logging.getLogger(__name__)

ENV_INTERVAL = envvars.GPU_SAMPLE_SECONDS
DEFAULT_INTERVAL = 2.0
_SMI_TIMEOUT = 10.0


@dataclass(frozen=True)
class GpuReading:
    """One GPU at one moment."""

    index: str  # as nvidia-smi numbers it
    uuid: str
    util_percent: float
    memory_used_mib: float


def _number(text: str) -> float | None:
    try:
        return float(text.strip())
    except ValueError:  # "[N/A]", "[Not Supported]"
        return None


@functools.cache
def _nvml() -> Any:
    """The initialised ``pynvml`` module, or None (not installed, or no driver)."""
    try:
        import pynvml  # type: ignore[import-not-found,unused-ignore]  # optional: mlframework[gpu]

        pynvml.nvmlInit()
    except Exception as exc:  # ImportError, or NVMLError: no driver here
        log.debug("NVML not available (%s): using nvidia-smi", exc)
        return None
    return pynvml


def _smi() -> str | None:
    return shutil.which("nvidia-smi")


def available() -> bool:
    """Whether GPU readings can be taken here (NVML or nvidia-smi)."""
    return _nvml() is not None or _smi() is not None


def _read_nvml(nvml: Any) -> list[GpuReading]:
    readings = []
    for i in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(i)
        uuid = nvml.nvmlDeviceGetUUID(handle)
        util = nvml.nvmlDeviceGetUtilizationRates(handle).gpu
        memory = nvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20
        readings.append(GpuReading(str(i), uuid.decode() if isinstance(uuid, bytes) else str(uuid), util, memory))
    return readings


def smi_query(fields: str) -> list[list[str]]:
    """``nvidia-smi --query-gpu=FIELDS`` as rows of stripped strings; [] when it fails."""
    program = _smi()
    if program is None:
        return []
    try:
        done = subprocess.run(
            [program, f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=_SMI_TIMEOUT,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("nvidia-smi failed: %s", exc)
        return []
    if done.returncode != 0:
        log.debug("nvidia-smi exited %s: %s", done.returncode, done.stderr.strip())
        return []
    return [[cell.strip() for cell in line.split(",")] for line in done.stdout.splitlines() if line.strip()]


def _read_smi() -> list[GpuReading]:
    readings = []
    for row in smi_query("index,uuid,utilization.gpu,memory.used"):
        if len(row) < 4:
            continue
        util, memory = _number(row[2]), _number(row[3])
        if util is not None and memory is not None:
            readings.append(GpuReading(row[0], row[1], util, memory))
    return readings


def read_all() -> list[GpuReading]:
    """A reading of every GPU this process can see."""
    nvml = _nvml()
    if nvml is not None:
        try:
            return _read_nvml(nvml)
        except Exception as exc:  # a GPU fell off the bus, the driver was reloaded
            log.debug("NVML reading failed: %s", exc)
    return _read_smi()


def select(ids: list[str], rows: list[Any], key: Any = lambda row: (row.index, row.uuid)) -> list[Any]:
    """The rows of the GPUs ``ids`` names (index or UUID); a lone GPU is the worker's whatever its id."""
    chosen = [row for row in rows if any(i in key(row) for i in ids)]
    if not chosen and len(rows) == 1:
        return rows
    return chosen


def device_ids(gpu: str | None) -> list[str]:
    """The GPU ids of a worker's GPU setting (``"0"``, ``"0,1"``, ``"GPU-..."``)."""
    return [part.strip() for part in (gpu or "").split(",") if part.strip()]


class GpuSampler:
    """Samples the GPUs ``ids`` every ``interval`` seconds on a daemon thread, from :meth:`start` to :meth:`stop`."""

    def __init__(self, ids: list[str], interval: float) -> None:
        self.ids = ids
        self.interval = interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._util: list[float] = []
        self._memory: list[float] = []
        self._thread = threading.Thread(target=self._loop, name="gpu-usage", daemon=True)

    def start(self) -> GpuSampler:
        """Begin sampling (the first reading is taken at once); returns self."""
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                readings = select(self.ids, read_all())
            except Exception:  # never take the trial down for a reading
                log.exception("GPU reading failed")
                readings = []
            if readings and not self._stop.is_set():
                with self._lock:
                    self._util.append(sum(r.util_percent for r in readings) / len(readings))
                    self._memory.append(sum(r.memory_used_mib for r in readings))
            self._stop.wait(self.interval)

    def stop(self) -> dict[str, Any]:
        """Stop sampling (without waiting for a reading in progress); the record fields."""
        self._stop.set()
        with self._lock:
            util, memory = list(self._util), list(self._memory)
        if not util:
            return {}
        return {
            "gpu_util_mean": round(sum(util) / len(util), 1),
            "gpu_util_peak": round(max(util), 1),
            "gpu_memory_mean_mib": round(sum(memory) / len(memory), 1),
            "gpu_memory_peak_mib": round(max(memory), 1),
            "gpu_samples": len(util),
        }


class _NoSampler:
    def stop(self) -> dict[str, Any]:
        return {}


def start(gpu: str | None) -> GpuSampler | _NoSampler:
    """Start sampling the GPU(s) ``gpu`` names; a no-op on a CPU worker or where no GPU can be read."""
    ids = device_ids(gpu)
    if not ids or not available():
        return _NoSampler()
    try:
        interval = float(os.environ.get(ENV_INTERVAL) or DEFAULT_INTERVAL)
    except ValueError:
        interval = DEFAULT_INTERVAL
    return GpuSampler(ids, max(interval, 0.05)).start()


@functools.lru_cache(maxsize=8)
def gpu_model(gpu: str | None) -> dict[str, str]:
    """``{"gpu_model", "gpu_driver"}`` of the worker's (first) GPU, from nvidia-smi, once per process; {} unknown."""
    ids = device_ids(gpu)
    if not ids:
        return {}
    rows = select(ids, smi_query("index,uuid,name,driver_version"), key=lambda row: tuple(row[:2]))
    rows = [row for row in rows if len(row) >= 4]
    if not rows:
        return {}
    return {"gpu_model": rows[0][2], "gpu_driver": rows[0][3]}
