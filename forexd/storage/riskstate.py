"""The risk state store: one account's ``risk_state.json``, safe across processes.

Options weighed:

- *SQLite* for risk state would share the daemon's database and its single writer task,
  but the state must be readable and repairable while the daemon is down or while the
  database is the thing that is broken, and it must be written synchronously at shutdown.
- *fcntl* locks are POSIX only; ``portalocker`` gives the same advisory locks on Linux,
  macOS and Windows (shared locks on Windows need ``pywin32``, the ``windows`` extra).
- The lock is taken on a separate ``risk_state.json.lock`` file, never on the data file:
  on Windows a file that is open cannot be replaced, so holding the lock on the data file
  would make ``os.replace`` fail. Readers take the shared lock too, so no reader holds the
  data file open while a writer replaces it.

The format, checksum and atomic write are in :mod:`forexd.storage.riskfile`. Nothing here
resets a bad file silently: every problem raises :class:`~forexd.errors.RiskStateError`
naming the file, the problem and the fix, and only an explicit
:meth:`RiskStateStore.repair` replaces it (keeping a backup).
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import portalocker
from pydantic import ValidationError

from forexd.errors import RiskStateError, disk_full
from forexd.fsutil import write_atomic
from forexd.risk.limits import StateCause, TradingState
from forexd.risk.state import ACCOUNT_SCOPE, AuditRecord, RiskState, ScopeState
from forexd.storage.riskfile import decode, encode, state_error, write_backup

__all__ = ["RepairReport", "RiskState", "RiskStateStore", "SeedFn"]

DEFAULT_LOCK_TIMEOUT_S = 10.0
# Polling interval while the lock is taken; portalocker's default (0.25 s) would make a
# short critical section of another process cost a quarter second.
LOCK_POLL_S = 0.002

SeedFn = Callable[[RiskState], RiskState]
"""Fills a freshly built state from another source (fills in SQLite, broker equity)."""


@dataclass(frozen=True, slots=True)
class RepairReport:
    """What :meth:`RiskStateStore.repair` did.

    Attributes:
        path: the state file.
        action: ``none`` (the file was valid), ``created`` (there was none) or ``rebuilt``.
        problem: what was wrong with the old file (its error message), if anything.
        backup: where the old file's bytes were kept, if there was one.
        seeded: a seed function filled the new state.
        halted: the state now on disk has the account halted.
        state: the state now on disk.
    """

    path: Path
    action: Literal["none", "created", "rebuilt"]
    problem: str | None
    backup: Path | None
    seeded: bool
    halted: bool
    state: RiskState

    def summary(self) -> str:
        """Lines for the CLI."""
        if self.action == "none":
            return f"{self.path} is valid; nothing to repair (pass force to rebuild anyway)"
        lines = [f"{self.action} {self.path}"]
        if self.problem:
            lines.append(f"  problem: {self.problem}")
        if self.backup is not None:
            lines.append(f"  old file kept as {self.backup}")
        lines.append(f"  seeded from the caller's source: {'yes' if self.seeded else 'no'}")
        if self.halted:
            lines.append("  the account starts halted: check it, then `forexd ctl resume`")
        return "\n".join(lines)


class RiskStateStore:
    """Reads and writes one account's risk state file safely across processes.

    Every method is blocking (file locks, fsync): call it from a worker thread in async
    code, never on the event loop.

    Args:
        path: the state file (``<data dir>/risk_state.json``).
        account_id: the account this daemon trades; a file of another account is refused.
        lock_timeout_s: how long to wait for another process's lock before failing.
    """

    def __init__(
        self,
        path: Path | str,
        account_id: str,
        *,
        lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    ) -> None:
        if not account_id:
            raise ValueError("account_id must not be empty")
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.account_id = account_id
        self.lock_timeout_s = lock_timeout_s

    def exists(self) -> bool:
        """Whether the state file is there (valid or not)."""
        return self.path.exists()

    def init(self, *, now_ns: int | None = None, seed: SeedFn | None = None) -> RiskState:
        """Create a fresh state file (first start); the only way a missing file appears.

        Raises:
            RiskStateError: the file already exists, or cannot be written.
        """
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._locked(exclusive=True):
            if self.path.exists():
                raise RiskStateError(
                    f"risk state file {self.path} already exists; it is used as is "
                    "(`forexd risk repair --force` rebuilds it, keeping a backup)"
                )
            state = RiskState.fresh(self.account_id, _now(now_ns))
            if seed is not None:
                state = seed(state)
            self._write(self._checked(state))
            return state

    def read(self) -> RiskState:
        """Read and verify the state (under a shared lock).

        Raises:
            RiskStateError: the file is missing, corrupt, of another schema version or of
                another account, or the lock was not obtained in time.
        """
        self._require_dir()
        with self._locked(exclusive=False):
            return self._read_unlocked()

    def update(self, fn: Callable[[RiskState], RiskState]) -> RiskState:
        """Read-modify-write under an exclusive lock; returns what was written.

        ``fn`` gets the verified current state (a private copy it may mutate) and returns
        the new one. Nothing is written if ``fn`` raises.

        Raises:
            RiskStateError: as :meth:`read`, or the new state is invalid or unwritable.
        """
        self._require_dir()
        with self._locked(exclusive=True):
            state = fn(self._read_unlocked())
            self._write(self._checked(state))
            return state

    def repair(
        self,
        seed: SeedFn | None = None,
        *,
        now_ns: int | None = None,
        halt: bool = True,
        force: bool = False,
    ) -> RepairReport:
        """Back a bad file up and write a fresh state in its place.

        The old bytes are kept next to the file as ``<name>.corrupt-<UTC timestamp>``.
        The new state starts with the account halted (cause ``repair``) unless
        ``halt=False``: the lost file may have held a halt, so an operator looks first.

        Args:
            seed: fills the fresh state from another source (e.g. fills in SQLite).
            now_ns: the time to record (default: the wall clock).
            halt: start the rebuilt account halted.
            force: rebuild even a valid file.

        Raises:
            RiskStateError: the lock was not obtained, or a file could not be written.
        """
        now = _now(now_ns)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._locked(exclusive=True):
            raw: bytes | None
            try:
                raw = self.path.read_bytes()
            except FileNotFoundError:
                raw = None
            problem: str | None = None
            if raw is not None:
                try:
                    current = decode(raw, path=self.path, account_id=self.account_id)
                except RiskStateError as exc:
                    problem = str(exc)
                else:
                    if not force:
                        return RepairReport(self.path, "none", None, None, False, False, current)
                    problem = "none (rebuild forced by the operator)"
            backup = None if raw is None else self._backup(raw, now)
            state = RiskState.fresh(self.account_id, now)
            if halt:
                note = "risk state rebuilt by `forexd risk repair`; check it, then resume"
                state.account = ScopeState(
                    state=TradingState.HALTED, cause=StateCause.REPAIR, note=note, since_ns=now
                )
                state.audit.append(
                    AuditRecord(
                        ts_ns=now,
                        scope=ACCOUNT_SCOPE,
                        old_state=TradingState.ACTIVE,
                        new_state=TradingState.HALTED,
                        cause=StateCause.REPAIR,
                        actor="repair",
                        note=f"{note}; problem was: {problem or 'file missing'}",
                    )
                )
            if seed is not None:
                state = seed(state)
            self._write(self._checked(state))
            action: Literal["created", "rebuilt"] = "created" if raw is None else "rebuilt"
            halted = state.account.state is TradingState.HALTED
            return RepairReport(self.path, action, problem, backup, seed is not None, halted, state)

    # -- internals -------------------------------------------------------------------------

    def _missing(self) -> RiskStateError:
        return state_error(
            self.path,
            "does not exist",
            "restore it from a backup, or rebuild it from the fills with `forexd risk "
            "repair` (the daemon creates it only on a first start, with no fills stored)",
        )

    def _require_dir(self) -> None:
        # The lock file lives next to the state file; without the directory there is no
        # state either, and "missing" is the message that helps.
        if not self.path.parent.is_dir():
            raise self._missing()

    @contextlib.contextmanager
    def _locked(self, *, exclusive: bool) -> Iterator[None]:
        mode = portalocker.LockFlags.EXCLUSIVE if exclusive else portalocker.LockFlags.SHARED
        _private_lock_file(self.lock_path)
        lock = portalocker.Lock(
            self.lock_path,
            mode="a",
            timeout=self.lock_timeout_s,
            check_interval=LOCK_POLL_S,
            flags=mode | portalocker.LockFlags.NON_BLOCKING,
        )
        try:
            lock.acquire()
        except portalocker.AlreadyLocked:
            raise RiskStateError(
                f"risk state lock {self.lock_path} is still held by another process after "
                f"{self.lock_timeout_s:g} s; if a `forexd risk` command or another daemon is "
                "running on this data directory, wait for it or stop it, then retry"
            ) from None
        except (portalocker.LockException, OSError) as exc:
            raise RiskStateError(
                f"risk state lock {self.lock_path} cannot be taken: {exc}; check the "
                "directory's permissions (on Windows install the `windows` extra for pywin32)"
            ) from exc
        try:
            yield
        finally:
            lock.release()

    def _read_unlocked(self) -> RiskState:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raise self._missing() from None
        except OSError as exc:
            raise state_error(
                self.path, f"cannot be read ({exc})", "check its permissions"
            ) from None
        return decode(raw, path=self.path, account_id=self.account_id)

    def _checked(self, state: RiskState) -> bytes:
        """Validate a state about to be written and serialise it."""
        if not isinstance(state, RiskState):
            raise TypeError(f"an update must return a RiskState, not {type(state).__name__}")
        if state.account_id != self.account_id:
            raise RiskStateError(
                f"refusing to write account {state.account_id!r} state into {self.path}, "
                f"which belongs to account {self.account_id!r}"
            )
        try:
            # Round-trip through validation: fields assigned after construction are not
            # validated by pydantic, and a bad value must not reach the disk.
            data = encode(RiskState.model_validate(state.model_dump()))
        except (ValidationError, ValueError) as exc:
            raise RiskStateError(
                f"refusing to write an invalid risk state to {self.path}: {exc}"
            ) from None
        return data

    def _write(self, data: bytes) -> None:
        try:
            write_atomic(self.path, data)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise disk_full(f"risk state file {self.path}", exc) from None
            raise RiskStateError(
                f"risk state file {self.path} could not be written ({exc}); the previous "
                "version is intact: free disk space or fix permissions, then retry"
            ) from None

    def _backup(self, raw: bytes, now_ns: int) -> Path:
        try:
            return write_backup(self.path, raw, now_ns)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise disk_full(f"a backup of {self.path}", exc) from None
            raise RiskStateError(
                f"could not keep a backup of {self.path} ({exc}); nothing was changed: "
                "free disk space or fix permissions, then retry"
            ) from None


def ahead_of_database(
    path: Path, db_path: Path, state: RiskState, last_fill_seq: int
) -> RiskStateError:
    """The refusal when the risk state has counted fills the database does not hold."""
    held = f"holds fills up to #{last_fill_seq}" if last_fill_seq else "holds no fills"
    return RiskStateError(
        f"risk state file {path} has counted fills up to #{state.fills_applied_seq} but "
        f"the database {db_path} {held} (was it deleted, emptied or restored from an older "
        "copy?); refusing to trade, or the next fills would escape the loss limits. Put "
        f"the right database back, or accept this one with `forexd risk repair --force "
        f"--data-dir {db_path.parent}` (rebuilds the risk state from its fills, halted)"
    )


def _private_lock_file(path: Path) -> None:
    """Create the lock file 0600 (or tighten an older 0644 one) before locking it.

    Whoever can open the lock file can hold a lock on it, and a held shared lock stops
    the daemon (it cannot persist its state). Only the owner may open it.
    """
    with contextlib.suppress(OSError):  # not ours, or no directory: locking will say so
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            if os.name == "posix":
                os.fchmod(fd, 0o600)
        finally:
            os.close(fd)


def _now(now_ns: int | None) -> int:
    return time.time_ns() if now_ns is None else now_ns
