"""WAL checkpoints from a background connection: passive on a timer, forced past a bound."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from forexd.storage.checkpointer import WalCheckpointer

ROW = "x" * 3000  # about one page per row


def _writer(path: Path) -> sqlite3.Connection:
    """A connection set up like the StorageWriter's: WAL, autocheckpoint off."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)")
    return conn


def _write(conn: sqlite3.Connection, n: int) -> None:
    for _ in range(n):
        conn.execute("INSERT INTO t (v) VALUES (?)", (ROW,))  # one commit each, like orders


def _wal_size(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def test_passive_checkpoints_keep_the_wal_from_growing(tmp_path: Path) -> None:
    """Checkpoints between bursts let the writer reuse the WAL; without them it grows."""
    with_ckpt, without = tmp_path / "a.db", tmp_path / "b.db"
    wa, wb = _writer(with_ckpt), _writer(without)
    ckpt = WalCheckpointer(with_ckpt, interval_s=1.0)
    ckpt.open()
    try:
        for _ in range(10):
            _write(wa, 50)
            _write(wb, 50)
            ckpt.checkpoint_once()
        assert 10 == ckpt.stats().passive
        assert 0 == ckpt.stats().forced
        assert _wal_size(with_ckpt) < _wal_size(without) / 5
        assert 500 == wa.execute("SELECT count(*) FROM t").fetchone()[0]
    finally:
        ckpt.close()
        wa.close()
        wb.close()


def test_a_wal_past_the_bound_is_truncated_once_readers_let_go(tmp_path: Path) -> None:
    """A reader pins old frames so passive cannot finish; past the bound TRUNCATE runs."""
    path = tmp_path / "c.db"
    writer = _writer(path)
    _write(writer, 5)
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    assert 5 == reader.execute("SELECT count(*) FROM t").fetchone()[0]  # snapshot held
    ckpt = WalCheckpointer(path, max_wal_bytes=256 * 1024)
    ckpt.open()
    try:
        _write(writer, 200)  # ~800 KB of WAL while the reader holds its snapshot
        reader.execute("COMMIT")
        stats = ckpt.checkpoint_once()
        assert 1 == stats.forced
        assert 0 == stats.wal_bytes
        assert 0 == _wal_size(path)  # TRUNCATE gave the disk back
        assert 205 == writer.execute("SELECT count(*) FROM t").fetchone()[0]
        _write(writer, 3)  # the writer carries on in a fresh WAL
        assert 208 == sqlite3.connect(path).execute("SELECT count(*) FROM t").fetchone()[0]
    finally:
        ckpt.close()
        reader.close()
        writer.close()


def test_a_wal_under_the_bound_is_never_forced(tmp_path: Path) -> None:
    """Below max_wal_bytes only passive checkpoints run (no commit is ever delayed)."""
    path = tmp_path / "d.db"
    writer = _writer(path)
    ckpt = WalCheckpointer(path, max_wal_bytes=64 * 1024 * 1024)
    ckpt.open()
    try:
        _write(writer, 100)
        stats = ckpt.checkpoint_once()
        assert (1, 0) == (stats.passive, stats.forced)
    finally:
        ckpt.close()
        writer.close()
