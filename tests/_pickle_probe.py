"""A value that records which process and thread pickled and unpickled it (compute pool test)."""

from __future__ import annotations

import os
import threading
from typing import Any

SEEN: list[tuple[str, int, str]] = []
"""``(what, pid, thread name)`` for every pickle and unpickle in this process."""


def _rebuild(payload: bytes) -> Probe:
    SEEN.append(("unpickled", os.getpid(), threading.current_thread().name))
    return Probe(payload)


class Probe:
    """Carries ``payload``; its pickling is recorded in :data:`SEEN`."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def __reduce__(self) -> tuple[Any, ...]:
        SEEN.append(("pickled", os.getpid(), threading.current_thread().name))
        return (_rebuild, (self.payload,))


def echo(probe: Probe) -> Probe:
    """The job: returns a fresh probe of the same payload, from the worker process."""
    return Probe(probe.payload + b"!")
