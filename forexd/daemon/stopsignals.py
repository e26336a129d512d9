"""Stop signals that arrive before the event loop listens for them.

``forexd run`` spends its first second or so (ten on a loaded 2-core box) importing
pandas, numpy, pydantic and friends; only then does the event loop install its own
SIGTERM/SIGINT handlers. Without a handler before that, a SIGTERM kills the process
outright (systemd sees a failure) and a SIGINT raises ``KeyboardInterrupt`` from whatever
import was running. :func:`install` (first thing in ``python -m forexd run``) handles both:

- before :func:`arm` (nothing started: no lock, no store, no socket, nothing to flush)
  the handler writes the ``stopped`` line and ends the process with exit code 0 at once,
  instead of finishing the imports first. It does not raise: an exception thrown into an
  arbitrary import is turned into something else by C extensions (pydantic-core's pyo3
  init panics when its ``datetime`` import is interrupted: exit 1, seen in the test);
- after :func:`arm` (the daemon exists) it only records the signal; the supervisor takes
  it with :func:`take_pending` once its receiver listens and shuts down cleanly.

After the loop's handlers are removed at the end of the run, :func:`install` is called once
more so a late signal cannot kill a process that is already on its way out.

Standard library only: this module is imported before anything heavy.
"""

from __future__ import annotations

import contextlib
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
_argv: list[str] = []
_installed: list[bool] = []  # non-empty once install() ran in this process


def _record(signum: int, frame: FrameType | None) -> None:
    if not _armed:  # nothing started yet: nothing to undo
        with contextlib.suppress(Exception):  # e.g. a reentrant call mid-write: lose it
            sys.stdout.flush()  # log lines written so far (a warning about the data dir)
        os.write(1, stopped_line(signum, _argv).encode())
        os._exit(0)
    if _pending:  # a second stop signal: the operator insists
        os.write(2, b"forexd: second stop signal, exiting at once\n")
        os._exit(FORCED_EXIT_CODE)
    _pending.append(signum)


def arm() -> None:
    """From now on only record stop signals: the daemon exists and shuts down by itself."""
    _armed.append(True)


def install(argv: list[str] | None = None) -> None:
    """Handle SIGTERM/SIGINT from now on instead of dying (no-op on Windows).

    ``argv`` (the command line without the program) decides the format of the early
    ``stopped`` line (JSON unless a terminal asks for console output).
    """
    if sys.platform == "win32":  # pragma: no cover - Windows stops via the service API
        return
    if argv is not None:
        _argv[:] = argv
    for sig in STOP_SIGNALS:
        signal.signal(sig, _record)
    _installed.append(True)


def reinstall() -> None:
    """Install again if this process installed before (a daemon process, not a test run)."""
    if _installed:
        install()


def take_pending() -> int | None:
    """The stop signal recorded so far (and forget it), or ``None``."""
    if not _pending:
        return None
    signum = _pending[0]
    _pending.clear()
    return signum


def stopped_line(signum: int, argv: list[str]) -> str:
    """The ``stopped`` log line for a stop before start-up (logging is not set up yet)."""
    name = signal.Signals(signum).name
    if "json" in argv or not os.isatty(1):  # as logsetup's "auto" decides
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        line = {
            "component": "supervisor",
            "reason": name,
            "during": "start-up",
            "event": "stopped",
            "level": "info",
            "timestamp": stamp,
        }
        return json.dumps(line) + "\n"
    return f"stopped: {name} during start-up; nothing had been started\n"


def wants_daemon(argv: list[str]) -> bool:
    """True when ``argv`` (without the program name) is a ``forexd run`` command line."""
    command = next((a for a in argv if not a.startswith("-")), None)
    return command == "run"
