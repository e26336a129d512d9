"""The SQLite store: one writer task owns the only write connection; readers open their own.

This module is the store's public face; the code lives in two parts:

- :mod:`forexd.storage.sqlite`: pragmas, migrations (``PRAGMA user_version``), opening,
  one-off reads, and the messages for a damaged database;
- :mod:`forexd.storage.writer`: :class:`StorageWriter`, the single writer task, which
  applies statements strictly in submission order with group commit.
"""

from __future__ import annotations

from forexd.storage.sqlite import (
    BUSY_TIMEOUT_MS,
    DAMAGE_CODES,
    SQLITE_FULL,
    WAL_AUTOCHECKPOINT_PAGES,
    Params,
    checkpoint_sync,
    configure,
    damaged,
    is_damaged,
    migrate,
    now_ns,
    open_sync,
    read_all,
)
from forexd.storage.writer import StorageWriter, WriterStats, statement_kind

__all__ = [
    "BUSY_TIMEOUT_MS",
    "DAMAGE_CODES",
    "SQLITE_FULL",
    "WAL_AUTOCHECKPOINT_PAGES",
    "Params",
    "StorageWriter",
    "WriterStats",
    "checkpoint_sync",
    "configure",
    "damaged",
    "is_damaged",
    "migrate",
    "now_ns",
    "open_sync",
    "read_all",
    "statement_kind",
]
