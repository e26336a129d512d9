"""Typed errors.

Every error a user can cause derives from :class:`ForexdError`; its message names the
input, what was wrong and what to do. ``cli.py`` turns these into one line on stderr and
an exit code; nothing else in the package exits the process.
"""

from __future__ import annotations

import os
import sys


def first_leaf(exc: BaseException) -> BaseException:
    """The first real error inside (possibly nested) exception groups, or ``exc`` itself.

    Task groups wrap what their tasks raise; a user error raised during start-up must
    still reach ``cli.py`` as itself so it becomes one line and an exit code.
    """
    while True:
        inner = getattr(exc, "exceptions", None)
        if not isinstance(inner, tuple) or not inner:
            return exc
        exc = inner[0]


def quiet_broken_pipe() -> None:
    """After a reader closed our stdout (``forexd config check | head``): say nothing more.

    Points stdout at the null device so the interpreter's final flush cannot raise a
    second ``BrokenPipeError`` (the recipe of the Python ``signal`` docs).
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


class ForexdError(Exception):
    """Base class of every error forexd reports to a user (no traceback)."""

    exit_code: int = 2


class ConfigError(ForexdError):
    """A configuration file or override is missing, malformed or has a bad value."""


class DataError(ForexdError):
    """An input data file is missing, malformed or inconsistent (NaNs, unsorted bars...)."""


class UnknownSymbolError(ForexdError):
    """A symbol is not in the instrument table."""


class DaemonNotRunningError(ForexdError):
    """``forexd ctl`` found no daemon listening for the data directory."""

    exit_code = 3


class AlreadyRunningError(ForexdError):
    """Another daemon already holds the lock on this data directory."""

    exit_code = 4


class ControlError(ForexdError):
    """The daemon answered a control request with an error."""


class StorageError(ForexdError):
    """The SQLite store is unusable (corrupt, from a newer version, locked for too long)."""


class DiskFullError(StorageError):
    """The filesystem holding the data directory is full; nothing half-written was kept.

    Its own exit code (6) so that a supervisor (systemd, a script) can tell "free some
    space" from a damaged state (5) or a bad input (2).
    """

    exit_code = 6


def disk_full(what: object, exc: BaseException) -> DiskFullError:
    """The one message for a full disk: what could not be written and what to do."""
    return DiskFullError(
        f"disk full: {what} could not be written ({exc}); forexd stopped so that nothing "
        "is half-written, and everything committed before is intact. Free space on the "
        "filesystem holding the data directory (`df -h`), then start forexd again"
    )


class BrokerError(ForexdError):
    """The broker refused a request or could not be reached."""


class RiskStateError(ForexdError):
    """The risk state file is corrupt, from another account or of an unknown schema."""

    exit_code = 5


class OrderOutcomeUnknownError(ForexdError):
    """An order may or may not have been placed, and the broker could not be asked which.

    Not a :class:`BrokerError`: the order stays pending (it counts as in flight) until a
    lookup resolves it; it is never re-sent blindly.
    """


class ControlRefusedError(ForexdError):
    """An operator request cannot be carried out in the daemon's current state."""
