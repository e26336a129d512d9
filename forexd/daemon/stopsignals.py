"""Stop signals that arrive before the event loop listens for them.

``forexd run`` spends its first second or so (ten on a loaded 2-core box) importing
pandas, numpy, pydantic and friends; only then does the event loop install its own
SIGTERM/SIGINT handlers. Without a handler before that, a SIGTERM kills the process
outright (systemd sees a failure) and a SIGINT raises ``KeyboardInterrupt`` from whatever
import was running. :func:`install` (first thing in ``python -m forexd run``) handles both:

- before :func:`arm` (nothing started: no lock, no store, no socket) the handler raises
  :class:`StopBeforeStart`; ``__main__`` catches it, writes the ``stopped`` line and exits
  0 at once, instead of finishing the imports first;
- after :func:`arm` (the daemon exists) it only records the signal; the supervisor takes
  it with :func:`take_pending` once its receiver listens and shuts down cleanly.

After the loop's handlers are removed at the end of the run, :func:`install` is called once
more so a late signal cannot kill a process that is already on its way out.

Standard library only: this module is imported before anything heavy.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
FORCED_EXIT_CODE = 1

_pending: list[int] = []
_armed: list[bool] = []  # empty until arm(); a list so no ``global`` statement is needed


class StopBeforeStart(BaseException):
    """A stop signal came before the daemon started anything; unwind and exit 0.

    A ``BaseException`` so that no ``except Exception`` in an import on the way swallows it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _record(signum: int, frame: FrameType | None) -> None:
    if _pending and _armed:  # a second stop signal: the operator insists
        os.write(2, b"forexd: second stop signal, exiting at once\n")
        os._exit(FORCED_EXIT_CODE)
    if not _pending:
        # Kept even when raising below: if some library swallows the exception (a
        # ``__del__``, a callback), the daemon still sees the signal once it listens.
        _pending.append(signum)
    if not _armed:
        raise StopBeforeStart(signum)


def arm() -> None:
    """From now on only record stop signals: the daemon exists and shuts down by itself."""
    _armed.append(True)


def install() -> None:
    """Record SIGTERM/SIGINT from now on instead of dying (no-op on Windows)."""
    if sys.platform == "win32":  # pragma: no cover - Windows stops via the service API
        return
    for sig in STOP_SIGNALS:
        signal.signal(sig, _record)


def take_pending() -> int | None:
    """The stop signal recorded so far (and forget it), or ``None``."""
    if not _pending:
        return None
    signum = _pending[0]
    _pending.clear()
    return signum


def report_stopped_before_start(signum: int, argv: list[str]) -> None:
    """Write the ``stopped`` line for a stop before start-up (logging is not set up yet)."""
    name = signal.Signals(signum).name
    if "json" in argv or not sys.stdout.isatty():  # as logsetup's "auto" decides
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        line = {
            "component": "supervisor",
            "reason": name,
            "during": "imports",
            "event": "stopped",
            "level": "info",
            "timestamp": stamp,
        }
        print(json.dumps(line), flush=True)
    else:
        print(f"stopped: {name} before start-up; nothing was started", flush=True)


def wants_daemon(argv: list[str]) -> bool:
    """True when ``argv`` (without the program name) is a ``forexd run`` command line."""
    command = next((a for a in argv if not a.startswith("-")), None)
    return command == "run"
