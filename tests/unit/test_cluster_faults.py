"""Host faults as a user sees them: one line naming host and step; and the epochs of a sweep's liveness."""

from __future__ import annotations

import paramiko
import pytest

from mlframework.cluster.hosts import Host
from mlframework.cluster.ssh.channels import is_channel_refusal
from mlframework.cluster.ssh.group import HostOutcome, hosts_failed, on_hosts
from mlframework.exceptions import HostError, HostsFailed
from mlframework.sweep.wire import liveness


def test_an_unexpected_sdk_error_is_one_line_naming_host_and_step_with_its_traceback_in_a_log(tmp_path, monkeypatch):
    log_file = tmp_path / "errors.log"
    monkeypatch.setenv("MLFRAMEWORK_ERROR_LOG", str(log_file))
    try:
        raise KeyError("Id")
    except KeyError as exc:
        error = exc
    failed = hosts_failed("starting workers", [HostOutcome(Host("10.0.0.5", user="u", number=1), error=error)])
    message = str(failed)
    assert "\n" not in message
    assert "u@10.0.0.5: starting workers: KeyError: 'Id'" in message and str(log_file) in message
    kept = log_file.read_text()
    assert "u@10.0.0.5: starting workers" in kept and "Traceback" in kept and 'raise KeyError("Id")' in kept


def test_a_refused_channel_is_named_as_such_whichever_way_paramiko_says_it():
    assert is_channel_refusal(paramiko.ChannelException(2, "Connect failed"))
    assert is_channel_refusal(paramiko.SSHException("Unable to open channel."))
    assert not is_channel_refusal(paramiko.SSHException("Error reading SSH protocol banner"))
    failed = hosts_failed(
        "copying files", [HostOutcome(Host("h"), error=paramiko.ChannelException(2, "Connect failed"))]
    )
    assert "h: sshd refused a new session channel for copying files: MaxSessions" in str(failed)


def test_a_sweep_keeps_its_epoch_after_a_crash_and_starts_a_new_one_after_it_ended():
    assert liveness.next_epoch({"status": "running"}) == 0
    assert liveness.next_epoch({"status": "interrupted", "epoch": 2}) == 2
    assert liveness.next_epoch({"status": "cancelled", "epoch": 2}) == 3
    assert liveness.next_epoch({"status": "finished", "epoch": 0}) == 1
    assert liveness.marker_name("s1", 3) == "mlframework.live.s1.3"


def test_a_step_that_fails_on_some_hosts_is_one_host_error_naming_each_of_them():
    def step(host: Host) -> str:
        if host.number == 2:
            raise HostError(str(host), "docker is missing")
        return host.address

    hosts = [Host("a", number=1), Host("b", user="u", number=2), Host("c", number=3)]
    assert on_hosts("preflight", [hosts[0], hosts[2]], step) == ["a", "c"]
    with pytest.raises(HostsFailed) as info:
        on_hosts("preflight", hosts, step)
    failed = info.value
    assert isinstance(failed, HostError) and failed.step == "preflight"
    assert str(failed) == "preflight failed on 1 host(s): u@b: docker is missing"
    assert failed.host == "u@b" and failed.failures == (("u@b", "u@b: docker is missing"),)
