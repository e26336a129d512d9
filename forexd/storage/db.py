"""The SQLite store: one writer task owns the only write connection.

Why one writer: SQLite allows one writer at a time; several connections writing from
several tasks is how bots end up with "database is locked". Here every write is a message
to :class:`StorageWriter`, which drains its inbox in batches and commits each batch in one
transaction (group commit). Callers that need durability before acting — an order must be
on disk *before* it is sent — await :meth:`StorageWriter.execute`; everything else
(candles, progress, snapshots) uses :meth:`StorageWriter.submit`, which never blocks the
caller. Readers open their own connections (WAL lets them read while the writer writes).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from forexd.errors import StorageError
from forexd.storage.schema import MIGRATIONS, SCHEMA_VERSION

BUSY_TIMEOUT_MS = 5000
WAL_AUTOCHECKPOINT_PAGES = 1000
INBOX_SIZE = 65_536  # writes queued before submit() refuses (callers wait well before)
HIGH_WATER = INBOX_SIZE // 4  # wait_for_room() blocks producers above this backlog
MAX_BATCH = 4096  # statements per transaction
LINGER_S = 0.02  # how long fire-and-forget writes may wait for company (crash loses <= this)

Params = Sequence[Any]


def configure(conn: sqlite3.Connection) -> None:
    """Apply the connection pragmas every forexd connection uses."""
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
    conn.execute("PRAGMA foreign_keys=ON")


def migrate(conn: sqlite3.Connection, path: Path) -> int:
    """Bring the schema up to :data:`SCHEMA_VERSION`; return the version found.

    Raises:
        StorageError: the file is not a database, or was written by a newer forexd.
    """
    try:
        (found,) = conn.execute("PRAGMA user_version").fetchone()
    except sqlite3.DatabaseError as exc:
        raise StorageError(
            f"{path} is not a forexd database ({exc}); move it away or choose another --data-dir"
        ) from None
    if found > SCHEMA_VERSION:
        raise StorageError(
            f"{path} has schema version {found} but this forexd knows {SCHEMA_VERSION}; "
            "upgrade forexd or use another --data-dir"
        )
    for version in range(found, SCHEMA_VERSION):
        with conn:
            for stmt in MIGRATIONS[version]:
                conn.execute(stmt)
            conn.execute(f"PRAGMA user_version={version + 1}")
    return int(found)


def open_sync(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open (and for writers, migrate) the store with the standard pragmas.

    Raises:
        StorageError: the file cannot be opened or migrated.
    """
    try:
        if readonly:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            return conn
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=5.0)
        configure(conn)
        migrate(conn, path)
        return conn
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open database {path}: {exc}") from None


@dataclass(slots=True)
class _Write:
    sql: str
    params: Params | None
    many: Iterable[Params] | None
    done: anyio.Event | None
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class WriterStats:
    """Snapshot of the writer's counters."""

    statements: int
    transactions: int
    queued: int
    last_commit_ms: float
    errors: int


class StorageWriter:
    """Owns the write connection; see the module note."""

    def __init__(self, path: Path) -> None:
        self.path = path
        send, recv = anyio.create_memory_object_stream[_Write](INBOX_SIZE)
        self._send: MemoryObjectSendStream[_Write] = send
        self._recv: MemoryObjectReceiveStream[_Write] = recv
        self._statements = 0
        self._transactions = 0
        self._errors = 0
        self._last_commit_ms = 0.0
        self._conn: aiosqlite.Connection | None = None
        self._urgent = anyio.Event()  # set when a caller waits for a commit
        self._committed = anyio.Event()  # set (and replaced) after every transaction

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Open the connection, report ready, and apply writes until :meth:`close`."""
        # Migrate synchronously first: a clear error before the daemon reports ready.
        open_sync(self.path).close()
        conn = await aiosqlite.connect(self.path, timeout=5.0)
        try:
            await conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA synchronous=NORMAL")
            await conn.execute("PRAGMA wal_autocheckpoint=0")  # storage/checkpointer.py does it
            self._conn = conn
            task_status.started()
            async with self._recv:
                async for first in self._recv:
                    await self._apply(conn, await self._collect(first))
        finally:
            with anyio.CancelScope(shield=True):
                await conn.close()
            self._conn = None

    async def _collect(self, first: _Write) -> list[_Write]:
        """Gather a batch: wait up to LINGER_S unless a durable write is waiting, then drain.

        Without the linger every bar would be its own transaction (the writer wakes as
        soon as one write is queued), and commits, not rows, would set the replay speed.
        Waiting on an event rather than receiving item by item keeps the writer to one
        wake-up per batch.
        """
        if first.done is None and not self._urgent.is_set():
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

    async def _apply(self, conn: aiosqlite.Connection, batch: list[_Write]) -> None:
        start = time.perf_counter()
        # One hop to aiosqlite's thread for the whole transaction: BEGIN, each statement
        # and COMMIT as separate awaits cost a thread round trip each (~0.1 ms on a busy
        # 2-core box), and an order must wait for its commit before it is sent.
        # aiosqlite has no public "run this function on the connection thread"; its
        # internal ``_execute`` is what every public method uses (pinned in pyproject).
        errors = await conn._execute(_apply_sync, conn._conn, batch)  # type: ignore[no-untyped-call]
        self._errors += errors
        self._statements += len(batch)
        self._transactions += 1
        self._last_commit_ms = (time.perf_counter() - start) * 1000
        for item in batch:
            if item.done is not None:
                item.done.set()
        self._committed.set()
        self._committed = anyio.Event()

    def submit(self, sql: str, params: Params = ()) -> None:
        """Queue a write without waiting (candles, progress, snapshots).

        Raises:
            StorageError: the inbox is full (the disk cannot keep up) or closed.
        """
        try:
            self._send.send_nowait(_Write(sql, params, None, None))
        except anyio.WouldBlock:
            raise StorageError(
                f"storage writer for {self.path} is {INBOX_SIZE} writes behind; "
                "the disk is too slow for this replay speed"
            ) from None
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise StorageError(f"storage writer for {self.path} is closed") from None

    async def wait_for_room(self) -> None:
        """Back-pressure for bulk producers: wait while the backlog is above HIGH_WATER.

        A replay at full speed can produce writes faster than the disk takes them; the
        producer slows down to the disk's pace instead of the inbox overflowing.
        """
        while self._send.statistics().current_buffer_used > HIGH_WATER:
            self._urgent.set()  # no lingering: drain now
            await self._committed.wait()

    def submit_many(self, sql: str, rows: Iterable[Params]) -> None:
        """Queue an ``executemany`` without waiting."""
        self._send.send_nowait(_Write(sql, None, list(rows), None))

    async def execute(self, sql: str, params: Params = ()) -> None:
        """Write and wait until the transaction holding it has committed.

        Raises:
            StorageError: the statement failed.
        """
        item = _Write(sql, params, None, anyio.Event())
        await self._send.send(item)
        self._urgent.set()
        assert item.done is not None
        await item.done.wait()
        if item.error is not None:
            raise StorageError(f"write to {self.path} failed: {item.error}")

    async def flush(self) -> None:
        """Wait until everything queued so far is committed."""
        item = _Write("SELECT 1", (), None, anyio.Event())
        await self._send.send(item)
        self._urgent.set()
        assert item.done is not None
        await item.done.wait()

    async def close(self) -> None:
        """Commit what is queued and stop :meth:`run`."""
        await self.flush()
        await self._send.aclose()

    def stats(self) -> WriterStats:
        """Counters for ``ctl status``."""
        return WriterStats(
            statements=self._statements,
            transactions=self._transactions,
            queued=self._send.statistics().current_buffer_used,
            last_commit_ms=round(self._last_commit_ms, 3),
            errors=self._errors,
        )


def _apply_sync(conn: sqlite3.Connection, batch: list[_Write]) -> int:
    """Apply a batch in one transaction on the writer thread; return the error count.

    Statements of the same text are grouped into one ``executemany`` (regrouping inside
    one transaction is safe: no queued write reads another). A failing group is retried
    statement by statement so one bad row does not lose the rest of the batch.
    """
    groups: dict[str, list[_Write]] = {}
    for item in batch:
        groups.setdefault(item.sql, []).append(item)
    errors = 0
    try:
        conn.execute("BEGIN")
        for sql, items in groups.items():
            rows: list[Params] = []
            for item in items:
                rows.extend(item.many if item.many is not None else [item.params or ()])
            try:
                conn.executemany(sql, rows)
                continue
            except sqlite3.Error:
                pass
            for item in items:
                try:
                    conn.executemany(
                        sql, item.many if item.many is not None else [item.params or ()]
                    )
                except sqlite3.Error as exc:
                    item.error = exc
                    errors += 1
        conn.commit()
    except sqlite3.Error as exc:
        errors += 1
        for item in batch:
            item.error = item.error or exc
        with contextlib.suppress(sqlite3.Error):
            conn.rollback()
    return errors


async def read_all(path: Path, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
    """Run one query on a fresh read-only connection (readers never share the writer's)."""
    async with aiosqlite.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0) as conn:
        await conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        async with conn.execute(sql, params) as cur:
            return [tuple(row) for row in await cur.fetchall()]


def now_ns() -> int:
    """Wall-clock time in epoch nanoseconds."""
    return time.time_ns()
