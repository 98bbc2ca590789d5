"""The names of the environment variables mlframework sets and reads: one home each, imported where used.

Plain string constants and no imports, so that anything can import this
module at no cost: the CLI (for click's ``envvar=``), ``mlframework.metrics``
in a training script (standard library only), the worker, the containers'
specs. The Dockerfile (``infra/worker/Dockerfile``), ``scripts/lib/venv.sh``
and the README spell some of them too; they are listed here with who sets and
who reads each.
"""

from __future__ import annotations

# -- the broker and the Celery app (set by the user, embedded mode, services.py; read by sweep/wire/app.py)
BROKER_URL = "MLFRAMEWORK_BROKER_URL"  # amqp://... or the embedded broker; --broker's envvar too
TRANSPORT_OPTIONS = "MLFRAMEWORK_TRANSPORT_OPTIONS"  # JSON: kombu transport options (embedded mode's folders)
CELERY_CONFIG = "MLFRAMEWORK_CELERY_CONFIG"  # JSON: further Celery settings

# -- a worker (set in worker containers by services.py and by embedded mode; read by sweep/trials/tasks.py)
PROJECT = "MLFRAMEWORK_PROJECT"  # the project directory the worker serves
HOST = "MLFRAMEWORK_HOST"  # the host name its trials report
GPU = "MLFRAMEWORK_GPU"  # the GPU it is pinned to, when CUDA_VISIBLE_DEVICES does not say it
IMAGE = "MLFRAMEWORK_IMAGE"  # its container's image, for each trial's provenance
SLOTS = "MLFRAMEWORK_SLOTS"  # trials its host runs at once (embedded workers, worker containers)
GPU_SAMPLE_SECONDS = "MLFRAMEWORK_GPU_SAMPLE_SECONDS"  # how often GPU use is sampled during a trial
CLUSTER_NAME = "MLFRAMEWORK_CLUSTER_NAME"  # its cluster's (project's) name: who holds a GPU (sweep/trials/gpu_slot.py)
GPU_LOCK_DIR = "MLFRAMEWORK_GPU_LOCK_DIR"  # the host's GPU lock directory; unset: no GPU lock (embedded, CPU)
TRIALS_PER_GPU = "MLFRAMEWORK_TRIALS_PER_GPU"  # trials packed on one GPU (--trials-per-gpu; default 1)

# -- a trial's command (set by the worker; read by the training script and mlframework.metrics)
SWEEP_ID = "MLFRAMEWORK_SWEEP_ID"
TRIAL_ID = "MLFRAMEWORK_TRIAL_ID"
TRIAL_DIR = "MLFRAMEWORK_TRIAL_DIR"  # the trial's own working directory
METRICS_FILE = "MLFRAMEWORK_METRICS_FILE"  # where metrics.log() writes
STOP_FILE = "MLFRAMEWORK_STOP_FILE"  # created when the sweep stops the trial (metrics.should_stop())
GPU_MEMORY_FRACTION = "MLFRAMEWORK_GPU_MEMORY_FRACTION"  # the trial's share of its GPU's memory: 1/--trials-per-gpu
TREE = "MLFRAMEWORK_TREE"  # tag of one trial command's processes (stopping its process tree)

# -- this machine
CLUSTER = "MLFRAMEWORK_CLUSTER"  # tag of every process of one embedded cluster (its watchdog)
LIVE_REPORT = "MLFRAMEWORK_LIVE_REPORT"  # 0: the driver does not keep report.html current
KNOWN_HOSTS = "MLFRAMEWORK_KNOWN_HOSTS"  # known_hosts file for the cluster commands (--known-hosts)
ERROR_LOG = "MLFRAMEWORK_ERROR_LOG"  # where tracebacks of unexpected host errors go
OWNER = "MLFRAMEWORK_OWNER"  # user@machine a sweep's driver is shown as (--detach: who started it)
VENV = "MLFRAMEWORK_VENV"  # the virtual environment scripts/ and infra_clean.sh run in
