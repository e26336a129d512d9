"""Risk state persistence: on change, coalesced, never ahead of the fills, on disk at a stop.

In process: a real ``RiskRuntime`` with a real state file and its portable lock, the
persister task running in an anyio task group; the storage writer's ``flush`` is a function
the test controls. End to end: a ``forexd run`` subprocess stopped by SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import portalocker
import pytest
import structlog
from anyio import wait_all_tasks_blocked

from forexd.daemon import riskruntime
from forexd.daemon.riskruntime import RiskRuntime
from forexd.risk import RiskLimits, RiskState
from forexd.storage.riskstate import RiskStateStore
from tests.daemon_proc import DaemonProc, write_config

ACCOUNT = "paper"
NOW = 1_718_200_800 * 1_000_000_000  # 2024-06-12T14:00:00Z
BURST = 500
STREAM_S = 0.3

PACED = """
[feed]
source = "bundled"
speed = 360000.0   # 100 H1 bars per second: orders and fills all along
max_sleep_s = 0.01

[[symbols]]
symbol = "EURUSD"
params = { fast = 3, slow = 7, units = 10000 }
"""


@dataclass
class Flush:
    """The storage writer's flush as the risk runtime sees it: counted, and holdable."""

    calls: int = 0
    gate: anyio.Event | None = None  # while set to an unset event, flush waits for it
    log: list[str] = field(default_factory=list)

    async def __call__(self) -> None:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        self.log.append("flushed")


@dataclass
class Running:
    """A loaded runtime whose persister runs, and what the test needs around it."""

    rt: RiskRuntime
    flush: Flush
    read: Callable[[], Awaitable[RiskState]]


@contextlib.asynccontextmanager
async def persisting(tmp_path: Path) -> AsyncIterator[Running]:
    """Load a fresh state file, bind a counted flush, run the persister inside the block."""
    limits = RiskLimits(daily_loss_limit_usd=None, max_drawdown=None, max_orders_per_minute=None)
    rt = RiskRuntime(
        limits, tmp_path / "risk_state.json", tmp_path / "none.db", ACCOUNT, structlog.get_logger()
    )
    await anyio.to_thread.run_sync(rt.load)
    flush = Flush()
    rt.bind(dict, flush)
    store = RiskStateStore(rt.store.path, ACCOUNT)

    async def read() -> RiskState:
        return await anyio.to_thread.run_sync(store.read)

    async with anyio.create_task_group() as tg:
        tg.start_soon(rt.persist_loop)
        with anyio.fail_after(30):
            yield Running(rt, flush, read)
        tg.cancel_scope.cancel()


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    """:func:`persisting` for the length of a test."""
    async with persisting(tmp_path) as ctx:
        yield ctx


class _NoTimers:
    """``anyio`` as the risk runtime sees it, except that sleeping fails the test."""

    def __getattr__(self, name: str) -> Any:
        return getattr(anyio, name)

    async def sleep(self, delay: float) -> None:
        raise AssertionError(f"the risk persister slept {delay} s: persistence must not poll")


pytestmark = pytest.mark.anyio


async def test_a_change_is_written_as_soon_as_it_happens_without_a_timer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The persister waits for a change, not a clock: the new equity is on disk at once."""
    monkeypatch.setattr(riskruntime, "anyio", _NoTimers())
    async with persisting(tmp_path) as ctx:
        written = ctx.rt.writes
        ctx.rt.observe_equity(101_234.5, NOW)
        assert ctx.rt.dirty
        await ctx.rt.wait_written()
        assert 101_234.5 == (await ctx.read()).last_equity
        assert written + 1 == ctx.rt.writes
        assert not ctx.rt.dirty
        assert 0 == ctx.flush.calls  # no fill counted: nothing to wait for in the store


async def test_a_burst_of_changes_is_coalesced_and_the_file_ends_equal_to_the_state(
    running: Running,
) -> None:
    """500 changes, the loop yielding after each: far fewer writes, the last holds the last."""
    written = running.rt.writes
    for i in range(BURST):
        running.rt.observe_equity(100_000.0 + i, NOW + i)
        await anyio.lowlevel.checkpoint()
    await running.rt.wait_written()
    assert running.rt.writes - written < BURST // 10
    assert running.rt.gate is not None
    assert running.rt.gate.snapshot() == await running.read()


async def test_a_stream_of_changes_is_written_at_most_once_per_gap(running: Running) -> None:
    """Equity moving at every loop turn for 0.3 s: writes are paced by MIN_WRITE_GAP_S."""
    written = running.rt.writes
    started = anyio.current_time()
    i = 0
    while anyio.current_time() - started < STREAM_S:
        i += 1
        running.rt.observe_equity(100_000.0 + i, NOW + i)
        await anyio.lowlevel.checkpoint()
    await running.rt.wait_written()
    assert i > 100  # a stream, not a handful of changes
    assert running.rt.writes - written <= STREAM_S / riskruntime.MIN_WRITE_GAP_S + 2


async def test_changes_during_a_write_cause_exactly_one_more_write(running: Running) -> None:
    """A write held by another process's lock; 100 changes meanwhile -> one write after it."""
    written = running.rt.writes
    lock = portalocker.Lock(
        running.rt.store.lock_path, mode="a", flags=portalocker.LockFlags.SHARED
    )
    lock.acquire()
    try:
        running.rt.observe_equity(90_000.0, NOW)
        await wait_all_tasks_blocked()  # the persister is in its write, waiting for the lock
        for i in range(100):
            running.rt.observe_equity(90_001.0 + i, NOW + i)
            await anyio.lowlevel.checkpoint()
        assert written == running.rt.writes
    finally:
        lock.release()
    await running.rt.wait_written()
    assert written + 2 == running.rt.writes
    assert 90_100.0 == (await running.read()).last_equity


async def test_a_snapshot_with_new_fills_waits_for_them_to_be_committed(running: Running) -> None:
    """The file is never ahead of the fills table: it is written only after the flush."""
    running.flush.gate = anyio.Event()
    running.rt.on_fill(12.5, 0.5, NOW)
    await wait_all_tasks_blocked()  # the persister waits in flush
    assert 1 == running.flush.calls
    assert 0 == (await running.read()).fills_applied_seq
    running.flush.gate.set()
    await running.rt.wait_written()
    assert 1 == (await running.read()).fills_applied_seq
    running.rt.observe_equity(100_012.0, NOW + 1)  # no new fill: no flush needed
    await running.rt.wait_written()
    assert 1 == running.flush.calls


async def test_the_final_write_after_the_persister_stopped_happens_once(tmp_path: Path) -> None:
    """Shutdown: persister stopped, a last change, one final persist; a second writes nothing."""
    async with persisting(tmp_path) as ctx:
        rt = ctx.rt
    # the block's task group has ended: the persister is cancelled and done
    rt.on_fill(-3.0, 0.25, NOW)
    written = rt.writes
    await rt.persist()
    await rt.persist()
    assert written + 1 == rt.writes
    assert 1 == ctx.flush.calls
    assert 1 == (await ctx.read()).fills_applied_seq


@pytest.mark.e2e
@pytest.mark.allow_blocking
def test_sigterm_right_after_a_fill_leaves_it_in_the_risk_file(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """SIGTERM just after an order fills: exit 0, and the file has counted every fill."""
    data = short_tmp / "data"
    cfg = write_config(short_tmp / "c.toml", PACED)
    d = daemon_factory(data, cfg)
    d.wait_for("ready")
    d.wait_for("order_filled")
    d.wait_for("order_filled")
    assert 0 == d.signal()
    with sqlite3.connect(data / "forexd.db") as conn:
        last_fill = conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM fills").fetchone()[0]
    state = json.loads((data / "risk_state.json").read_text(encoding="utf-8"))["payload"]
    assert last_fill >= 2
    assert last_fill == state["fills_applied_seq"]
