"""One trial per GPU across projects: the lock files, who holds them, and a trial that waits its turn.

Real processes and real ``flock`` locks in a temporary directory (the host's ``/var/lib/mlframework/gpus``).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlframework import envvars
from mlframework.cluster.bootstrap import sharing_lines
from mlframework.cluster.hosts import Host
from mlframework.cluster.lab import parse_probe, probe_script
from mlframework.cluster.preflight import HostFacts, Neighbour
from mlframework.sweep.trials.gpu_slot import Holder, acquire, holders, holders_of
from mlframework.sweep.trials.tasks import execute_trial
from mlframework.sweep.trials.trial import Trial

CTX = multiprocessing.get_context("fork")


def _holder(project: str, trial: str, gpu: str = "0", host: str = "box") -> Holder:
    return Holder(project=project, sweep="s1", trial=trial, since="", pid=os.getpid(), host=host, gpu=gpu)


def _hold(directory: str, holder: Holder, seconds: float, per_gpu: int, started: object, die: bool = False) -> None:
    slot = acquire(directory, Holder(**{**holder.__dict__, "pid": os.getpid()}), per_gpu)
    started.set()  # type: ignore[attr-defined]
    time.sleep(seconds)
    if die:
        os._exit(0)  # no release: the kernel drops the lock with the process
    assert slot is not None
    slot.release()


def _holding(directory: Path, holder: Holder, seconds: float, per_gpu: int = 1, die: bool = False):
    started = CTX.Event()
    process = CTX.Process(target=_hold, args=(str(directory), holder, seconds, per_gpu, started, die))
    process.start()
    assert started.wait(10), "the holder did not get the GPU"
    return process


def test_a_second_process_waits_for_the_gpu_and_is_told_who_holds_it(tmp_path):
    first = _holding(tmp_path, _holder("alpha", "t0001"), 1.0)
    told: list[list[Holder]] = []
    began = time.monotonic()
    slot = acquire(str(tmp_path), _holder("beta", "t0002"), waiting=told.append, poll=0.05)
    waited = time.monotonic() - began
    first.join(10)
    assert slot is not None and 0.5 < waited < 5, waited
    ((holder,),) = told
    assert (holder.project, holder.sweep, holder.trial, holder.host, holder.gpu) == ("alpha", "s1", "t0001", "box", "0")
    assert holder.pid == first.pid and holder.since.endswith("+00:00")
    assert "project alpha sweep s1 trial t0001 since" in holder.describe()
    assert [h["trial"] for h in holders(str(tmp_path), "box")["0"]] == ["t0002"]
    slot.release()
    assert holders(str(tmp_path), "box") == {"0": []}, "a released GPU is free, whatever the file held"


def _wait_then_hold(directory: str, seconds: float, go: object, got: object) -> None:
    go.wait(10)  # type: ignore[attr-defined]
    slot = acquire(directory, _holder("beta", "t0002"), poll=0.05)
    got.value = time.time()  # type: ignore[attr-defined]
    time.sleep(seconds)
    assert slot is not None
    slot.release()


def test_waiting_trials_take_the_gpu_in_turn_not_the_worker_that_just_freed_it(tmp_path):
    directory = str(tmp_path)
    go, got = CTX.Event(), CTX.Value("d", 0.0)
    # Forked before this process opens a lock file: a forked child would share its lock.
    waiter = CTX.Process(target=_wait_then_hold, args=(directory, 0.5, go, got))
    waiter.start()
    first = acquire(directory, _holder("alpha", "t0001"))
    go.set()
    deadline = time.monotonic() + 10
    while not any(".wait." in name for name in os.listdir(tmp_path / "box")) and time.monotonic() < deadline:
        time.sleep(0.02)  # until the waiter is in line
    assert first is not None
    first.release()
    again = acquire(directory, _holder("alpha", "t0003"), poll=0.05)  # at once, as a worker's next trial would
    took_again = time.time()
    waiter.join(10)
    assert again is not None and got.value > 0 and took_again >= got.value + 0.4, "the waiter went first"
    again.release()
    assert not [name for name in os.listdir(tmp_path / "box") if ".wait." in name], "no place left in line"


def test_a_process_that_dies_holding_the_gpu_frees_it(tmp_path):
    dead = _holding(tmp_path, _holder("alpha", "t0001"), 0.0, die=True)
    dead.join(10)
    assert holders_of(str(tmp_path), "box", "0") == [], "the dead holder's JSON is left, its lock is not"
    slot = acquire(str(tmp_path), _holder("beta", "t0002"), stopped=lambda: True)
    assert slot is not None, "no wait after the holder died"
    slot.release()


def test_other_gpus_and_hosts_are_not_held(tmp_path):
    first = _holding(tmp_path, _holder("alpha", "t0001", gpu="0"), 1.0)
    for other in (_holder("beta", "t1", gpu="1"), _holder("beta", "t2", gpu="0", host="box2")):
        slot = acquire(str(tmp_path), other, stopped=lambda: True)
        assert slot is not None, other
        slot.release()
    assert acquire(str(tmp_path), _holder("beta", "t3"), stopped=lambda: True) is None, "GPU 0 of box is held"
    first.join(10)


def test_packed_trials_share_a_gpu_up_to_n_and_never_next_to_a_trial_alone(tmp_path):
    directory = str(tmp_path)
    a = acquire(directory, _holder("alpha", "p1"), 2)
    b = acquire(directory, _holder("alpha", "p2"), 2)
    assert a is not None and b is not None and {a.holder.slot, b.holder.slot} == {0, 1}
    assert acquire(directory, _holder("alpha", "p3"), 2, stopped=lambda: True) is None, "2 slots, both taken"
    told: list[list[Holder]] = []
    assert acquire(directory, _holder("beta", "x1"), 1, waiting=told.append, stopped=lambda: True) is None
    assert sorted(h.trial for h in told[0]) == ["p1", "p2"]
    assert sorted(h["trial"] for h in holders(directory, "box")["0"]) == ["p1", "p2"]
    a.release()
    b.release()
    alone = acquire(directory, _holder("beta", "x1"), 1)
    assert alone is not None
    assert acquire(directory, _holder("alpha", "p4"), 2, stopped=lambda: True) is None, "the GPU is x1's alone"
    alone.release()


def test_status_probe_reads_the_holders_as_it_does_on_a_host(tmp_path):
    """The probe is the lock module's own source, run alone by a bare python (as over SSH on a host)."""
    host = socket.gethostname()
    first = _holding(tmp_path, _holder("alpha", "t0001", gpu="1", host=host), 2.0)
    second = CTX.Process(target=acquire, args=(str(tmp_path), _holder("beta", "t0002", gpu="1", host=host)))
    second.start()  # waits for GPU 1 behind alpha's trial
    deadline = time.monotonic() + 10
    while not any(".wait." in n for n in os.listdir(tmp_path / host)) and time.monotonic() < deadline:
        time.sleep(0.02)
    done = subprocess.run(
        [sys.executable, "-c", probe_script(), str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    first.join(10)
    second.join(10)
    assert done.returncode == 0, done.stderr
    use = parse_probe("user@box", done.stdout)
    assert use.hostname == host and use.error is None
    (gpu,) = use.gpus
    assert (gpu.gpu, gpu.project, gpu.trial, gpu.sweep, gpu.waiting) == ("1", "alpha", "t0001", "s1", 1)
    assert json.loads(json.dumps(use.as_dict()))["gpus"][0]["project"] == "alpha"


def test_a_trial_on_a_cluster_gpu_waits_its_turn_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv(envvars.GPU_LOCK_DIR, str(tmp_path))
    monkeypatch.setenv(envvars.CLUSTER_NAME, "beta")
    first = _holding(tmp_path, _holder("alpha", "t0001"), 1.0)
    freed_after = time.time()
    events: list[dict] = []
    trial = Trial(sweep_id="s2", id="t0009", index=0, params={}, host="box", gpu="0")
    record = execute_trial(lambda t: {"ok": 1}, trial, events.append)
    first.join(10)
    output = " ".join(line for e in events if e.get("type") == "output" for c in e["chunks"] for line in c)
    assert "waiting for GPU 0 of box, held by project alpha sweep s1 trial t0001 since" in output
    assert record["status"] == "SUCCESS" and record["started_at"] >= freed_after + 0.5, "the wait is not the trial's"
    assert holders(str(tmp_path), "box") == {"0": []}, "released when the trial ended"


def test_embedded_and_cpu_trials_take_no_lock(tmp_path, monkeypatch):
    monkeypatch.delenv(envvars.GPU_LOCK_DIR, raising=False)
    first = _holding(tmp_path, _holder("alpha", "t0001"), 1.0)
    began = time.monotonic()
    execute_trial(lambda t: None, Trial(sweep_id="s", id="t0", index=0, params={}, host="box", gpu="0"), lambda e: None)
    monkeypatch.setenv(envvars.GPU_LOCK_DIR, str(tmp_path))
    execute_trial(
        lambda t: None, Trial(sweep_id="s", id="t1", index=0, params={}, host="box", gpu=None), lambda e: None
    )
    assert time.monotonic() - began < 0.5
    first.join(10)


@pytest.mark.parametrize(
    ("gpus", "neighbour", "expected"),
    [
        (["0", "1"], Neighbour("mnist", gpus=("1", "2")), "GPU 1 shared with project 'mnist'"),
        ([], Neighbour("mnist", cpu_slots=8), "project 'mnist' runs a worker with 8 slot(s) on these 8 CPU(s)"),
        (["0"], Neighbour("mnist", cpu_slots=8), None),
    ],
)
def test_infrainit_names_what_a_host_shares_with_other_projects(gpus, neighbour, expected):
    facts = HostFacts(Host.local(), "box", gpus=gpus, cpus=8, neighbours=[neighbour])
    lines = sharing_lines(facts, 8)
    assert (lines[0] if lines else None) is None if expected is None else expected in lines[0]
    if expected and not gpus:
        assert "--cpu-slots" in lines[0]


def test_status_prints_one_line_per_host_and_gpu():
    from mlframework.cli.cluster import _gpu_line
    from mlframework.cluster.lab import GpuUse

    held = GpuUse("0", "mnist", "20261207-140210-3f2a", "t0004", "2026-12-07T14:03:55+00:00", 42.0, 1000.0)
    assert _gpu_line("gpubox1", held) == (
        "  gpubox1 GPU 0: project mnist, sweep 20261207-140210-3f2a, trial t0004 since 2026-12-07T14:03:55+00:00"
        " (42% 1000 MiB)"
    )
    assert _gpu_line("gpubox1", GpuUse("1")) == "  gpubox1 GPU 1: free"
    assert _gpu_line("b", GpuUse("0", "m", "s", "t1", "now", waiting=2)) == (
        "  b GPU 0: project m, sweep s, trial t1 since now, 2 trial(s) waiting"
    )
