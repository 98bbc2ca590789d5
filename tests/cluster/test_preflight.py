"""infrainit's preflight on real test hosts: a bad host is named, with its reason, before anything starts."""

from __future__ import annotations

import time

from mlframework.cluster.services import LABEL_CLUSTER
from scripted import copy_repo, run, script_env
from testhosts import BASE_IMAGE

# An address on the test hosts' bridge where no host is: connections to it time out.
NOBODY = "10.231.7.99"


def test_an_unreachable_host_fails_preflight_naming_only_it(test_hosts, build_daemon_host, tmp_path):
    repo = copy_repo(tmp_path / "repo")
    env = script_env(test_hosts, build_daemon_host)
    started = time.monotonic()
    result = run(
        repo, "scripts/infrainit.sh",
        "-a", f"{test_hosts.host(1).destination},mlft2@{NOBODY}", "-i", str(test_hosts.client_key),
        "-r", "mlf-preflight", "-d", "sklearn_digits", "-m", "1", "-w", "1,2",
        "--base-image", BASE_IMAGE, "--cluster-name", "mlft-preflight", "--connect-timeout", "3",
        env=env, timeout=120,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stdout + result.stderr
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert NOBODY in errors[0] and "preflight" in errors[0]
    assert test_hosts.host(1).address not in errors[0], "only the bad host is named"
    assert elapsed < 60, f"took {elapsed:.0f}s with a 3 s connect timeout"
    assert test_hosts.docker(1).containers.list(all=True, filters={"label": f"{LABEL_CLUSTER}=mlft-preflight"}) == []


def test_an_unknown_host_key_is_refused_unless_accepted(test_hosts, build_daemon_host, tmp_path):
    repo = copy_repo(tmp_path / "repo")
    env = script_env(test_hosts, build_daemon_host)
    empty_known_hosts = tmp_path / "known_hosts"
    empty_known_hosts.write_text("")
    env["MLFRAMEWORK_KNOWN_HOSTS"] = str(empty_known_hosts)
    argv = ["scripts/infrainit.sh", "-a", test_hosts.host(2).destination, "-i", str(test_hosts.client_key),
            "-r", "mlf-preflight", "-d", "sklearn_digits", "-w", "1", "-b", "127.0.0.1",
            "--base-image", BASE_IMAGE, "--cluster-name", "mlft-hostkey", "--connect-timeout", "5"]
    refused = run(repo, *argv, env=env, timeout=120)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "host key unknown" in refused.stderr and test_hosts.host(2).address in refused.stderr
    assert empty_known_hosts.read_text() == "", "nothing is recorded without --accept-new-host-keys"
