"""SQLite connections: pragmas, migrations, opening, one-off reads, damage messages.

Everything here is plain :mod:`sqlite3` (plus one ``aiosqlite`` read helper) and knows
nothing of the writer task, which builds on it (:mod:`forexd.storage.writer`). Import
both through :mod:`forexd.storage.db`.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from forexd.errors import StorageError
from forexd.storage.schema import MIGRATIONS, SCHEMA_VERSION

BUSY_TIMEOUT_MS = 5000
WAL_AUTOCHECKPOINT_PAGES = 1000

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
        # Explicit transaction: Python's sqlite3 does not open one before DDL, and a
        # crash half-way through a migration must leave the previous version intact.
        conn.execute("BEGIN IMMEDIATE")
        try:
            for stmt in MIGRATIONS[version]:
                conn.execute(stmt)
            conn.execute(f"PRAGMA user_version={version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
    return int(found)


DAMAGE_CODES = frozenset({11, 26})  # SQLITE_CORRUPT, SQLITE_NOTADB
SQLITE_FULL = 13


def is_damaged(exc: BaseException) -> bool:
    """Whether ``exc`` says the database file itself is damaged (not busy, not full)."""
    return (
        isinstance(exc, sqlite3.DatabaseError)
        and getattr(exc, "sqlite_errorcode", None) in DAMAGE_CODES
    )


def damaged(path: Path, exc: BaseException) -> StorageError:
    """The refusal for a damaged database: which file, and the two ways to restore it."""
    return StorageError(
        f"database {path} is damaged ({exc}); forexd will not trade on it. Stop forexd, "
        f"keep the damaged file aside, then either recover what SQLite can still read "
        f"(`sqlite3 {path} .recover | sqlite3 {path}.recovered`, then move "
        f"{path}.recovered to {path}) or restore {path} from a backup, and start again"
    )


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
        if is_damaged(exc):
            raise damaged(path, exc) from None
        raise StorageError(f"cannot open database {path}: {exc}") from None


def checkpoint_sync(path: Path, max_wal_bytes: int) -> None:
    """One WAL checkpoint on a short-lived connection of its own.

    Passive (waits for nobody) while the WAL is at most ``max_wal_bytes``; above that a
    truncating one, which waits up to the busy timeout for readers, bounds the WAL.

    Raises:
        sqlite3.Error: the checkpoint failed (the caller logs and retries later).
    """
    try:
        size = Path(f"{path}-wal").stat().st_size
    except FileNotFoundError:
        return
    mode = "TRUNCATE" if size > max_wal_bytes else "PASSIVE"
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    finally:
        conn.close()


async def read_all(path: Path, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
    """Run one query on a fresh read-only connection (readers never share the writer's)."""
    async with aiosqlite.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0) as conn:
        await conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        async with conn.execute(sql, params) as cur:
            return [tuple(row) for row in await cur.fetchall()]


def now_ns() -> int:
    """Wall-clock time in epoch nanoseconds."""
    return time.time_ns()
