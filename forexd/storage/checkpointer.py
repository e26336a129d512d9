"""WAL checkpoints from a background connection, so no commit ever runs one.

With SQLite's default, the connection that commits the transaction pushing the WAL past
``wal_autocheckpoint`` pages runs the checkpoint inside that commit: copy the frames back
and fsync the database. In forexd that commit is often an order waiting to be durable
before it is sent, and the checkpoint was the whole bar-to-order latency tail (issue 15:
p99 4-21 ms). The design (DESIGN.md, "Storage order and cost") moves it here:

* the writer's connection has ``wal_autocheckpoint = 0`` (:mod:`forexd.storage.db`);
* this task, on its own connection in a worker thread, runs a ``PASSIVE`` checkpoint every
  ``interval_s``: it copies what it can without waiting for, or blocking, the writer or
  any reader, so a commit never waits for it;
* a size bound: if the WAL still holds more than ``max_wal_bytes`` after that (a reader
  held old frames, or writes outran the timer), a ``TRUNCATE`` checkpoint runs, which waits
  (``busy_timeout``) for the writer to be between transactions, checkpoints everything and
  truncates the file. That one can delay a commit, which is the price of a bounded WAL.

Options weighed: a checkpoint on every Nth commit from the writer's own thread (still
inside a commit someone may be waiting on), a thread of our own (anyio's worker threads
already give one, and cancellation comes for free), ``RESTART`` for the bound (leaves the
file at its largest size; ``TRUNCATE`` gives the disk back).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus

CHECKPOINT_INTERVAL_S = 1.0  # guessed: at 1,000 bars/s this keeps the WAL at a few MB
MAX_WAL_BYTES = 64 * 1024 * 1024  # guessed: far above one interval's writes, a safety bound
BUSY_TIMEOUT_MS = 5000  # how long a forced checkpoint waits for the writer and readers
WAL_FRAME_HEADER_BYTES = 24


@dataclass(frozen=True, slots=True)
class CheckpointStats:
    """What the checkpointer has done (``ctl status`` material).

    Attributes:
        passive: passive checkpoints run.
        forced: size-bound (``TRUNCATE``) checkpoints run.
        wal_bytes: WAL size after the last checkpoint (frames still in it x frame size).
        last_ms: how long the last checkpoint took.
        errors: checkpoints that failed (the next tick tries again).
    """

    passive: int
    forced: int
    wal_bytes: int
    last_ms: float
    errors: int


class WalCheckpointer:
    """Checkpoints one database's WAL on a timer from its own connection."""

    def __init__(
        self,
        path: Path,
        *,
        interval_s: float = CHECKPOINT_INTERVAL_S,
        max_wal_bytes: int = MAX_WAL_BYTES,
        log: Any = None,
    ) -> None:
        """Prepare (nothing is opened until :meth:`run` or :meth:`open`).

        Args:
            path: the database (in WAL mode; the writer sets it).
            interval_s: seconds between passive checkpoints.
            max_wal_bytes: WAL size above which a ``TRUNCATE`` checkpoint is forced.
            log: a structlog-style logger for failures (optional).
        """
        if interval_s <= 0 or max_wal_bytes <= 0:
            raise ValueError("interval_s and max_wal_bytes must be positive")
        self.path = path
        self.interval_s = interval_s
        self.max_wal_bytes = max_wal_bytes
        self._log = log
        self._conn: sqlite3.Connection | None = None
        self._page_bytes = 4096
        self._passive = 0
        self._forced = 0
        self._wal_bytes = 0
        self._last_ms = 0.0
        self._errors = 0

    def open(self) -> None:
        """Open the checkpoint connection (blocking; call from a worker thread)."""
        # Used from anyio worker threads one call at a time, never concurrently.
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA wal_autocheckpoint=0")  # this connection never writes anyway
        (self._page_bytes,) = conn.execute("PRAGMA page_size").fetchone()
        self._conn = conn

    def close(self) -> None:
        """Close the connection (blocking)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def checkpoint_once(self) -> CheckpointStats:
        """One passive checkpoint, and a forced one if the WAL is over the bound (blocking).

        Raises:
            RuntimeError: :meth:`open` was not called.
            sqlite3.Error: the database could not be checkpointed.
        """
        conn = self._conn
        if conn is None:
            raise RuntimeError("WalCheckpointer.open() first")
        start = time.perf_counter()
        frame_bytes = self._page_bytes + WAL_FRAME_HEADER_BYTES
        # (busy, frames in the WAL, frames checkpointed); -1s when not in WAL mode.
        _busy, frames, _done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self._passive += 1
        if max(frames, 0) * frame_bytes > self.max_wal_bytes:
            _busy, frames, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            self._forced += 1
        self._wal_bytes = max(frames, 0) * frame_bytes
        self._last_ms = (time.perf_counter() - start) * 1000
        return self.stats()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Open, report started, and checkpoint every ``interval_s`` until cancelled."""
        await anyio.to_thread.run_sync(self.open)
        task_status.started()
        try:
            while True:
                await anyio.sleep(self.interval_s)  # a timer, not a wait for an event
                try:
                    await anyio.to_thread.run_sync(self.checkpoint_once)
                except sqlite3.Error as exc:
                    self._errors += 1
                    if self._log is not None:
                        self._log.warning("wal_checkpoint_failed", error=str(exc))
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.close)

    def stats(self) -> CheckpointStats:
        """A snapshot of what has been done."""
        return CheckpointStats(
            self._passive, self._forced, self._wal_bytes, round(self._last_ms, 3), self._errors
        )
