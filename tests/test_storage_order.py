"""The writer applies statements in submission order, whatever the interleaving.

A hypothesis state machine drives a real :class:`StorageWriter` on a real SQLite file
through random submit / execute / flush / close / crash sequences. Every write appends one
numbered row through one of several statement texts (the old writer regrouped statements
by text and so reordered a batch), plus an ``UPDATE`` of a row written just before it.
After every step the rows on disk must be a prefix of what was submitted, in order, and
must include everything a caller was told is committed.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import threading
from concurrent.futures import Future
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import TaskStatus
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from forexd.errors import StorageError
from forexd.storage.db import StorageWriter

# Three texts for the same kind of write: consecutive runs of one text may be batched into
# an executemany; a writer that groups by text across the batch puts them out of order.
INSERTS = [
    "INSERT INTO events (ts_ns, kind, symbol, detail) VALUES (?, 'a', NULL, '')",
    "INSERT INTO events (ts_ns, kind, symbol, detail) VALUES (?, 'b', NULL, '')",
    "INSERT INTO events (detail, kind, symbol, ts_ns) VALUES ('', 'c', NULL, ?)",
]
# Marks the row just inserted: only correct if it runs after that INSERT.
UPDATE = "UPDATE events SET detail = 'seen' WHERE ts_ns = ?"


def _on_disk(path: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(path) as conn:
        return [
            (int(r[0]), str(r[1]))
            for r in conn.execute("SELECT ts_ns, detail FROM events ORDER BY rowid")
        ]


class WriterOrder(RuleBasedStateMachine):
    """Model: the list of (seq, detail) rows in submission order; ``acked`` of them durable."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="fxd-order-"))
        self.path = self.tmp / "f.db"
        self._portal_cm: AbstractContextManager[BlockingPortal] = start_blocking_portal("asyncio")
        self.portal = self._portal_cm.__enter__()
        self.expected: list[tuple[int, str]] = []  # what a full commit would leave on disk
        self.acked = 0  # rows a caller was told are committed
        self.seq = 0
        self.writer: StorageWriter
        self.task: Future[Any]
        self._start()

    def _start(self) -> None:
        self.writer = StorageWriter(self.path)
        self.stopped = threading.Event()
        self.task, _ = self.portal.start_task(self._life, self.writer, self.stopped)

    @staticmethod
    async def _life(
        writer: StorageWriter,
        stopped: threading.Event,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            await writer.run(task_status=task_status)
        finally:
            stopped.set()

    def _stop_task(self) -> None:
        # Future.cancel() returns before the task has unwound (anyio cancels its scope
        # from the loop thread later): wait until the writer task has really ended, or
        # the batch it is still committing would land after we looked at the disk.
        self.task.cancel()
        assert self.stopped.wait(timeout=30)

    def _write(self, kind: int, mark: bool) -> list[tuple[str, tuple[int]]]:
        seq = self.seq
        self.seq += 1
        self.expected.append((seq, "seen" if mark else ""))
        stmts = [(INSERTS[kind], (seq,))]
        if mark:
            stmts.append((UPDATE, (seq,)))
        return stmts

    @rule(kinds=st.lists(st.tuples(st.integers(0, 2), st.booleans()), min_size=1, max_size=12))
    def submit_burst(self, kinds: list[tuple[int, bool]]) -> None:
        """Queue several writes in one event-loop turn (they land in one batch)."""
        stmts = [s for kind, mark in kinds for s in self._write(kind, mark)]

        def queue() -> None:
            for sql, params in stmts:
                self.writer.submit(sql, params)

        self.portal.call(queue)

    @rule(kind=st.integers(0, 2), mark=st.booleans())
    def execute(self, kind: int, mark: bool) -> None:
        """A durable write: once it returns, it and everything before it are on disk."""
        stmts = self._write(kind, mark)
        for sql, params in stmts:
            self.portal.call(self.writer.execute, sql, params)
        self.acked = len(self.expected)

    @rule()
    def flush(self) -> None:
        """flush() returns only when everything queued before it is committed."""
        self.portal.call(self.writer.flush)
        self.acked = len(self.expected)

    @rule()
    def close_and_reopen(self) -> None:
        """close() commits everything queued; flush afterwards is a no-op; then restart."""
        self.portal.call(self.writer.close)
        self.task.result(timeout=30)
        self.portal.call(self.writer.flush)
        with pytest.raises(StorageError, match="closed"):
            self.portal.call(self.writer.submit, INSERTS[0], (-1,))
        self.acked = len(self.expected)
        assert self.expected == _on_disk(self.path)
        self._start()

    @precondition(lambda self: len(self.expected) > 0)
    @rule()
    def crash(self) -> None:
        """The writer dies with writes queued: a prefix survives, the rest is lost."""
        self._stop_task()
        disk = _on_disk(self.path)
        assert self.expected[: len(disk)] == disk
        assert len(disk) >= self.acked
        self.expected = disk
        self.acked = len(disk)
        self._start()

    @invariant()
    def disk_is_a_prefix_of_what_was_submitted(self) -> None:
        """Never a row out of order, never an acknowledged row missing."""
        disk = _on_disk(self.path)
        assert self.expected[: len(disk)] == disk
        assert len(disk) >= self.acked

    def teardown(self) -> None:
        try:
            self.portal.call(self.writer.close)
            self.task.result(timeout=30)
            assert self.expected == _on_disk(self.path)
        finally:
            self._portal_cm.__exit__(None, None, None)
            shutil.rmtree(self.tmp, ignore_errors=True)


WriterOrder.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_writer_applies_statements_in_submission_order = WriterOrder.TestCase
