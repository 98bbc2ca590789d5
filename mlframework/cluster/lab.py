"""What runs on each host's GPUs now, across every project: read from the hosts' GPU lock files over SSH.

The lock files are :mod:`~mlframework.sweep.trials.gpu_slot`'s: each trial on a
GPU holds one and has written its holder there (project, sweep, trial, since).
:func:`gpu_use` sends that module's source to every host (it is standard
library only) and runs :func:`~mlframework.sweep.trials.gpu_slot.holders` there
with ``python3``, together with ``nvidia-smi --query-gpu`` where the host has
it; the answer is plain data for ``mlframework status`` (and ``--json``).
A host that cannot be read is reported with its error, not raised.
"""

from __future__ import annotations

import inspect
import json
import logging
import shlex
from dataclasses import asdict, dataclass, field
from typing import Any

from mlframework.cluster.hosts import Host
from mlframework.cluster.ssh.group import on_hosts
from mlframework.cluster.ssh.remote import HostSession, SSHOptions
from mlframework.sweep.trials import gpu_slot

log = logging.getLogger(__name__)

# Run on the host after gpu_slot's source: its holders, and each GPU's use where nvidia-smi answers.
_PROBE = """
import json, socket, subprocess, sys
host = socket.gethostname()
directory = sys.argv[1] if len(sys.argv) > 1 else HOST_DIR
use = {}
try:
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=index,utilization.gpu,memory.used", "--format=csv,noheader,nounits"],
        capture_output=True, text=True, timeout=20,
    )
    for line in out.stdout.splitlines() if out.returncode == 0 else []:
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and parts[0].isdigit():
            use[parts[0]] = [float(parts[1]) if parts[1].replace(".", "", 1).isdigit() else None,
                             float(parts[2]) if parts[2].replace(".", "", 1).isdigit() else None]
except (OSError, subprocess.SubprocessError):
    pass
print(json.dumps({"host": host, "holders": holders(directory, host), "waiting": waiters(directory, host), "use": use}))
"""


@dataclass(frozen=True)
class GpuUse:
    """One GPU (slot) of a host now: who runs a trial there (None: free), and the GPU's use."""

    gpu: str
    project: str | None = None
    sweep: str | None = None
    trial: str | None = None
    since: str | None = None  # UTC, ISO 8601
    utilization_pct: float | None = None  # nvidia-smi's, when the host has it
    memory_mb: float | None = None
    waiting: int = 0  # trials (of any project) waiting for this GPU


@dataclass(frozen=True)
class HostUse:
    """A host's GPUs as :func:`gpu_use` found them; ``error`` when the host could not be read."""

    host: str  # as the cluster names it ([user@]address)
    hostname: str = ""  # the host's own name
    gpus: list[GpuUse] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The ``hosts`` entries of ``mlframework status --json``."""
        data = asdict(self)
        if self.error is None:
            del data["error"]
        return data


def probe_script() -> str:
    """The Python program run on each host (``python3 -c``)."""
    return inspect.getsource(gpu_slot) + _PROBE


def parse_probe(host: str, output: str) -> HostUse:
    """A host's answer (one JSON line) as a :class:`HostUse`."""
    data = json.loads(output.strip().splitlines()[-1])
    use: dict[str, list[float | None]] = data.get("use") or {}
    holders: dict[str, list[dict[str, Any]]] = data.get("holders") or {}
    queued: dict[str, int] = data.get("waiting") or {}
    gpus: list[GpuUse] = []
    for gpu in sorted({*holders, *use}, key=lambda g: (not g.isdigit(), int(g) if g.isdigit() else 0, g)):
        util, memory = (use.get(gpu) or [None, None])[:2]
        held = holders.get(gpu) or []
        if not held:
            gpus.append(GpuUse(gpu, utilization_pct=util, memory_mb=memory, waiting=int(queued.get(gpu, 0))))
        for holder in held:
            gpus.append(
                GpuUse(
                    gpu,
                    project=holder.get("project") or None,
                    sweep=holder.get("sweep"),
                    trial=holder.get("trial"),
                    since=holder.get("since"),
                    utilization_pct=util,
                    memory_mb=memory,
                    waiting=int(queued.get(gpu, 0)),
                )
            )
    return HostUse(host, str(data.get("host") or ""), gpus)


def gpu_use(hosts: list[Host], ssh: SSHOptions, timeout: float = 30) -> list[HostUse]:
    """What runs on every host's GPUs now (all hosts at once); a host that fails carries its error."""
    command = f"python3 -c {shlex.quote(probe_script())}"

    def read(host: Host) -> HostUse:
        try:
            with HostSession(host, ssh) as session:
                return parse_probe(str(host), session.run(command, timeout=timeout).stdout)
        except Exception as exc:  # one unreadable host must not hide the others
            log.debug("cannot read the GPU locks of %s", host, exc_info=True)
            return HostUse(str(host), error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)

    return list(on_hosts("reading GPU locks", hosts, read))
