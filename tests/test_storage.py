"""The SQLite store: pragmas, migrations, the single writer, candle import."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

from forexd.errors import StorageError
from forexd.storage.db import StorageWriter, open_sync, read_all
from forexd.storage.schema import SCHEMA_VERSION
from tests._store import running_writer


def test_a_new_store_is_wal_with_the_current_schema(tmp_path: Path) -> None:
    """open_sync migrates to SCHEMA_VERSION and sets WAL, NORMAL sync, busy timeout."""
    conn = open_sync(tmp_path / "f.db")
    assert SCHEMA_VERSION == conn.execute("PRAGMA user_version").fetchone()[0]
    assert "wal" == conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert 1 == conn.execute("PRAGMA synchronous").fetchone()[0]  # NORMAL
    assert 5000 == conn.execute("PRAGMA busy_timeout").fetchone()[0]
    assert 1000 == conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"candles", "orders", "fills", "positions", "equity"} <= tables


def test_a_store_from_a_newer_forexd_is_refused(tmp_path: Path) -> None:
    """A higher user_version than we know is an error, not a guess."""
    path = tmp_path / "f.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StorageError, match="upgrade forexd"):
        open_sync(path)


def test_a_file_that_is_not_a_database_is_refused_clearly(tmp_path: Path) -> None:
    """Garbage in forexd.db gives an error naming the file."""
    path = tmp_path / "f.db"
    path.write_bytes(b"definitely not sqlite" * 100)
    with pytest.raises(StorageError, match=str(path)):
        open_sync(path)


@pytest.mark.anyio
async def test_writer_commits_queued_writes_in_order_and_reports_durable_ones(
    tmp_path: Path,
) -> None:
    """submit() batches; execute() returns only after commit; readers see the rows."""
    path = tmp_path / "f.db"
    async with running_writer(path) as writer:
        for i in range(1000):
            writer.submit(
                "INSERT INTO events (ts_ns, kind, symbol, detail) VALUES (?, 'k', NULL, '')", (i,)
            )
        await writer.execute(
            "INSERT INTO events (ts_ns, kind, symbol, detail) VALUES (?, 'durable', NULL, '')",
            (5000,),
        )
        rows = await read_all(path, "SELECT COUNT(*), MAX(ts_ns) FROM events")
        assert [(1001, 5000)] == rows
        stats = writer.stats()
        assert stats.transactions < 1001  # group commit


@pytest.mark.anyio
async def test_one_bad_statement_does_not_lose_the_rest_of_its_batch(tmp_path: Path) -> None:
    """A failing durable write raises for its caller; queued neighbours still commit."""
    path = tmp_path / "f.db"
    async with running_writer(path) as writer:
        sql = "INSERT INTO actor_progress (symbol, last_bar_ts, bars_seen) VALUES (?, ?, ?)"
        writer.submit(sql, ("A", 1, 1))
        with pytest.raises(StorageError, match="UNIQUE"):
            await writer.execute(sql, ("A", 2, 2))
        writer.submit(sql, ("B", 3, 3))
        await writer.flush()
        rows = await read_all(path, "SELECT symbol, last_bar_ts FROM actor_progress ORDER BY 1")
        assert [("A", 1), ("B", 3)] == rows
        assert writer.stats().errors >= 1


@pytest.mark.anyio
async def test_a_fast_producer_waits_for_the_writer_instead_of_overflowing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """wait_for_room() holds producers above the high-water mark; nothing is refused."""
    from forexd.storage import writer as writer_module

    monkeypatch.setattr(writer_module, "HIGH_WATER", 50)
    path = tmp_path / "f.db"
    sql = "INSERT INTO events (ts_ns, kind, symbol, detail) VALUES (?, 'k', NULL, '')"
    async with running_writer(path) as writer:
        peak = 0
        for i in range(5000):
            writer.submit(sql, (i,))
            if i % 10 == 0:
                await writer.wait_for_room()
                peak = max(peak, writer.stats().queued)
        await writer.flush()
        assert [(5000,)] == await read_all(path, "SELECT COUNT(*) FROM events")
        assert peak <= 50


EVENT_SQL = "INSERT INTO events (ts_ns, kind, symbol, detail) VALUES (?, ?, NULL, '')"


@pytest.mark.anyio
async def test_flush_is_not_counted_as_a_failed_write(tmp_path: Path) -> None:
    """A healthy writer that is flushed often reports zero errors."""
    async with running_writer(tmp_path / "f.db") as writer:
        for i in range(20):
            writer.submit(EVENT_SQL, (i, "k"))
            await writer.flush()
        assert 0 == writer.stats().errors
        assert 20 == writer.stats().statements


@pytest.mark.anyio
async def test_a_bad_row_in_a_batched_run_neither_loses_nor_doubles_its_neighbours(
    tmp_path: Path,
) -> None:
    """Same-text statements batched together: the bad one fails alone, the others once."""
    from structlog.testing import capture_logs

    path = tmp_path / "f.db"
    async with running_writer(path) as writer:
        with capture_logs() as logs:
            writer.submit(EVENT_SQL, (1, "k"))
            writer.submit(EVENT_SQL, (2, None))  # kind is NOT NULL
            writer.submit(EVENT_SQL, (3, "k"))
            await writer.flush()
        assert [(1,), (3,)] == await read_all(path, "SELECT ts_ns FROM events ORDER BY rowid")
        assert 1 == writer.stats().errors
        failed = [e for e in logs if e["event"] == "storage_write_failed"]
        assert 1 == len(failed)
        assert "INSERT events" == failed[0]["kind"]
        assert "NOT NULL" in failed[0]["error"]


@pytest.mark.anyio
async def test_after_close_flush_is_a_no_op_and_writes_are_refused(tmp_path: Path) -> None:
    """close() commits the queue; flush() then returns; submit/execute raise StorageError."""
    path = tmp_path / "f.db"
    async with running_writer(path) as writer:
        writer.submit(EVENT_SQL, (1, "k"))
        await writer.close()
        await writer.flush()
        await writer.close()
        with pytest.raises(StorageError, match="closed"):
            writer.submit(EVENT_SQL, (2, "k"))
        with pytest.raises(StorageError, match="closed"):
            await writer.execute(EVENT_SQL, (3, "k"))
    assert [(1,)] == await read_all(path, "SELECT ts_ns FROM events")


@pytest.mark.anyio
async def test_a_writer_that_died_fails_waiting_callers_instead_of_hanging(
    tmp_path: Path,
) -> None:
    """Cancelled with writes queued: flush() raises StorageError naming the lost writes."""
    writer = StorageWriter(tmp_path / "f.db")
    async with anyio.create_task_group() as tg:
        await tg.start(writer.run)
        tg.cancel_scope.cancel()
    with pytest.raises(StorageError, match="stopped without closing"):
        await writer.flush()


@pytest.mark.anyio
async def test_closing_a_writer_that_never_ran_returns_at_once(tmp_path: Path) -> None:
    """A start-up that failed before the writer ran can still shut down (no hang)."""
    writer = StorageWriter(tmp_path / "f.db")
    with anyio.fail_after(5):
        await writer.close()
        await writer.flush()
    with pytest.raises(StorageError, match="closed"):
        writer.submit(EVENT_SQL, (1, "k"))


@pytest.mark.anyio
async def test_checkpoints_run_beside_the_writer_and_a_size_bound_truncates_the_wal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer never checkpoints inside a commit; checkpoint() does, and bounds the WAL."""
    from forexd.storage import writer as writer_module

    monkeypatch.setattr(writer_module, "CHECKPOINT_EVERY_S", 3600.0)  # only when asked
    path = tmp_path / "f.db"
    wal = anyio.Path(f"{path}-wal")
    sql = "INSERT INTO events (ts_ns, kind, symbol, detail) VALUES (?, 'k', NULL, ?)"
    async with running_writer(path) as writer:
        for i in range(6000):  # ~6 MB: past the 1000-page autocheckpoint of other connections
            writer.submit(sql, (i, "x" * 1000))
            if i % 500 == 0:
                await writer.wait_for_room()
        await writer.flush()
        assert (await wal.stat()).st_size > 5 * 2**20  # nothing checkpointed inside the commits
        monkeypatch.setattr(writer_module, "WAL_MAX_BYTES", 2**20)
        await writer.checkpoint()
        assert 0 == (await wal.stat()).st_size
        assert 1 == writer.stats().checkpoints
        assert [(6000,)] == await read_all(path, "SELECT COUNT(*) FROM events")
