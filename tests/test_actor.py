"""SymbolActor in process: its inbox of commands, and only the present traded live."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest
import structlog

from forexd.actors.deps import ActorDeps
from forexd.actors.present import BEFORE_START, NO_CLOCK, STALE, PresentPolicy
from forexd.actors.symbol import SymbolActor
from forexd.brokers.ledger import CostModel
from forexd.brokers.paper import PaperBroker
from forexd.domain import Bar
from forexd.domain.bars import BarHistory
from forexd.errors import ControlRefusedError
from forexd.storage.db import StorageWriter
from forexd.strategies.sma_cross import SmaCross, SmaCrossParams
from tests._inproc import ScriptedFeed, wait_until

pytestmark = pytest.mark.anyio

PERIOD_S = 60
NS = 1_000_000_000
START_NS = 1_800_000_000 * NS  # the actor's "now" when it starts (a fake wall clock)


class Flip:
    """Wants +1000 on even bar periods and -1000 on odd ones: an order on every decision."""

    name: ClassVar[str] = "flip"
    warmup_bars = 1

    def decide(self, history: BarHistory, position_units: int) -> int | None:
        assert history.last is not None
        return 1000 if (history.last.ts // (PERIOD_S * NS)) % 2 == 0 else -1000


class Clock:
    """A wall clock the test moves."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def _bar(ts: int) -> Bar:
    return Bar("EURUSD", ts, 1.1, 1.1002, 1.0998, 1.1001, 10.0)


class PushFeed(ScriptedFeed):
    """A live-like feed: bars the test pushes one by one."""

    recorded = False

    def push_bar(self, bar: Bar) -> None:
        """Queue one bar."""
        self._streams[bar.symbol][0].send_nowait(bar)


def _read_orders(db: Path) -> list[int]:
    with sqlite3.connect(db) as conn:
        return [int(r[0]) for r in conn.execute("SELECT bar_ts FROM orders ORDER BY bar_ts")]


async def _orders(writer: StorageWriter, db: Path) -> list[int]:
    await writer.flush()
    return await anyio.to_thread.run_sync(_read_orders, db)


async def _actor(
    tg: Any, tmp: Path, strategy: Any, present: PresentPolicy
) -> tuple[SymbolActor, PushFeed, StorageWriter]:
    db = tmp / "forexd.db"
    writer = StorageWriter(db)
    await tg.start(writer.run)
    broker = await anyio.to_thread.run_sync(PaperBroker.restore, db, writer, 100_000.0, CostModel())
    feed = PushFeed(["EURUSD"])
    deps = ActorDeps(writer, broker, feed, db, "M1", True, 60, present=present)
    actor = SymbolActor("EURUSD", strategy, deps, structlog.get_logger())
    await tg.start(actor.run)
    return actor, feed, writer


async def test_live_feed_history_warms_the_strategy_and_only_the_present_is_traded(
    tmp_path: Path,
) -> None:
    """Back-filled bars and a late bar warm the strategy and count; live bars trade."""
    clock = Clock(START_NS)
    period = PERIOD_S * NS
    async with anyio.create_task_group() as tg:
        actor, feed, writer = await _actor(
            tg, tmp_path, Flip(), PresentPolicy.live(PERIOD_S, 1.0, clock)
        )
        history = [START_NS - (50 - i) * period for i in range(50)]  # closed before start
        for ts in history:
            feed.push_bar(_bar(ts))
        await wait_until(lambda: actor.stats().bars_seen == 50, "warm-up consumed")
        assert [] == await _orders(writer, tmp_path / "forexd.db")
        assert {BEFORE_START: 50} == actor.stats().bars_not_traded
        assert actor.core.history.last is not None and history[-1] == actor.core.history.last.ts

        live = [START_NS + i * period for i in range(4)]
        for n, ts in enumerate(live, start=51):
            clock.now = ts + period + NS  # the bar closed a second ago
            feed.push_bar(_bar(ts))
            await wait_until(lambda n=n: actor.stats().bars_seen == n, f"bar {n}")
        late = START_NS + 4 * period
        clock.now = late + 3 * period  # arrives two periods after it closed
        feed.push_bar(_bar(late))
        await wait_until(lambda: actor.stats().bars_seen == 55, "late bar")
        assert live == await _orders(writer, tmp_path / "forexd.db")
        assert {BEFORE_START: 50, STALE: 1} == actor.stats().bars_not_traded
        tg.cancel_scope.cancel()


async def test_a_recorded_feed_trades_every_bar_it_plays(tmp_path: Path) -> None:
    """Replay semantics: with the recorded policy, bars from long ago are the present."""
    period = PERIOD_S * NS
    async with anyio.create_task_group() as tg:
        actor, feed, writer = await _actor(tg, tmp_path, Flip(), PresentPolicy.recorded())
        old = [START_NS - (10 - i) * period for i in range(10)]
        for ts in old:
            feed.push_bar(_bar(ts))
        await wait_until(lambda: actor.stats().bars_seen == 10, "bars consumed")
        assert old == await _orders(writer, tmp_path / "forexd.db")
        assert {} == actor.stats().bars_not_traded
        tg.cancel_scope.cancel()


async def test_pause_flatten_resume_and_reload_are_messages_the_actor_answers(
    tmp_path: Path,
) -> None:
    """Each command is applied by the actor between bars and answered on its reply."""
    period = PERIOD_S * NS
    async with anyio.create_task_group() as tg:
        actor, feed, writer = await _actor(tg, tmp_path, Flip(), PresentPolicy.recorded())
        feed.push_bar(_bar(START_NS))
        feed.push_bar(_bar(START_NS + 2 * period))  # fills the first order (+1000)
        await wait_until(lambda: actor.position.units == 1000, "long 1000")

        await actor.set_paused(True)
        assert ("paused", True) == (actor.state, actor.core.paused)
        feed.push_bar(_bar(START_NS + 3 * period))  # would flip short: paused, no order
        await wait_until(lambda: actor.stats().bars_seen == 3, "paused bar")
        assert [START_NS] == await _orders(writer, tmp_path / "forexd.db")

        closed = await actor.flatten()
        assert -1000 == closed["units"] and closed["client_id"]
        feed.push_bar(_bar(START_NS + 4 * period))
        await wait_until(lambda: actor.position.units == 0, "flat")

        await actor.set_paused(False)
        assert "running" == actor.state
        with pytest.raises(ControlRefusedError, match="no model to retrain"):
            await actor.request_retrain("operator")

        sma = SmaCross(SmaCrossParams(fast=2, slow=3, units=5000))
        await actor.replace_strategy(sma, {"fast": 2, "slow": 3})
        assert actor.strategy is sma and actor.core.strategy is sma
        tg.cancel_scope.cancel()


async def test_a_parked_actor_refuses_commands_at_once(tmp_path: Path) -> None:
    """A failed actor has no life to answer: the caller is told so instead of waiting."""
    async with anyio.create_task_group() as tg:
        actor, _, _ = await _actor(tg, tmp_path, Flip(), PresentPolicy.recorded())
        actor.state = "failed"  # what the supervisor records when it parks an actor
        with anyio.fail_after(5), pytest.raises(ControlRefusedError, match="failed"):
            await actor.set_paused(True)
        tg.cancel_scope.cancel()


def test_present_policy_without_a_clock_trades_nothing_and_ages_bars_from_their_close() -> None:
    """No feed time yet: not traded; a bar is judged by the time since it closed."""
    period = PERIOD_S * NS
    unknown = PresentPolicy.live(PERIOD_S, 1.0, lambda: None)
    assert NO_CLOCK == unknown.not_present(START_NS, None)
    clock = Clock(START_NS + 2 * period)  # the bar opened at START_NS closed one period ago
    policy = PresentPolicy.live(PERIOD_S, 1.0, clock)
    assert policy.not_present(START_NS, None) is None
    clock.now += 1
    assert STALE == policy.not_present(START_NS, None)
    assert BEFORE_START == policy.not_present(START_NS, START_NS + period)
    assert PresentPolicy.recorded().not_present(0, None) is None


async def test_a_reload_sent_between_two_lives_is_applied_by_the_next_life(
    tmp_path: Path,
) -> None:
    """A strategy swap queued while the actor restarts reaches its next life; nothing waits."""
    async with anyio.create_task_group() as tg:
        db = tmp_path / "forexd.db"
        writer = StorageWriter(db)
        await tg.start(writer.run)
        broker = await anyio.to_thread.run_sync(
            PaperBroker.restore, db, writer, 100_000.0, CostModel()
        )
        deps = ActorDeps(writer, broker, PushFeed(["EURUSD"]), db, "M1", True, 60)
        actor = SymbolActor("EURUSD", Flip(), deps, structlog.get_logger())
        async with anyio.create_task_group() as life:
            await life.start(actor.run)
            life.cancel_scope.cancel()  # the life ends (a crash, as far as the queue cares)
        actor.state = "restarting"  # what the supervisor records between two lives
        sma = SmaCross(SmaCrossParams(fast=2, slow=3, units=5000))
        with anyio.fail_after(1):
            await actor.replace_strategy(sma, {"fast": 2, "slow": 3})
        assert actor.core.strategy is not sma
        await tg.start(actor.run)
        await wait_until(lambda: actor.core.strategy is sma, "strategy swapped")
        tg.cancel_scope.cancel()
