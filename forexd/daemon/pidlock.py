"""One daemon per data directory: an exclusive, non-blocking lock on the pid file.

portalocker gives the same semantics on POSIX (flock) and Windows (LockFileEx). The lock
belongs to the open file, so it disappears with the process, even after ``kill -9``: a
stale pid file never blocks a restart.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

import portalocker

from forexd.errors import AlreadyRunningError


class PidLock:
    """Holds ``forexd.pid`` locked for the life of the daemon."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = None

    def acquire(self) -> None:
        """Lock the pid file and write our pid.

        Raises:
            AlreadyRunningError: another process holds the lock.
        """
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # 0600 whatever the umask, and tightened if an older forexd left it 0644: a user
        # who can open the file could hold a lock on it.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        if os.name == "posix":
            os.fchmod(fd, 0o600)
        fh = os.fdopen(fd, "a+", encoding="ascii")
        try:
            portalocker.lock(fh, portalocker.LOCK_EX | portalocker.LOCK_NB)
        except portalocker.exceptions.LockException:
            fh.seek(0)
            other = fh.read().strip() or "unknown"
            fh.close()
            raise AlreadyRunningError(
                f"another forexd (pid {other}) is already running on this data directory "
                f"(lock {self.path}); stop it with `forexd ctl stop` or use another --data-dir"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        """Unlock and remove the pid file."""
        if self._fh is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            portalocker.unlock(self._fh)
            self._fh.close()
            self._fh = None


def running_pid(path: Path) -> str | None:
    """The pid written by a daemon that holds the lock on ``path``; None if none holds it.

    Probes with a non-blocking shared lock: it fails only while a daemon holds its
    exclusive one.
    """
    try:
        fh = path.open("r", encoding="ascii")
    except OSError:
        return None
    with fh:
        try:
            portalocker.lock(fh, portalocker.LOCK_SH | portalocker.LOCK_NB)
        except portalocker.exceptions.LockException:
            return fh.read().strip() or "unknown"
        portalocker.unlock(fh)
    return None


def refuse_while_running(path: Path, action: str) -> None:
    """Raise if a daemon holds the pid lock ``path``: ``action`` would race with it.

    Raises:
        AlreadyRunningError: a daemon is running on this data directory.
    """
    pid = running_pid(path)
    if pid is not None:
        raise AlreadyRunningError(
            f"a forexd daemon (pid {pid}) is running on this data directory (lock {path}); "
            f"{action} now would be overwritten by it. Stop it with `forexd ctl stop`, "
            "then retry"
        )
