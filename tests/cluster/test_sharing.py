"""Two projects on the same two hosts, with the same master and fake GPUs: one trial per GPU across them.

Hosts 1 and 2 get one fake GPU each (``fake_gpus``: nvidia-smi, and a dockerd that takes ``--gpus`` requests).
Two checkouts, each with its own small project (echo trials of 3 s) and cluster name, run infrainit with
``-m 1 -w 1,2``: the second joins the first's broker (its own vhost and user) and is told that it shares
the GPUs. Their sweeps run at the same time; from the records, no two trials ever held one GPU of one host at
once, and trials of both projects ran on the same GPU. ``status --json`` shows both projects' trials.
``infra_clean.sh`` of the first leaves the second's workers and broker running, and a sweep still runs there.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from mlframework.cluster.services import BROKER_NAME, GPU_LOCK_DIR, LABEL_CLUSTER
from testbed.scripted import REPO, copy_repo, run, script_env
from testbed.testhosts import BASE_IMAGE

PROJECTS = ("mlft-alpha", "mlft-beta")
TASKS = "import mlframework as mlf\n\necho = mlf.echo_task()\n"
GRID = "n: [3]\nk: [1, 2, 3, 4, 5]\n"  # 5 trials of 3 s per project, 2 GPUs in all
PYTHON = str(REPO / ".venv" / "bin" / "python")


def _infrainit(repo: Path, env: dict[str, str], test_hosts, rabbitmq_image: str, name: str):
    return run(
        repo,
        "scripts/infrainit.sh",
        "-a",
        ",".join(test_hosts.host(i).destination for i in (1, 2)),
        "-i",
        str(test_hosts.client_key),
        "-r",
        f"mlf-{name}",
        "-d",
        name,
        "-m",
        "1",
        "-w",
        "1,2",
        "--base-image",
        BASE_IMAGE,
        "--broker-image",
        rabbitmq_image,
        "--image-source",
        "ship",
        "--cluster-name",
        name,
        env=env,
        timeout=1200,
    )


@pytest.fixture(scope="module")
def two_projects(test_hosts, rabbitmq_image, build_daemon_host, tmp_path_factory):
    """Both projects up on hosts 1 and 2 with one fake GPU each; name -> {"repo", "init"}; cleaned afterwards.

    The hosts share this machine's filesystem: their GPU lock directories (one per host name) go afterwards.
    """
    env = script_env(test_hosts, build_daemon_host)
    projects: dict[str, dict] = {}
    with test_hosts.fake_gpus(1), test_hosts.fake_gpus(2):
        try:
            for name in PROJECTS:
                repo = copy_repo(tmp_path_factory.mktemp(name) / "repo")
                project = repo / "projects" / name
                project.mkdir()
                (project / "tasks.py").write_text(TASKS)
                (project / "parameters.yml").write_text(GRID)
                (project / "requirements.txt").write_text("")
                result = _infrainit(repo, env, test_hosts, rabbitmq_image, name)
                projects[name] = {"repo": repo, "init": result}
                assert result.returncode == 0, result.stdout + result.stderr
            yield {"env": env, **projects}
        finally:
            for project in projects.values():
                clean = run(project["repo"], "./infra_clean.sh", "--volumes", "--yes", env=env, timeout=300)
                assert clean.returncode == 0, clean.stdout + clean.stderr
            for i in (1, 2):
                shutil.rmtree(Path(GPU_LOCK_DIR) / test_hosts.host(i).hostname, ignore_errors=True)
                left = test_hosts.docker(i).containers.list(all=True, filters={"label": LABEL_CLUSTER})
                assert left == [], f"left on host {i}: {[c.name for c in left]}"


def _sweep(repo: Path, env: dict[str, str], name: str, results: str) -> subprocess.Popen[str]:
    command = [PYTHON, "-m", "mlframework", "sweep", f"projects/{name}", "--task", "echo", "--max-batch", "1"]
    return subprocess.Popen(
        [*command, "--results", results],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def _records(repo: Path, results: str) -> list[dict]:
    (sweep_dir,) = (repo / results).iterdir()
    return [json.loads(line) for line in (sweep_dir / "trials.jsonl").read_text().splitlines() if line.strip()]


def _status(repo: Path, env: dict[str, str]) -> dict:
    done = run(repo, PYTHON, "-m", "mlframework", "status", "--json", "--timeout", "0.5", env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_two_projects_share_the_hosts_and_never_two_trials_on_one_gpu(two_projects, test_hosts):
    env = two_projects["env"]
    alpha, beta = (two_projects[name] for name in PROJECTS)
    joined = beta["init"].stdout
    assert "RabbitMQ already running" in joined and "on port 5556" in joined, joined
    assert "GPU 0 shared with project 'mlft-alpha'" in joined, joined

    sweeps = {name: _sweep(two_projects[name]["repo"], env, name, "shared") for name in PROJECTS}
    seen: set[str] = set()
    deadline = time.monotonic() + 300
    while any(p.poll() is None for p in sweeps.values()) and time.monotonic() < deadline:
        status = _status(alpha["repo"], env)
        assert len(status["nodes"]) == 2 and {h["hostname"] for h in status["hosts"]} == {"mlft1", "mlft2"}
        seen |= {gpu["project"] for host in status["hosts"] for gpu in host["gpus"] if gpu["project"]}
    outputs = {name: p.communicate(timeout=60)[0] for name, p in sweeps.items()}
    for name, p in sweeps.items():
        assert p.returncode == 0, outputs[name]

    held: dict[tuple[str, str], list[tuple[float, float, str]]] = {}
    for name in PROJECTS:
        records = _records(two_projects[name]["repo"], "shared")
        assert len(records) == 5 and {r["status"] for r in records} == {"SUCCESS"}
        for r in records:
            held.setdefault((r["host"], r["gpu"]), []).append((r["started_at"], r["finished_at"], name))
    assert set(held) == {("mlft1", "0"), ("mlft2", "0")}
    for gpu, spans in held.items():
        spans.sort()
        for (_, end, _), (start, _, _) in itertools.pairwise(spans):
            assert start >= end, f"two trials on GPU {gpu} at once: {spans}"
    assert any(len({name for *_, name in spans}) == 2 for spans in held.values()), "no GPU ran both projects"
    for gpu, spans in sorted(held.items()):  # in the test's output (-s): the order and the gaps, per GPU
        gaps = [round(start - end, 2) for (_, end, _), (start, _, _) in itertools.pairwise(spans)]
        print(f"GPU {gpu}: {' '.join(name[-4:] for *_, name in spans)}; gaps (s) {gaps}")
    for gpu, spans in held.items():  # in turn: a project that frees the GPU does not take it back ahead of the other
        order = [name for *_, name in spans]
        for i in range(len(order) - 2):
            if order[i] == order[i + 1] == order[i + 2]:
                assert set(order[i:]) == {order[i]}, f"GPU {gpu} did not alternate while both had trials: {order}"
    assert seen == set(PROJECTS), f"status --json showed trials of {seen} only"
    logs = [p.read_text() for name in PROJECTS for p in (two_projects[name]["repo"] / "shared").glob("*/logs/*.log")]
    assert any("waiting for GPU 0 of mlft" in text and "held by project mlft-" in text for text in logs)

    clean = run(alpha["repo"], "./infra_clean.sh", env=env, timeout=300)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert f"{BROKER_NAME} stays: project(s) mlft-beta use it" in clean.stdout, clean.stdout
    for i in (1, 2):
        docker = test_hosts.docker(i)
        assert docker.containers.list(all=True, filters={"label": f"{LABEL_CLUSTER}=mlft-alpha"}) == []
        assert [c.name for c in docker.containers.list(filters={"label": f"{LABEL_CLUSTER}=mlft-beta"})], i
    assert test_hosts.docker(1).containers.get(BROKER_NAME).status == "running"
    after = _sweep(beta["repo"], env, "mlft-beta", "after")
    output = after.communicate(timeout=300)[0]
    assert after.returncode == 0, output
    assert len(_records(beta["repo"], "after")) == 5
