"""Container specs of the cluster (what runs on the hosts), checked without a Docker daemon.

The GPU paths live here: one worker container per GPU, each with a device
request for exactly that GPU; the real daemon path runs in tests/cluster and,
on a GPU machine, tests/gpu.
"""

from __future__ import annotations

import os

import pytest

from mlframework import envvars
from mlframework.cluster.gpus import parse_gpu_list, parse_gpu_option
from mlframework.cluster.services import (
    BROKER_NAME,
    BROKER_VOLUME,
    GPU_LOCK_DIR,
    LABEL_CLUSTER,
    LABEL_CONFIG,
    LABEL_NODE,
    SHARED,
    broker_spec,
    flower_spec,
    gpu_memory_fraction,
    run_options,
    worker_specs,
)
from mlframework.exceptions import ConfigError

CODE = {"project": "/home/u/mlf/project", "source": "/home/u/mlf/src"}
URL = "amqp://mlf:secret@10.0.0.1:5672/mlf"

NVIDIA_SMI_L = """\
GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-64e9184c-2825-82d1-d2e6-f4aac41cebc2)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-0b1c2d3e-0000-1111-2222-333344445555)
  MIG 3g.20gb     Device  0: (UUID: MIG-11111111-2222-3333-4444-555555555555)
"""


def test_one_worker_container_per_gpu_each_pinned_to_its_gpu():
    specs = worker_specs("exp", "img:1", URL, "gpu1", ["0", "1"], cpu_slots=8, code_paths=CODE)
    assert [s.name for s in specs] == ["exp-worker-gpu0", "exp-worker-gpu1"]
    assert [s.node for s in specs] == ["gpu0@gpu1", "gpu1@gpu1"]
    for spec, gpu in zip(specs, ["0", "1"]):
        options = run_options("exp", spec)
        (request,) = options["device_requests"]
        assert request["DeviceIDs"] == [gpu] and request["Capabilities"] == [["gpu"]]
        assert spec.environment["MLFRAMEWORK_GPU"] == gpu
        assert spec.command[spec.command.index("--concurrency") + 1] == "1", "one trial at a time per GPU"
        assert options["labels"][LABEL_NODE] == f"gpu{gpu}@gpu1"


def test_a_cpu_host_gets_one_worker_with_its_slots_and_no_device_request():
    (spec,) = worker_specs("exp", "img:1", URL, "box", [], cpu_slots=6, code_paths=CODE)
    options = run_options("exp", spec)
    assert options["device_requests"] is None and spec.gpu is None
    assert spec.command[spec.command.index("--concurrency") + 1] == "6"
    assert spec.command[spec.command.index("--hostname") + 1] == "cpu@box"
    assert options["init"] is True and options["shm_size"] == "1g" and options["network_mode"] == "host"
    assert options["user"] is None, "the image's unprivileged user runs the trials"
    assert options["volumes"][CODE["project"]]["mode"] == "ro"


def test_every_container_is_labelled_with_its_cluster_and_config():
    specs = [
        flower_spec("exp", "img:1", URL, "admin:pw", CODE),
        *worker_specs("exp", "img:1", URL, "h", ["0"], 1, CODE),
    ]
    for spec in specs:
        labels = run_options("exp", spec)["labels"]
        assert labels[LABEL_CLUSTER] == "exp" and labels[LABEL_CONFIG] == spec.config_hash()
        assert run_options("exp", spec)["restart_policy"] == {"Name": "unless-stopped"}


def test_config_hash_changes_with_anything_that_needs_a_new_container():
    (a,) = worker_specs("exp", "img:1", URL, "h", [], 2, CODE)
    (b,) = worker_specs("exp", "img:1", URL, "h", [], 3, CODE)
    (c,) = worker_specs("exp", "img:2", URL, "h", [], 2, CODE)
    assert len({a.config_hash(), b.config_hash(), c.config_hash()}) == 3
    assert a.config_hash() == worker_specs("exp", "img:1", URL, "h", [], 2, CODE)[0].config_hash()


def test_the_broker_is_shared_carries_no_project_credentials_and_keeps_erlang_ports_on_loopback():
    spec = broker_spec("rabbitmq:3-management", "/home/u/.mlframework/broker/rabbitmq.conf")
    assert spec.name == BROKER_NAME and not any(k.startswith("RABBITMQ_DEFAULT") for k in spec.environment)
    assert spec.environment["ERL_EPMD_ADDRESS"] == "127.0.0.1"
    assert "{127,0,0,1}" in spec.environment["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"]
    assert BROKER_VOLUME in spec.volumes, "durable data volume"
    options = run_options(SHARED, spec)
    assert options["init"] is False and options["labels"][LABEL_CLUSTER] == SHARED


def test_gpu_workers_of_every_project_mount_the_hosts_gpu_locks_and_packed_trials_see_their_memory_share():
    (alone,) = worker_specs("exp", "img:1", URL, "h", ["0"], 1, CODE)
    assert alone.volumes[GPU_LOCK_DIR] == {"bind": GPU_LOCK_DIR, "mode": "rw"}
    assert alone.environment[envvars.GPU_LOCK_DIR] == GPU_LOCK_DIR and alone.environment[envvars.CLUSTER_NAME] == "exp"
    assert alone.environment[envvars.GPU_MEMORY_FRACTION] == "1"
    packed = worker_specs("exp", "img:1", URL, "h", ["0", "1"], 1, CODE, trials_per_gpu=3)
    assert [s.environment[envvars.GPU_MEMORY_FRACTION] for s in packed] == ["0.333", "0.333"]
    assert packed[0].environment[envvars.TRIALS_PER_GPU] == "3" and packed[0].environment[envvars.SLOTS] == "6"
    assert "--concurrency 3" in " ".join(packed[0].command or [])
    (cpu,) = worker_specs("exp", "img:1", URL, "h", [], 4, CODE)
    assert GPU_LOCK_DIR not in cpu.volumes and envvars.GPU_LOCK_DIR not in cpu.environment, "CPU workers take no lock"
    assert gpu_memory_fraction(2) == "0.5"


def test_flower_requires_basic_auth():
    spec = flower_spec("exp", "img:1", URL, "admin:pw", CODE)
    assert spec.environment["FLOWER_BASIC_AUTH"] == "admin:pw"
    assert "--port=5555" in spec.command
    assert "--port=5556" in flower_spec("other", "img:1", URL, "admin:pw", CODE, 5556).command


def test_nvidia_smi_list_gives_the_gpu_indices_and_ignores_mig_lines():
    assert parse_gpu_list(NVIDIA_SMI_L) == ["0", "1"]
    assert parse_gpu_list("") == []
    assert parse_gpu_list("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.") == []


def test_gpus_option():
    assert parse_gpu_option(None) == []
    assert parse_gpu_option("0, 2") == ["0", "2"]
    for bad in ("x", "0,0", "", "-1"):
        with pytest.raises(ConfigError, match="--gpus"):
            parse_gpu_option(bad)


def test_worker_containers_tell_their_trials_how_many_share_the_host_cpus():
    """MLFRAMEWORK_SLOTS is what trial_env.thread_limits divides the CPUs by (OMP_NUM_THREADS per trial)."""
    from mlframework.sweep.trials.trial_env import ENV_SLOTS, thread_limits

    gpu_specs = worker_specs("exp", "img:1", URL, "gpu1", ["0", "1", "2"], cpu_slots=8, code_paths=CODE)
    assert {spec.environment[ENV_SLOTS] for spec in gpu_specs} == {"3"}, "one trial per GPU, three at once"
    (cpu_spec,) = worker_specs("exp", "img:1", URL, "box", [], cpu_slots=6, code_paths=CODE)
    assert cpu_spec.environment[ENV_SLOTS] == "6"
    share = str(max(1, (os.cpu_count() or 1) // 6))
    assert thread_limits(cpu_spec.environment) == {"OMP_NUM_THREADS": share, "MKL_NUM_THREADS": share}
    assert thread_limits({**cpu_spec.environment, "OMP_NUM_THREADS": "3"}) == {"MKL_NUM_THREADS": share}


def test_embedded_gpu_workers_count_every_gpu_s_trials_as_sharing_the_cpus(tmp_path):
    from mlframework.cluster.embedded.workers import EmbeddedCluster
    from mlframework.sweep.trials.trial_env import ENV_SLOTS

    cluster = EmbeddedCluster(tmp_path, workers=2, run_dir=tmp_path / "run", gpus=["0", "1"])
    assert [w.extra_env[ENV_SLOTS] for w in cluster.local_workers] == ["4", "4"]
