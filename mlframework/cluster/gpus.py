"""Which NVIDIA GPUs a host has, from ``nvidia-smi -L``.

Used by infrainit's preflight (one worker container per GPU) and by embedded
mode (``--gpus all``: one local worker per GPU). A host without the driver
simply has no GPUs.
"""

from __future__ import annotations

import re
import shutil
import subprocess

from mlframework.exceptions import ConfigError

NVIDIA_SMI_LIST = "nvidia-smi -L"

_GPU_LINE = re.compile(r"^GPU (\d+):", flags=re.MULTILINE)


def parse_gpu_list(output: str) -> list[str]:
    """GPU indices (as strings, as CUDA_VISIBLE_DEVICES takes them) in ``nvidia-smi -L`` output.

    ``GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-...)`` gives ``"0"``; MIG lines
    (indented ``MIG ...``) and anything else are ignored.
    """
    return _GPU_LINE.findall(output)


def local_gpus(timeout: float = 30) -> list[str]:
    """The GPU indices of this machine; empty when nvidia-smi is missing or fails."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return parse_gpu_list(done.stdout) if done.returncode == 0 else []


def parse_gpu_option(value: str | None) -> list[str]:
    """``--gpus``: None -> no GPU workers; ``all`` -> every local GPU; ``0,2`` -> those indices."""
    if value is None:
        return []
    if value.strip() == "all":
        found = local_gpus()
        if not found:
            raise ConfigError(f"--gpus all: `{NVIDIA_SMI_LIST}` lists no GPU on this machine")
        return found
    indices = [part.strip() for part in value.split(",") if part.strip()]
    bad = [part for part in indices if not part.isdigit()]
    if bad or not indices:
        raise ConfigError(f"--gpus {value!r}: give GPU indices such as 0,1, or all")
    if len(set(indices)) != len(indices):
        raise ConfigError(f"--gpus {value!r}: a GPU is named twice")
    return indices
