"""The paper book never fills an order twice: the database and the restore both forbid it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from forexd.brokers.ledger import Ledger, Protective
from forexd.domain import Bar, Order, Protection
from forexd.storage.db import migrate, open_sync
from forexd.storage.schema import MIGRATIONS
from tests._store import insert_paper_fill, insert_paper_order, restore_paper, running_writer

HOUR_NS = 3_600_000_000_000
T0 = 1_500_000_000 * 1_000_000_000


def _bar(ts: int, price: float = 1.1) -> Bar:
    return Bar("EURUSD", ts, price, price, price, price, 0.0)


def test_an_order_fills_only_on_a_bar_after_its_own() -> None:
    """A replayed bar at or before the order's bar never fills it; the next one does."""
    ledger = Ledger(100_000.0)
    ledger.submit(Order("c1", "EURUSD", 1000, T0, 0))
    assert [] == ledger.on_bar(_bar(T0 - HOUR_NS))
    assert [] == ledger.on_bar(_bar(T0))
    fills = ledger.on_bar(_bar(T0 + HOUR_NS))
    assert ["c1"] == [f.client_id for f in fills]
    assert T0 + HOUR_NS == fills[0].ts


def test_the_database_refuses_a_second_fill_for_one_client_id(tmp_path: Path) -> None:
    """UNIQUE on paper_fills.client_id: the constraint holds even if code were wrong."""
    conn = open_sync(tmp_path / "f.db")
    insert_paper_fill(conn, "P1", "c1", 1000, 0)
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        insert_paper_fill(conn, "P2", "c1", 1000, 0)


def test_migration_keeps_old_double_fills_as_history_and_forbids_new_ones(
    tmp_path: Path,
) -> None:
    """A version-2 book with a doubled order migrates: both fills kept, the extra flagged."""
    path = tmp_path / "f.db"
    conn = sqlite3.connect(path)
    for stmt in MIGRATIONS[0] + MIGRATIONS[1]:
        conn.execute(stmt)
    conn.execute("PRAGMA user_version=2")
    for fid in ("P1", "P2"):
        conn.execute("INSERT INTO paper_fills VALUES (?, 'c1', 'EURUSD', 1000, 1.1, 0, 0)", (fid,))
    conn.commit()
    assert 2 == migrate(conn, path)
    rows = conn.execute("SELECT fill_id, duplicate FROM paper_fills ORDER BY rowid").fetchall()
    assert [("P1", 0), ("P2", 1)] == rows
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        insert_paper_fill(conn, "P3", "c1", 1000, 0)


# Sets up and reads the store with the synchronous API it tests (not the runtime).
@pytest.mark.allow_blocking
@pytest.mark.anyio
async def test_restore_derives_pending_orders_from_fills_not_the_status_column(
    tmp_path: Path,
) -> None:
    """An order whose status row still says submitted but which has a fill is not refilled."""
    path = tmp_path / "f.db"
    conn = open_sync(path)
    with conn:
        insert_paper_order(conn, "c1", 1000, T0)
        insert_paper_order(conn, "c2", -1000, T0 + HOUR_NS)
        insert_paper_fill(conn, "P1", "c1", 1000, T0 + HOUR_NS)
    conn.close()
    async with running_writer(path) as writer:
        broker = await restore_paper(path, writer)
        assert {"c2"} == set(broker.ledger.pending)
        fills = await broker.on_bar(_bar(T0 + 2 * HOUR_NS, 1.2))
        assert ["c2"] == [f.client_id for f in fills]
        assert "P2" == fills[0].fill_id
        assert {} == await broker.positions()
    check = sqlite3.connect(path)
    got = check.execute("SELECT client_id FROM paper_fills ORDER BY rowid").fetchall()
    assert [("c1",), ("c2",)] == got


# Sets up and reads the store with the synchronous API it tests (not the runtime).
@pytest.mark.allow_blocking
@pytest.mark.anyio
async def test_a_bar_replayed_behind_the_book_fills_nothing_after_a_restart(
    tmp_path: Path,
) -> None:
    """The paper market's clock never runs backwards: old bars wait for the first new one."""
    path = tmp_path / "f.db"
    conn = open_sync(path)
    with conn:
        insert_paper_fill(conn, "P1", "c1", 1000, T0 + 5 * HOUR_NS)
    conn.close()
    async with running_writer(path) as writer:
        broker = await restore_paper(path, writer)
        await broker.submit(Order("c2", "EURUSD", -1000, T0, 0))
        for hours in (1, 2, 5):  # a replay restarted from its first bar
            assert [] == await broker.on_bar(_bar(T0 + hours * HOUR_NS, 1.3))
        fills = await broker.on_bar(_bar(T0 + 6 * HOUR_NS, 1.2))
        assert [("c2", T0 + 6 * HOUR_NS)] == [(f.client_id, f.ts) for f in fills]


# Sets up and reads the store with the synchronous API it tests (not the runtime).
@pytest.mark.allow_blocking
@pytest.mark.anyio
async def test_a_restart_keeps_the_stop_of_an_open_position_and_of_a_queued_order(
    tmp_path: Path,
) -> None:
    """Levels (trailing moves included) and an accepted order's protection survive a restart."""
    path = tmp_path / "f.db"
    open_sync(path).close()  # a fresh, migrated database
    async with running_writer(path) as writer:
        broker = await restore_paper(path, writer)
        await broker.submit(Order("c1", "EURUSD", 1000, T0, 0, "", Protection(0.01, None, True)))
        await broker.on_bar(Bar("EURUSD", T0 + HOUR_NS, 1.10, 1.12, 1.10, 1.11))
        assert 1.11 == broker.ledger.protective["EURUSD"].stop  # trailed from 1.10's 1.09
        await broker.submit(Order("c2", "GBPUSD", -500, T0, 0, "", Protection(0.02, 0.03)))
    async with running_writer(path) as writer:
        again = await restore_paper(path, writer)
        assert Protective("c1", 1, 1.11, None, 0.01) == again.ledger.protective["EURUSD"]
        assert Protection(0.02, 0.03) == again.ledger.pending["c2"].protection
        shown = {"stop": 1.11, "take_profit": None, "stop_kind": "trailing"}
        assert shown == again.protection_of("EURUSD")  # what ctl status shows
        (stop,) = await again.on_bar(Bar("EURUSD", T0 + 2 * HOUR_NS, 1.11, 1.11, 1.05, 1.06))
        assert (stop.units, stop.price, stop.reason) == (-1000, 1.11, "trailing_stop")
    with sqlite3.connect(path) as check:
        assert [] == check.execute("SELECT * FROM paper_protection").fetchall()
