"""Fair share between live sweeps on one broker: two drivers (processes) sharing one 4-slot worker.

What a user would see on a lab's cluster, measured from the records' start and end times: a sweep started
while another holds every slot gets its first trial within one trial length; over the overlap each holds
its share of the slots (``--share``), a higher ``--priority`` goes first, a killed driver's share goes to the
others, and no trial is lost or run twice. Tolerances are stated where they are asserted.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from scratch_projects import make_project, start_sweep

from mlframework.cluster.embedded.workers import LocalWorker
from mlframework.sweep.wire.app import BrokerSettings

SLOTS = 4
SLEEP = 3.0  # seconds each trial sleeps; a trial lasts about 3.3 s with the interpreter's start


@pytest.fixture
def shared(tmp_path: Path, vhost_url: str):
    """A project with two parameter files (16 and 8 trials) and one worker of 4 slots on a vhost of its own."""
    project = make_project(tmp_path / "proj", f"x: !!python/tuple [1, 17]\nsleep: [{SLEEP}]\n")
    (project / "b.yml").write_text(f"x: !!python/tuple [101, 109]\nsleep: [{SLEEP}]\n")
    broker = BrokerSettings(vhost_url)
    with LocalWorker(broker, project, SLOTS, tmp_path / "worker.log", node_name="lab@%h"):
        yield project, vhost_url


def _start(project: Path, results: Path, url: str, *options: str) -> subprocess.Popen[str]:
    return start_sweep(
        project.parent, str(project), "--results", str(results), "--metric", "loss", *options, broker_url=url
    )


def _sweep_dir(results: Path, timeout: float = 30) -> tuple[Path, float]:
    """The sweep's directory once its driver created it, and when (time.time(): the driver's start)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [path for path in results.glob("*") if (path / "sweep.json").exists()]
        if found:
            return found[0], time.time()
        time.sleep(0.02)
    raise AssertionError(f"no sweep started under {results}")


def _finish(process: subprocess.Popen[str], timeout: float = 150) -> str:
    output, _ = process.communicate(timeout=timeout)
    return output


def _records(sweep_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (sweep_dir / "trials.jsonl").read_text().splitlines()]


def _held(records: list[dict], t0: float, t1: float) -> float:
    """Slots the records' trials held on average between t0 and t1."""
    busy = sum(max(0.0, min(r["finished_at"], t1) - max(r["started_at"], t0)) for r in records)
    return busy / (t1 - t0)


def _whole(records: list[dict], count: int) -> None:
    """Every trial recorded once, succeeded, on its first attempt: nothing lost, nothing run twice."""
    assert len(records) == count
    assert len({r["trial"] for r in records}) == count
    assert {r["status"] for r in records} == {"SUCCESS"}
    assert all(int(r.get("attempt") or 1) == 1 and not r.get("attempts") for r in records)


def _two_sweeps(tmp_path: Path, project: Path, url: str, wait: float, *b_options: str):
    """A (16 trials) alone, then after ``wait`` s B (8 trials, ``b_options``); both run to the end, whole.

    Returns A's and B's records and the time B's driver started.
    """
    a = _start(project, tmp_path / "ra", url)
    a_dir, _ = _sweep_dir(tmp_path / "ra")
    time.sleep(wait)
    b = _start(project, tmp_path / "rb", url, "-p", str(project / "b.yml"), *b_options)
    b_dir, b_start = _sweep_dir(tmp_path / "rb")
    out_a, out_b = _finish(a), _finish(b)
    assert a.returncode == 0 and b.returncode == 0, out_a + out_b
    a_records, b_records = _records(a_dir), _records(b_dir)
    _whole(a_records, 16)  # A's running trials were never stopped
    _whole(b_records, 8)
    return a_records, b_records, b_start


def test_a_second_sweep_gets_the_next_free_slot_and_half_of_them(tmp_path, shared):
    project, url = shared
    a_records, b_records, b_start = _two_sweeps(tmp_path, project, url, SLEEP + 1.5)  # A holds every slot first

    trial_length = sorted(r["finished_at"] - r["started_at"] for r in a_records)[8]
    first_b = min(r["started_at"] for r in b_records)
    # Within one trial length of the driver's start (A's backlog does not go first).
    assert first_b - b_start <= trial_length, (first_b - b_start, trial_length)

    # Over the overlap (B's first start to the last start of either), each holds about half: 2 of 4 slots,
    # within 25% (the ramp of B's first trials and 8 trials of 3 s make the overlap short).
    t1 = min(max(r["started_at"] for r in a_records), max(r["started_at"] for r in b_records))
    held_a, held_b = _held(a_records, first_b, t1), _held(b_records, first_b, t1)
    assert 1.5 <= held_b <= 2.5 and 1.5 <= held_a <= 2.5, (held_a, held_b)


def test_share_three_holds_three_slots_of_four(tmp_path, shared):
    project, url = shared
    a_records, b_records, _ = _two_sweeps(tmp_path, project, url, 1.0, "--share", "3")
    # Fair: 4 * 3/4 = 3 slots for B, 1 for A; within 25%, from B's first start to its last start.
    t0 = min(r["started_at"] for r in b_records)
    t1 = max(r["started_at"] for r in b_records)
    held_b = _held(b_records, t0, t1)
    assert 2.25 <= held_b <= 3.5, held_b
    assert _held(a_records, t0, t1) >= 0.75, "a sweep of share 1 keeps a slot"


def test_a_higher_priority_goes_first_and_stops_nothing(tmp_path, shared):
    project, url = shared
    a_records, b_records, _ = _two_sweeps(tmp_path, project, url, 1.0, "--priority", "1")
    # Once B's first trials started, A starts nothing new until B has no trial left to start (A's lookahead,
    # at most two trials queued before B came, may still start: one per slot of half the slots).
    first_b, last_b = min(r["started_at"] for r in b_records), max(r["started_at"] for r in b_records)
    a_meanwhile = [r for r in a_records if first_b < r["started_at"] < last_b]
    assert len(a_meanwhile) <= SLOTS // 2, [r["trial"] for r in a_meanwhile]


def test_a_killed_driver_frees_its_share(tmp_path, shared):
    project, url = shared
    (project / "a.yml").write_text(f"x: !!python/tuple [1, 29]\nsleep: [{SLEEP}]\n")
    a = _start(project, tmp_path / "ra", url, "-p", str(project / "a.yml"))
    a_dir, _ = _sweep_dir(tmp_path / "ra")
    (project / "b.yml").write_text(f"x: !!python/tuple [101, 141]\nsleep: [{SLEEP}]\n")  # more than fits in the test
    b = _start(project, tmp_path / "rb", url, "-p", str(project / "b.yml"))
    _sweep_dir(tmp_path / "rb")
    time.sleep(2 * SLEEP + 1)  # both hold two slots
    b.send_signal(signal.SIGKILL)  # no goodbye: A forgets B once B is no longer heard of
    killed = time.time()
    out_a = _finish(a)
    _finish(b)
    assert a.returncode == 0, out_a
    a_records = _records(a_dir)
    _whole(a_records, 28)
    # B's trials already started or queued first in line (at most its two slots' worth) run on; from then on
    # (the 4 s before B is forgotten, then one trial length), A holds every slot until its own trials run out.
    t0 = killed + 4.0 + 2 * (SLEEP + 0.5)
    t1 = max(r["started_at"] for r in a_records)
    assert t1 > t0 + 2, "A still had trials to start once B's share was freed"
    assert _held(a_records, t0, t1) >= SLOTS - 0.5
