"""The storage writer: one task owns the only write connection.

Why it is over 400 lines: the lifecycle, batching and transaction code of the one writer
read best together; the connection helpers it uses live in :mod:`forexd.storage.sqlite`.

Why one writer: SQLite allows one writer at a time; several connections writing from
several tasks is how bots end up with "database is locked". Here every write is a message
to :class:`StorageWriter`, which drains its inbox in batches and commits each batch in one
transaction (group commit). Callers that need durability before acting — an order must be
on disk *before* it is sent — await :meth:`StorageWriter.execute`; everything else
(candles, progress, snapshots) uses :meth:`StorageWriter.submit`, which never blocks the
caller. Readers open their own connections (WAL lets them read while the writer writes).

Order is a promise: statements are applied in exactly the order they were submitted.
A batch may run consecutive statements of the same text as one ``executemany`` (that is
where group commit gets its speed), but never regroups across a different statement: an
``UPDATE`` queued after an ``INSERT`` of the same row must find it (issue 10: regrouping
left paper orders ``submitted`` after their fill and they were filled again on restart).

Why a plain :mod:`sqlite3` connection run in a worker thread, not ``aiosqlite``:
aiosqlite's public API costs one thread hop per statement, and a transaction with
``BEGIN``, the statements and ``COMMIT`` as separate awaits costs ~0.1 ms per hop on a
busy 2-core box while an order waits for its commit. Its one-hop path is private
(``_execute``). A dedicated one-token :class:`anyio.CapacityLimiter` gives the same
serialised access to the connection through anyio's public thread API, one hop per batch.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import anyio
import structlog
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from forexd.errors import StorageError, disk_full
from forexd.storage.sqlite import SQLITE_FULL, Params, checkpoint_sync, configure, open_sync

INBOX_SIZE = 65_536  # writes queued before submit() refuses (callers wait well before)
HIGH_WATER = INBOX_SIZE // 4  # wait_for_room() blocks producers above this backlog
MAX_BATCH = 4096  # statements per transaction
LINGER_S = 0.02  # how long fire-and-forget writes may wait for company (crash loses <= this)
CHECKPOINT_EVERY_S = 1.0  # passive checkpoints from a background connection (a guess)
WAL_MAX_BYTES = 64 * 2**20  # above this a checkpoint truncates the WAL (a guess)


@dataclass(slots=True)
class _Write:
    sql: str | None  # None: a flush marker (nothing to run; done when its batch commits)
    params: Params
    done: anyio.Event | None
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class WriterStats:
    """Snapshot of the writer's counters (``errors`` counts failed statements only)."""

    statements: int
    transactions: int
    queued: int
    last_commit_ms: float
    errors: int
    checkpoints: int = 0


def statement_kind(sql: str) -> str:
    """A short name for a statement in logs: its verb and table (``INSERT fills``)."""
    words = sql.split()
    verb = words[0].upper() if words else "?"
    upper = [w.upper() for w in words]
    for key in ("INTO", "UPDATE", "FROM"):
        if key in upper:
            i = upper.index(key)
            if i + 1 < len(words):
                return f"{verb} {words[i + 1].split('(')[0]}"
    return verb


class StorageWriter:
    """Owns the write connection; see the module note.

    Lifecycle: :meth:`run` (a task) applies writes until :meth:`close` is awaited. After
    ``close`` returns, :meth:`flush` is a documented no-op (everything queued is already
    committed) and :meth:`submit` / :meth:`execute` raise :class:`StorageError`. If the
    writer task stops any other way (cancelled, crashed), what was still queued is lost:
    waiting callers get :class:`StorageError`, never a hang.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        send, recv = anyio.create_memory_object_stream[_Write](INBOX_SIZE)
        self._send: MemoryObjectSendStream[_Write] = send
        self._recv: MemoryObjectReceiveStream[_Write] = recv
        self._statements = 0
        self._transactions = 0
        self._errors = 0
        self._last_commit_ms = 0.0
        self._thread = anyio.CapacityLimiter(1)  # the connection is used by one thread at a time
        self._checkpointer = anyio.CapacityLimiter(1)  # one checkpoint at a time
        self._checkpoints = 0
        self._urgent = anyio.Event()  # set when a caller waits for a commit
        self._committed = anyio.Event()  # set (and replaced) after every transaction
        self._closing = False  # close() was called: no new writes
        self._stopped = anyio.Event()  # run() has returned
        self._clean = False  # run() drained the inbox to its end (close)
        self._started = False  # run() has begun (close() must not wait for a run that never was)
        self._log = structlog.get_logger().bind(component="storage")

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Open (and migrate) the store, report ready, and apply writes until :meth:`close`.

        Raises:
            StorageError: the database cannot be opened or migrated.
        """
        self._started = True
        # Open and migrate in a worker thread: a clear error before the daemon reports
        # ready, and the event loop stays free while a big migration runs.
        try:
            conn = await anyio.to_thread.run_sync(_open_writer, self.path, limiter=self._thread)
        except BaseException:
            self._fail_queued()
            self._stopped.set()
            raise
        try:
            task_status.started()
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._checkpoint_loop)
                async with self._recv:
                    async for first in self._recv:
                        await self._apply(conn, await self._collect(first))
                tg.cancel_scope.cancel()
            self._clean = True
        finally:
            with anyio.CancelScope(shield=True):
                self._fail_queued()
                await anyio.to_thread.run_sync(conn.close, limiter=self._thread)
                self._stopped.set()
                self._committed.set()  # wake wait_for_room(): it re-checks and raises

    async def _checkpoint_loop(self) -> None:
        while True:
            await anyio.sleep(CHECKPOINT_EVERY_S)
            await self.checkpoint()

    async def checkpoint(self) -> None:
        """Copy committed WAL frames into the database from a separate connection.

        Passive (never waits for, nor blocks, the writer or readers) while the WAL is
        under :data:`WAL_MAX_BYTES`; above it, a truncating checkpoint that waits for
        readers (up to the busy timeout) so the WAL cannot grow without bound. The writer
        itself has autocheckpoint off: a checkpoint with its fsync never runs inside a
        commit an order is waiting for. A failure is logged; the next one retries.
        """
        try:
            await anyio.to_thread.run_sync(
                checkpoint_sync, self.path, WAL_MAX_BYTES, limiter=self._checkpointer
            )
        except (sqlite3.Error, OSError) as exc:
            self._log.warning("storage_checkpoint_failed", error=str(exc), path=str(self.path))
        else:
            self._checkpoints += 1

    def _fail_queued(self) -> None:
        """Wake every caller still waiting on a write that will never run."""
        lost = StorageError(f"storage writer for {self.path} stopped before this write")
        while True:
            try:
                item = self._recv.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                return
            if item.done is not None:
                item.error = lost
                item.done.set()

    async def _collect(self, first: _Write) -> list[_Write]:
        """Gather a batch: wait up to LINGER_S unless a durable write is waiting, then drain.

        Without the linger every bar would be its own transaction (the writer wakes as
        soon as one write is queued), and commits, not rows, would set the replay speed.
        Waiting on an event rather than receiving item by item keeps the writer to one
        wake-up per batch.
        """
        if first.done is None and not self._urgent.is_set() and not self._closing:
            with anyio.move_on_after(LINGER_S):
                await self._urgent.wait()
        self._urgent = anyio.Event()
        batch = [first]
        while len(batch) < MAX_BATCH:
            try:
                batch.append(self._recv.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
        return batch

    async def _apply(self, conn: sqlite3.Connection, batch: list[_Write]) -> None:
        start = time.perf_counter()
        failed, lost = await anyio.to_thread.run_sync(
            _apply_sync, conn, batch, limiter=self._thread
        )
        if lost is not None:
            # The whole transaction was rolled back (disk full, I/O error): one line
            # with what it held, not one per statement.
            kinds = Counter(statement_kind(item.sql or "") for item in failed)
            self._log.error(
                "storage_transaction_failed",
                error=str(lost),
                statements=len(failed),
                kinds=dict(kinds),
                path=str(self.path),
            )
        else:
            for item in failed:
                self._log.error(
                    "storage_write_failed",
                    kind=statement_kind(item.sql or ""),
                    error=str(item.error),
                    path=str(self.path),
                )
        self._errors += len(failed)
        self._statements += sum(1 for item in batch if item.sql is not None)
        self._transactions += 1
        self._last_commit_ms = (time.perf_counter() - start) * 1000
        self._log.debug(
            "writer_batch",
            statements=len(batch),
            errors=len(failed),
            commit_ms=round(self._last_commit_ms, 3),
        )
        for item in batch:
            if item.done is not None:
                item.done.set()
        self._committed.set()
        self._committed = anyio.Event()

    def _failed(self, what: str, error: BaseException) -> StorageError:
        if getattr(error, "sqlite_errorcode", None) == SQLITE_FULL:
            return disk_full(f"database {self.path}", error)
        return StorageError(f"{what} {self.path} failed: {error}")

    def _closed_error(self) -> StorageError:
        return StorageError(f"storage writer for {self.path} is closed")

    def _put_nowait(self, item: _Write) -> None:
        if self._closing or self._stopped.is_set():
            raise self._closed_error()
        try:
            self._send.send_nowait(item)
        except anyio.WouldBlock:
            raise StorageError(
                f"storage writer for {self.path} is {INBOX_SIZE} writes behind; "
                "the disk is too slow for this replay speed"
            ) from None
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise self._closed_error() from None

    def submit(self, sql: str, params: Params = ()) -> None:
        """Queue a write without waiting (candles, progress, snapshots).

        Raises:
            StorageError: the inbox is full (the disk cannot keep up) or the writer is closed.
        """
        self._put_nowait(_Write(sql, params, None))

    async def wait_for_room(self) -> None:
        """Back-pressure for bulk producers: wait while the backlog is above HIGH_WATER.

        A replay at full speed can produce writes faster than the disk takes them; the
        producer slows down to the disk's pace instead of the inbox overflowing.

        Raises:
            StorageError: the writer stopped.
        """
        while self._send.statistics().current_buffer_used > HIGH_WATER:
            if self._stopped.is_set():
                raise self._closed_error()
            self._urgent.set()  # no lingering: drain now
            await self._committed.wait()

    async def _wait_committed(self, item: _Write) -> None:
        if self._closing or self._stopped.is_set():
            raise self._closed_error()
        try:
            await self._send.send(item)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise self._closed_error() from None
        self._urgent.set()
        assert item.done is not None
        await item.done.wait()

    async def execute(self, sql: str, params: Params = ()) -> None:
        """Write and wait until the transaction holding it has committed.

        Raises:
            StorageError: the statement failed, or the writer is closed.
        """
        item = _Write(sql, params, anyio.Event())
        await self._wait_committed(item)
        if item.error is not None:
            raise self._failed("write to", item.error)

    async def flush(self) -> None:
        """Wait until everything queued so far is committed.

        After :meth:`close` this returns at once: close committed everything queued.

        Raises:
            StorageError: the transaction holding the queued writes failed (e.g. disk full),
                or the writer stopped without being closed (queued writes were lost).
        """
        if self._closing or self._stopped.is_set():
            await self._stopped.wait()
            if not self._clean:
                raise StorageError(
                    f"storage writer for {self.path} stopped without closing; "
                    "writes queued before it stopped may be lost"
                )
            return
        item = _Write(None, (), anyio.Event())
        await self._wait_committed(item)
        if item.error is not None:
            raise self._failed("commit to", item.error)

    async def close(self) -> None:
        """Commit what is queued and stop :meth:`run` (idempotent)."""
        if self._closing:
            await self._stopped.wait()
            return
        self._closing = True
        self._urgent.set()  # do not linger over the last batch
        await self._send.aclose()
        if not self._started:  # never ran: nothing was ever committed or will be
            self._clean = not self._recv.statistics().current_buffer_used
            self._stopped.set()
            return
        await self._stopped.wait()

    def stats(self) -> WriterStats:
        """Counters for ``ctl status``."""
        return WriterStats(
            statements=self._statements,
            transactions=self._transactions,
            queued=self._send.statistics().current_buffer_used,
            last_commit_ms=round(self._last_commit_ms, 3),
            errors=self._errors,
            checkpoints=self._checkpoints,
        )


def _open_writer(path: Path) -> sqlite3.Connection:
    """The writer's connection: autocommit mode (we issue BEGIN/COMMIT), any thread.

    ``check_same_thread=False`` is safe because the writer's one-token limiter lets one
    thread at a time use it.
    """
    conn = open_sync(path)
    conn.close()
    try:
        conn = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
        configure(conn)
        conn.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run beside it
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open database {path}: {exc}") from None
    return conn


def _apply_sync(
    conn: sqlite3.Connection, batch: list[_Write]
) -> tuple[list[_Write], sqlite3.Error | None]:
    """Apply a batch in one transaction, in submission order.

    Returns the failed writes, and the error that rolled the whole transaction back
    (then every write failed), if that is what happened.

    Consecutive statements of the same text run as one ``executemany`` inside a savepoint;
    if that fails, the savepoint is rolled back and the run is replayed one statement at a
    time, so one bad row neither loses nor doubles its neighbours. If SQLite rolls the
    whole transaction back by itself (disk full, I/O error), every write of the batch
    fails with that error: nothing of it is on disk.
    """
    failed: list[_Write] = []
    n = len(batch)
    try:
        conn.execute("BEGIN")
        i = 0
        while i < n:
            sql = batch[i].sql
            j = i + 1
            while j < n and batch[j].sql == sql:
                j += 1
            if sql is not None:
                _run(conn, sql, batch[i:j], failed)
            i = j
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        with contextlib.suppress(sqlite3.Error):
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        failed = [item for item in batch if item.sql is not None]
        for item in batch:
            item.error = exc
        return failed, exc
    return failed, None


def _run(conn: sqlite3.Connection, sql: str, run: list[_Write], failed: list[_Write]) -> None:
    """Apply one run of same-text statements (see :func:`_apply_sync`)."""
    if len(run) > 1:
        conn.execute("SAVEPOINT run")
        try:
            conn.executemany(sql, [item.params for item in run])
        except sqlite3.Error as exc:
            _lost_transaction(conn, exc)
            conn.execute("ROLLBACK TO run")
            conn.execute("RELEASE run")
        else:
            conn.execute("RELEASE run")
            return
    for item in run:
        try:
            conn.execute(sql, item.params)
        except sqlite3.Error as exc:
            _lost_transaction(conn, exc)
            item.error = exc
            failed.append(item)


def _lost_transaction(conn: sqlite3.Connection, exc: sqlite3.Error) -> None:
    """Re-raise ``exc`` if SQLite rolled the whole transaction back (the batch is lost)."""
    if not conn.in_transaction:
        raise exc
