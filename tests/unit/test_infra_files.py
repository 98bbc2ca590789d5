"""The files under infra/ and nvdocker_install/: the NVIDIA installer script, the
worker Dockerfile and the broker's rabbitmq.conf, checked without a host, a
Docker daemon or a GPU.

The installer's real path is exercised through a fake ``ssh`` that runs the
remote command in a bare POSIX shell whose PATH holds no apt-get: the script
stops at its first prerequisite check, so nothing is ever installed here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALLER = ROOT / "nvdocker_install" / "install_ubuntu.sh"
DOCKERFILE = ROOT / "infra" / "worker" / "Dockerfile"
RABBITMQ_CONF = ROOT / "infra" / "rabbitmq" / "rabbitmq.conf"


# -- nvdocker_install/install_ubuntu.sh ---------------------------------------


def _fake_ssh(bin_dir: Path, record: Path, body: str = "") -> None:
    """An ``ssh`` first on PATH that writes its arguments to ``record``, then runs ``body``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    ssh = bin_dir / "ssh"
    ssh.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{record}"\n{body}\n')
    ssh.chmod(0o755)


def _run_installer(args: list[str], bin_dir: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(
        ["bash", str(INSTALLER), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_installer_is_valid_bash():
    subprocess.run(["bash", "-n", str(INSTALLER)], check=True, capture_output=True, timeout=30)


SHELL_SCRIPTS = sorted(
    [
        *ROOT.glob("scripts/**/*.sh"),
        *ROOT.glob("nvdocker_install/*.sh"),
        *ROOT.glob("bench/*.sh"),
        *ROOT.glob("testbed/images/*/*.sh"),
        ROOT / ".ci" / "run",
    ]
)


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_shell_scripts_pass_shellcheck(script):
    # Not a skip: scripts/test.sh installs shellcheck; without it this says what is missing.
    assert shutil.which("shellcheck"), "shellcheck is not installed (Debian: apt-get install shellcheck)"
    result = subprocess.run(["shellcheck", "-x", str(script)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_installer_is_executable():
    assert os.access(INSTALLER, os.X_OK)


def test_dry_run_prints_every_step_and_connects_nowhere(tmp_path):
    record = tmp_path / "ssh-called"
    _fake_ssh(tmp_path / "bin", record)

    result = _run_installer(
        ["--dry-run", "user@gpu1", "--smoke-image", "nvidia/cuda:12.4.1-base-ubuntu22.04"], tmp_path / "bin"
    )

    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "user@gpu1" in out
    # 1. NVIDIA's repository, its key in the keyring the list is signed-by
    assert "https://nvidia.github.io/libnvidia-container" in out
    assert "/gpgkey" in out and "gpg --batch --yes --dearmor" in out
    assert "stable/deb/nvidia-container-toolkit.list" in out
    assert "signed-by=$keyring" in out
    assert "/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg" in out
    # 2. the package, skipped when dpkg knows it installed
    assert "dpkg -s nvidia-container-toolkit" in out
    assert "apt-get install -y nvidia-container-toolkit" in out
    # 3. + 4. Docker's runtime, and a restart only then
    assert "nvidia-ctk runtime configure --runtime=docker" in out
    assert "/etc/docker/daemon.json" in out
    assert "systemctl restart docker" in out
    # 5. the smoke check with the chosen image
    assert re.search(r'docker run --rm --gpus all "\$smoke_image" nvidia-smi', out)
    assert out.rstrip().endswith("remote_install nvidia/cuda:12.4.1-base-ubuntu22.04")
    assert not record.exists(), "--dry-run called ssh"


def test_missing_host_is_a_usage_error_of_one_line(tmp_path):
    record = tmp_path / "ssh-called"
    _fake_ssh(tmp_path / "bin", record)

    result = _run_installer(["--dry-run"], tmp_path / "bin")

    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing host" in lines[0] and "usage:" in lines[0]
    assert not record.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["user@gpu1", "--bogus"], "unknown option --bogus"),
        (["user@gpu1", "user@gpu2"], "one host at a time"),
        (["user@gpu1", "-i"], "-i needs a key file"),
        (["user@gpu1", "-i", "/nonexistent/key"], "cannot read key file /nonexistent/key"),
    ],
)
def test_bad_usage_exits_2_without_connecting(tmp_path, args, message):
    record = tmp_path / "ssh-called"
    _fake_ssh(tmp_path / "bin", record)

    result = _run_installer(args, tmp_path / "bin")

    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not record.exists()


def test_remote_command_survives_a_posix_login_shell(tmp_path):
    """The real path: ssh gets the key and host, and its command decodes and runs on the "host".

    The fake host is /bin/sh with only bash, base64, id, a hostname and a
    pass-through sudo on PATH: the script fails its apt-get check there, which
    proves the payload ran, and the local side turns that into exit 1.
    """
    remote = tmp_path / "remote"
    remote.mkdir()
    for tool in ("bash", "base64", "id"):
        found = shutil.which(tool)
        assert found, f"{tool} not found"
        (remote / tool).symlink_to(found)
    for name, body in (("hostname", "echo gpu1"), ("sudo", 'exec "$@"')):
        (remote / name).write_text(f"#!/bin/sh\n{body}\n")
        (remote / name).chmod(0o755)
    record = tmp_path / "ssh-args"
    key = tmp_path / "id_test"
    key.write_text("not a real key\n")
    # The remote command is ssh's last argument; a login shell runs it.
    _fake_ssh(tmp_path / "bin", record, f'for last; do :; done\nexec env PATH="{remote}" /bin/sh -c "$last"')

    result = _run_installer(["user@gpu1", "-i", str(key), "--smoke-image", "my image"], tmp_path / "bin")

    args = record.read_text().splitlines()
    assert args[-2] == "user@gpu1"
    assert ["-i", str(key), "-o", "IdentitiesOnly=yes"] == args[args.index("-i") : args.index("-i") + 4]
    assert "-t" not in args  # no terminal here: nothing for sudo to prompt on
    assert "==> gpu1: prerequisites" in result.stdout
    assert "gpu1 has no apt-get" in result.stderr
    assert result.returncode == 1
    assert "installation failed on user@gpu1 (exit 3)" in result.stderr


# -- infra/worker/Dockerfile --------------------------------------------------


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, continuation lines joined."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        keyword, _, rest = full.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continuation"
    return result


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return _instructions(DOCKERFILE)


def _all(instructions: list[tuple[str, str]], keyword: str) -> list[str]:
    return [rest for kw, rest in instructions if kw == keyword]


def test_base_image_is_a_build_arg_with_a_python_default(dockerfile):
    first_from = next(i for i, (kw, _) in enumerate(dockerfile) if kw == "FROM")
    before = [rest for kw, rest in dockerfile[:first_from] if kw == "ARG"]
    assert "BASE_IMAGE=python:3.11-slim" in before
    assert dockerfile[first_from][1] == "${BASE_IMAGE}"
    assert len(_all(dockerfile, "FROM")) == 1


def test_everything_is_installed_into_a_venv_on_path(dockerfile):
    runs = " ".join(_all(dockerfile, "RUN"))
    assert 'python3 -m venv "$VIRTUAL_ENV"' in runs
    env = " ".join(_all(dockerfile, "ENV"))
    assert "VIRTUAL_ENV=/opt/mlframework/venv" in env
    assert "PATH=/opt/mlframework/venv/bin:$PATH" in env
    pip_installs = re.findall(r"pip install [^;]*", runs)
    assert pip_installs, "no pip install"
    for command in pip_installs:
        assert "--no-cache-dir" in command and " -c " in command, command
    assert "pip3 install" not in runs and "python3 -m pip install" not in runs  # the system pip: PEP 668


def test_worker_runs_as_a_non_root_user(dockerfile):
    users = _all(dockerfile, "USER")
    assert users, "no USER: the worker would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert "useradd" in " ".join(_all(dockerfile, "RUN"))


def test_worker_environment_label_and_command(dockerfile):
    env = " ".join(_all(dockerfile, "ENV"))
    assert "MLFRAMEWORK_PROJECT=/opt/mlframework/project" in env
    assert "PYTHONUNBUFFERED=1" in env
    assert "org.mlframework.component=worker" in " ".join(_all(dockerfile, "LABEL"))
    # No ENTRYPOINT: the bootstrapper's command (worker, flower, status) replaces CMD whole.
    assert not _all(dockerfile, "ENTRYPOINT")
    (cmd,) = _all(dockerfile, "CMD")
    assert cmd.startswith('["celery", "-A", "mlframework.sweep.trials.worker", "worker"')


def test_only_classic_builder_syntax(dockerfile):
    """The docker SDK's images.build() uses the classic builder: no BuildKit-only features."""
    text = DOCKERFILE.read_text()
    assert "--mount=" not in text
    assert "<<" not in text  # heredocs
    assert not text.lstrip().startswith("# syntax=")


def test_copy_sources_are_the_documented_context(dockerfile):
    """Required sources exist in every staging directory; optional ones end in '*'."""
    layout = {"mlframework", "setup.cfg", "pyproject.toml", "constraints.txt", "project/"}
    for rest in _all(dockerfile, "COPY"):
        sources = [word for word in rest.split()[:-1] if not word.startswith("--")]
        for source in sources:
            if not source.endswith("*"):
                assert source in layout, f"COPY {source}: not in the documented context layout"


# -- infra/rabbitmq/rabbitmq.conf ----------------------------------------------


def _conf() -> dict[str, str]:
    values = {}
    for line in RABBITMQ_CONF.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"not a key = value line: {line!r}"
            values[key.strip()] = value.strip()
    return values


# RabbitMQ's consumer_timeout when a broker leaves it unset (ms).
RABBITMQ_DEFAULT_CONSUMER_TIMEOUT_MS = 30 * 60 * 1000


def test_the_lease_comes_well_before_the_consumer_timeout():
    from mlframework.sweep.wire.app import LEASE_SETTING, sweep_defaults

    # acks_late: a trial's message stays unacked until the worker's lease acknowledges it early
    # (sweep/trials/lease.py); the broker must not cut it first, ours nor one left at RabbitMQ's default.
    lease_ms = sweep_defaults()[LEASE_SETTING] * 1000
    assert 0 < 2 * lease_ms <= RABBITMQ_DEFAULT_CONSUMER_TIMEOUT_MS
    assert 2 * lease_ms <= int(_conf()["consumer_timeout"])


def test_broker_keeps_long_trials_and_guest_local():
    conf = _conf()
    # Wide margin for tasks that are not trials (these have no lease).
    assert int(conf["consumer_timeout"]) >= 24 * 3600 * 1000
    assert 0 < int(conf["heartbeat"]) <= 60
    assert conf["loopback_users.guest"] == "true"
    assert conf["management.tcp.ip"] == "127.0.0.1"
    assert "default_pass" not in conf and "default_user" not in conf  # secrets come from the environment
