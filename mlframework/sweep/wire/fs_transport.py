"""Embedded mode's broker: kombu's filesystem transport, with messages that appear whole.

Two fixes over kombu's own, registered as the ``mlfs://`` transport (everything
else is kombu's):

* kombu's ``_put`` creates the message file and then writes it; a consumer
  polling the folder can take (move) the file in between, read nothing and fail
  on the empty JSON, and the message is lost with it. Here a message is written
  under a name no consumer looks at and renamed into place when complete
  (``rename`` is atomic on one filesystem).
* a message given back by a worker whose pool process died comes again marked
  ``redelivered`` where Celery looks for it, as with RabbitMQ.
"""

from __future__ import annotations

import itertools
import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

SCHEME = "mlfs"


_sequence = itertools.count()


class Channel(filesystem.Channel):
    """The filesystem channel with atomic, ordered puts."""

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        # The name as kombu's _get expects it, "<key>.<queue>.msg", read in sorted order. kombu's key is
        # "<ms>_<uuid>": two messages of one millisecond come in random order (a trial's "finished" before
        # its "started"). Here a process's messages keep their order: time, process, then a sequence number.
        key = f"{round(monotonic() * 1000):015d}_{os.getpid():08d}_{next(_sequence):012d}_{uuid.uuid4().hex}"
        name = f"{key}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = final + ".partial"  # "<queue>.msg.partial" is no queue's name: never read
        try:
            with open(partial, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc

    def _restore(self, message: Any) -> None:
        # A message given back (its worker process died) comes again marked as redelivered. kombu marks
        # only the stored payload; Celery reads the mark from delivery_info, as RabbitMQ's messages have it.
        message.delivery_info["redelivered"] = True
        super()._restore(message)  # type: ignore[no-untyped-call]  # kombu's virtual channel: unannotated


class Transport(filesystem.Transport):
    """kombu's filesystem transport using :class:`Channel`."""

    Channel = Channel


def register() -> None:
    """Make ``mlfs://`` URLs use this transport (idempotent)."""
    TRANSPORT_ALIASES.setdefault(SCHEME, f"{__name__}:Transport")
