"""The SSH channels of one host's connection: how many each purpose may hold, and a refused one.

One SSH connection per host, and a bounded number of channels on it. sshd
refuses a connection's channel beyond ``MaxSessions`` (OpenSSH's default: 10),
and every command, the SFTP client and every HTTP connection of the docker SDK
is one channel. So each purpose has a fixed share, and the shares add up to
:data:`CHANNELS_PER_CONNECTION` (7), below 10 with room for a channel whose
close sshd has not yet processed:

* commands: at most :data:`COMMAND_CHANNELS` at once (a semaphore; more wait);
* files: one SFTP channel, opened once and reused;
* Docker: a connection pool of :data:`DOCKER_CHANNELS` that *blocks* when all
  are busy (the docker SDK's own pool opens a new channel instead, and keeps up
  to 10 idle ones open: that alone exhausted a stock sshd). A log stream holds
  one Docker channel while it is followed (:mod:`mlframework.cluster.ssh.docker_ssh`).

Parallelism *across* hosts is unbounded by this; more connections per host
would meet sshd's ``MaxStartups`` (10:30:100) instead, so there are none.
"""

from __future__ import annotations

import paramiko

from mlframework.exceptions import HostError

# SSH channels per connection, by purpose (see the module docstring): below OpenSSH's MaxSessions default of 10.
COMMAND_CHANNELS = 3
SFTP_CHANNELS = 1
DOCKER_CHANNELS = 3
CHANNELS_PER_CONNECTION = COMMAND_CHANNELS + SFTP_CHANNELS + DOCKER_CHANNELS
# Seconds a Docker call waits for one of the DOCKER_CHANNELS before it is reported as stuck.
DOCKER_CHANNEL_WAIT = 300.0


def is_channel_refusal(exc: BaseException) -> bool:
    """Whether paramiko says sshd would not open a channel.

    ``ChannelException(2, 'Connect failed')``, or, when several threads open channels at once and
    another took the transport's saved exception, ``SSHException('Unable to open channel.')``.
    """
    return isinstance(exc, paramiko.ChannelException) or (
        isinstance(exc, paramiko.SSHException) and "Unable to open channel" in str(exc)
    )


def channel_refused(host: str, purpose: str) -> HostError:
    """The error for a channel sshd would not open (``ChannelException(2, 'Connect failed')``)."""
    return HostError(
        host,
        f"sshd refused a new session channel for {purpose}: MaxSessions (or a ForceCommand/"
        f"PermitTTY policy) in its sshd_config allows fewer than the {CHANNELS_PER_CONNECTION} "
        "channels per connection mlframework uses",
    )
