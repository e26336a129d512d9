"""Shared storage set-ups: a running storage writer, a paper book, rows of the paper tables.

Each is the real thing (the daemon's :class:`StorageWriter`, :meth:`PaperBroker.restore`
on a real SQLite file); only the repetition is factored out.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

from forexd.brokers.ledger import CostModel
from forexd.brokers.paper import PaperBroker
from forexd.storage.db import StorageWriter

PAPER_BALANCE = 100_000.0


@asynccontextmanager
async def running_writer(path: Path) -> AsyncIterator[StorageWriter]:
    """The daemon's storage writer on ``path``, running for the block; closed at its end.

    Closing is idempotent, so a test may close it itself (to test the close).
    """
    writer = StorageWriter(path)
    async with anyio.create_task_group() as tg:
        await tg.start(writer.run)
        yield writer
        await writer.close()


async def restore_paper(path: Path, writer: StorageWriter) -> PaperBroker:
    """``PaperBroker.restore`` with the default account, off the loop as the daemon runs it."""
    return await anyio.to_thread.run_sync(
        PaperBroker.restore, path, writer, PAPER_BALANCE, CostModel()
    )


def insert_paper_order(
    conn: sqlite3.Connection, client_id: str, units: int, bar_ts: int, symbol: str = "EURUSD"
) -> None:
    """A ``submitted`` row of ``paper_orders``, as an earlier life of the book left it."""
    conn.execute(
        "INSERT INTO paper_orders (client_id, symbol, units, bar_ts, status, submitted_ns)"
        " VALUES (?, ?, ?, ?, 'submitted', 0)",
        (client_id, symbol, units, bar_ts),
    )


def insert_paper_fill(
    conn: sqlite3.Connection,
    fill_id: str,
    client_id: str,
    units: int,
    ts: int,
    symbol: str = "EURUSD",
) -> None:
    """A ``paper_fills`` row at 1.1, no commission, as an earlier life of the book left it."""
    conn.execute(
        "INSERT INTO paper_fills (fill_id, client_id, symbol, units, price, commission, ts)"
        " VALUES (?, ?, ?, ?, 1.1, 0, ?)",
        (fill_id, client_id, symbol, units, ts),
    )
