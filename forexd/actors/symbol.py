"""SymbolActor: the async shell around :class:`~forexd.actors.core.SymbolCore`.

One actor per symbol. It owns its state and an inbox (an anyio memory stream) that its
feed pump fills; nothing else mutates it. Per bar it: lets the broker fill what was
pending, records fills, asks the core for an order, writes the order to SQLite *before*
sending it, then sends it. One life of an actor is :meth:`SymbolActor.run`; the
supervisor restarts it after a crash, and every restart rebuilds state from the store.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Protocol

import anyio
import numpy as np
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from forexd.actors.core import OrderGate, SymbolCore, average_true_range
from forexd.actors.inference import predict_ahead
from forexd.brokers.base import Broker
from forexd.domain import Bar, Fill, Order, OrderStatus, Position, get_instrument, ns_to_iso
from forexd.errors import BrokerError, ControlRefusedError, OrderOutcomeUnknownError
from forexd.feeds.base import ChunkedFeed, Feed
from forexd.risk import SizingConfig
from forexd.storage.db import StorageWriter, now_ns, open_sync
from forexd.strategies.base import BarHistory, Strategy, Trainable

INBOX_MESSAGES = 64  # a message is one bar, or a chunk of bars at full replay speed
LATENCY_SAMPLES = 10_000

SQL_CANDLE = (
    "INSERT OR IGNORE INTO candles (symbol, timeframe, ts, open, high, low, close, volume) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
SQL_PROGRESS = (
    "INSERT INTO actor_progress (symbol, last_bar_ts, bars_seen) VALUES (?, ?, ?) "
    "ON CONFLICT(symbol) DO UPDATE SET last_bar_ts = excluded.last_bar_ts, "
    "bars_seen = excluded.bars_seen"
)
SQL_ORDER = (
    "INSERT INTO orders (client_id, symbol, units, bar_ts, created_ns, status, reason, "
    "updated_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
SQL_ORDER_STATUS = "UPDATE orders SET status = ?, error = ?, updated_ns = ? WHERE client_id = ?"
SQL_FILL = (
    "INSERT OR IGNORE INTO fills (fill_id, client_id, symbol, units, price, commission, ts, "
    "realized_pnl, recorded_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
SQL_POSITION = (
    "INSERT INTO positions (symbol, units, avg_price, realized_pnl, commission, updated_ns) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(symbol) DO UPDATE SET units = excluded.units, "
    "avg_price = excluded.avg_price, realized_pnl = excluded.realized_pnl, "
    "commission = excluded.commission, updated_ns = excluded.updated_ns"
)
SQL_EVENT = "INSERT INTO events (ts_ns, kind, symbol, detail) VALUES (?, ?, ?, ?)"
SQL_EQUITY = (
    "INSERT INTO equity (ts, balance, equity, unrealized, recorded_ns) VALUES (?, ?, ?, ?, ?)"
)


def queue_fill(writer: StorageWriter, fill: Fill, realized: float, position: Position) -> None:
    """Queue a fill and the position it produced (the live path and reconciliation)."""
    now = now_ns()
    writer.submit(
        SQL_FILL,
        (
            fill.fill_id,
            fill.client_id,
            fill.symbol,
            fill.units,
            fill.price,
            fill.commission,
            fill.ts,
            realized,
            now,
        ),
    )
    writer.submit(
        SQL_POSITION,
        (
            position.symbol,
            position.units,
            position.avg_price,
            position.realized_pnl,
            position.commission,
            now,
        ),
    )


@dataclass(frozen=True, slots=True)
class ActorStats:
    """What ``ctl status`` shows for one symbol."""

    symbol: str
    state: str
    last_bar_time: str | None
    bars_seen: int
    position_units: int
    pending_units: int
    realized_pnl: float
    unrealized_pnl: float
    orders_sent: int
    orders_rejected: int
    fills: int
    denials: int
    restarts: int
    last_error: str | None
    bar_to_order_ms: dict[str, float]
    training: dict[str, Any] | None


class RiskHooks(OrderGate, Protocol):
    """What an actor tells the risk layer besides asking it about orders."""

    def on_fill(self, realized: float, commission: float, ts: int) -> None:
        """A fill was recorded."""
        ...

    def observe_equity(self, equity: float, ts: int) -> None:
        """The account equity after a bar."""
        ...


@dataclass(slots=True)
class ActorDeps:
    """What an actor needs from the daemon (shared, not owned)."""

    writer: StorageWriter
    broker: Broker
    feed: Feed
    db_path: Any
    timeframe: str
    store_candles: bool
    equity_every_bars: int
    risk: RiskHooks | None = None
    train_ctx: Any = None  # daemon.training.TrainContext, for Trainable strategies


class SymbolActor:
    """Trades one symbol; see the module note."""

    def __init__(
        self,
        symbol: str,
        strategy: Strategy,
        deps: ActorDeps,
        log: Any,
        sizing: SizingConfig | None = None,
    ) -> None:
        self.symbol = symbol
        self.instrument = get_instrument(symbol)
        self.strategy = strategy
        self.deps = deps
        self.log = log.bind(component="actor", symbol=symbol)
        self.state = "starting"
        self.restarts = 0
        self.last_error: str | None = None
        self.orders_sent = 0
        self.orders_rejected = 0
        self.fills = 0
        self.accepting_orders = True
        self.sizing = sizing
        self._equity = 0.0
        self.core = self._new_core()
        self.position = Position(symbol)
        self.last_bar: Bar | None = None
        self._known_orders: dict[str, str] = {}
        self._latency_ns: deque[int] = deque(maxlen=LATENCY_SAMPLES)
        self.done = anyio.Event()
        self.scope = anyio.CancelScope()  # cancelled to stop this actor for good
        self.paused = False  # survives restarts of the actor (the core is rebuilt)
        self.trainable: Trainable | None = strategy if isinstance(strategy, Trainable) else None
        self.training = False
        self._retrain_reason: str | None = None
        self._tg: TaskGroup | None = None

    def _new_core(self) -> SymbolCore:
        core = SymbolCore(self.instrument, self.strategy, self.deps.risk)
        if self.sizing is not None:
            core.sizer = self._size
        return core

    def _size(self, history: BarHistory, target: int) -> int:
        """Risk-based size with the strategy's direction (its probability for Kelly)."""
        assert self.sizing is not None
        units = self.sizing.units(
            self.instrument,
            equity=self._equity,
            price=history.closes(1)[0],
            atr=average_true_range(history),
            win_prob=getattr(self.strategy, "last_probability", None),
        )
        return units if target > 0 else -units

    # -- life cycle -------------------------------------------------------------------

    def _restore(self) -> int | None:
        """Rebuild position, known orders and history from the store; return last bar ts."""
        conn = open_sync(self.deps.db_path)
        try:
            self.core = self._new_core()
            self.core.paused = self.paused
            self.position = Position(self.symbol)
            for row in conn.execute(
                "SELECT fill_id, client_id, symbol, units, price, commission, ts FROM fills "
                "WHERE symbol = ? ORDER BY ts, rowid",
                (self.symbol,),
            ):
                self.position.apply(
                    Fill(row[0], row[1], row[2], int(row[3]), row[4], row[5], int(row[6])),
                    self.instrument,
                )
            self.core.position_units = self.position.units
            self._known_orders = {}
            for cid, units, status in conn.execute(
                "SELECT client_id, units, status FROM orders WHERE symbol = ?", (self.symbol,)
            ):
                self._known_orders[cid] = status
                if status in (OrderStatus.PENDING.value, OrderStatus.SUBMITTED.value):
                    self.core.pending_units += int(units)
            row = conn.execute(
                "SELECT last_bar_ts, bars_seen FROM actor_progress WHERE symbol = ?",
                (self.symbol,),
            ).fetchone()
            if row is None:
                return None
            last_ts, self.core.bars_seen = int(row[0]), int(row[1])
            warm = conn.execute(
                "SELECT ts, open, high, low, close, volume FROM candles WHERE symbol = ? "
                "AND timeframe = ? AND ts <= ? ORDER BY ts DESC LIMIT ?",
                (self.symbol, self.deps.timeframe, last_ts, self.core.history.capacity),
            ).fetchall()
            for ts, o, h, lo, c, v in reversed(warm):
                bar = Bar(self.symbol, int(ts), o, h, lo, c, v)
                self.core.warm(bar)
                self.last_bar = bar
            return last_ts
        finally:
            conn.close()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """One life: restore, report ready, trade until the feed ends or cancellation."""
        # SQLite reads off the loop: a restart must not stall the symbols still trading.
        after_ts = await anyio.to_thread.run_sync(self._restore)
        if self.trainable is not None:
            await anyio.to_thread.run_sync(self.trainable.restore, self.deps.train_ctx, self.symbol)
        send, recv = anyio.create_memory_object_stream[list[Bar]](INBOX_MESSAGES)
        self.state = "running" if not self.core.paused else "paused"
        self.log.info(
            "actor_started",
            resume_after=ns_to_iso(after_ts) if after_ts else None,
            position_units=self.position.units,
            restarts=self.restarts,
        )
        task_status.started()
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self._pump, send, after_ts)
            await self._consume(recv)
        self._tg = None
        self._write_progress()
        self.state = "finished"
        self.log.info("feed_exhausted", bars_seen=self.core.bars_seen)
        self.done.set()

    async def _pump(self, send: MemoryObjectSendStream[list[Bar]], after_ts: int | None) -> None:
        feed = self.deps.feed
        async with send:
            if isinstance(feed, ChunkedFeed):
                async for chunk in feed.chunks(self.symbol, after_ts):
                    await send.send(chunk)
            else:
                async for bar in feed.bars(self.symbol, after_ts):
                    await send.send([bar])

    async def _consume(self, recv: MemoryObjectReceiveStream[list[Bar]]) -> None:
        async with recv:
            async for chunk in recv:
                for bar in chunk:
                    await self.on_bar(bar)
                # Progress once per message: a crash replays at most one chunk, and every
                # decision in it is idempotent (deterministic client ids).
                self._write_progress()
                await self.deps.writer.wait_for_room()

    # -- per bar ----------------------------------------------------------------------

    async def on_bar(self, bar: Bar) -> None:
        """Handle one bar: fills, decision, write-ahead order, send."""
        t0 = time.perf_counter_ns()
        deps = self.deps
        fills = await deps.broker.on_bar(bar)
        for fill in fills:
            self._record_fill(fill)
        self.position.last_price = bar.close
        self.last_bar = bar
        if deps.risk is not None or self.sizing is not None:
            self._equity = (await deps.broker.account()).equity
            if deps.risk is not None:
                deps.risk.observe_equity(self._equity, bar.ts)
        denials = self.core.denials
        if not self.core.paused:  # an expensive model predicts in a worker thread first
            await predict_ahead(self.strategy, self.core.history, bar)
        order = self.core.on_bar(bar)
        if self.core.denials != denials:
            self.log.warning(
                "order_denied", reason=self.core.last_denial, bar_time=ns_to_iso(bar.ts)
            )
            deps.writer.submit(
                SQL_EVENT, (now_ns(), "order_denied", self.symbol, self.core.last_denial or "")
            )
        if order is not None and self.accepting_orders:
            await self._send_order(order)
            self._latency_ns.append(time.perf_counter_ns() - t0)
        elif order is not None:
            self.core.on_reject(order)
        if self.trainable is not None:
            self._maybe_train()
        if deps.store_candles:
            deps.writer.submit(
                SQL_CANDLE,
                (
                    self.symbol,
                    deps.timeframe,
                    bar.ts,
                    bar.open,
                    bar.high,
                    bar.low,
                    bar.close,
                    bar.volume,
                ),
            )
        if fills or self.core.bars_seen % deps.equity_every_bars == 0:
            await self._snapshot_equity(bar.ts)

    async def _send_order(self, order: Order) -> None:
        seq = 0
        while order.client_id in self._known_orders:
            if self._known_orders[order.client_id] != OrderStatus.CANCELLED.value:
                # The same decision replayed after a crash: it was written and reached the
                # broker; reconciliation owns it. Never send a client id twice.
                self.core.on_reject(order)
                return
            # Written but never delivered (reconciliation cancelled it): decide again
            # under the next deterministic id.
            seq += 1
            order = replace(order, client_id=Order.make_client_id(order.symbol, order.bar_ts, seq))
        now = now_ns()
        await self.deps.writer.execute(
            SQL_ORDER,
            (
                order.client_id,
                order.symbol,
                order.units,
                order.bar_ts,
                order.created_ns,
                OrderStatus.PENDING.value,
                order.reason,
                now,
            ),
        )
        self._known_orders[order.client_id] = OrderStatus.PENDING.value
        try:
            fills = await self.deps.broker.submit(order)
        except OrderOutcomeUnknownError as exc:
            # Maybe placed, maybe not: it stays pending (counted as in flight) until the
            # broker's lookups or the next reconciliation resolve it. Never resent.
            self.log.error("order_outcome_unknown", client_id=order.client_id, error=str(exc))
            return
        except BrokerError as exc:
            self.orders_rejected += 1
            self.core.on_reject(order)
            self.deps.writer.submit(
                SQL_ORDER_STATUS, (OrderStatus.REJECTED.value, str(exc), now_ns(), order.client_id)
            )
            self.log.warning("order_rejected", client_id=order.client_id, error=str(exc))
            return
        self.orders_sent += 1
        self.deps.writer.submit(
            SQL_ORDER_STATUS, (OrderStatus.SUBMITTED.value, None, now_ns(), order.client_id)
        )
        self.log.info(
            "order_sent",
            client_id=order.client_id,
            units=order.units,
            bar_time=ns_to_iso(order.bar_ts),
        )
        for fill in fills:
            self._record_fill(fill)

    def _record_fill(self, fill: Fill) -> None:
        realized = self.position.apply(fill, self.instrument)
        self.core.on_fill(fill)
        self.fills += 1
        if self.deps.risk is not None:
            self.deps.risk.on_fill(realized, fill.commission, fill.ts)
        p = self.position
        queue_fill(self.deps.writer, fill, realized, p)
        self.deps.writer.submit(
            SQL_ORDER_STATUS, (OrderStatus.FILLED.value, None, now_ns(), fill.client_id)
        )
        self.log.info(
            "order_filled",
            client_id=fill.client_id,
            units=fill.units,
            price=fill.price,
            position_units=p.units,
            realized_pnl=round(realized, 2),
        )

    async def _snapshot_equity(self, ts: int) -> None:
        acct = await self.deps.broker.account()
        self.deps.writer.submit(
            SQL_EQUITY, (ts, acct.balance, acct.equity, acct.unrealized_pnl, now_ns())
        )

    def _write_progress(self) -> None:
        if self.last_bar is not None:
            self.deps.writer.submit(
                SQL_PROGRESS, (self.symbol, self.last_bar.ts, self.core.bars_seen)
            )

    # -- operator ---------------------------------------------------------------------

    def set_paused(self, paused: bool) -> None:
        """Pause (no new decisions) or resume; fills and bars keep being processed."""
        self.paused = self.core.paused = paused
        if self.state in ("running", "paused"):
            self.state = "paused" if paused else "running"
        self.log.warning(
            "actor_paused" if paused else "actor_resumed", position_units=self.position.units
        )

    async def flatten(self) -> dict[str, Any]:
        """Pause and send the order that closes the position (written ahead, as always)."""
        self.set_paused(True)
        held = self.core.position_units + self.core.pending_units
        result: dict[str, Any] = {"symbol": self.symbol, "units": -held, "client_id": None}
        if held == 0 or self.last_bar is None:
            return result
        seq = 1  # the strategy's own order on a bar is seq 0
        while Order.make_client_id(self.symbol, self.last_bar.ts, seq) in self._known_orders:
            seq += 1
        order = Order(
            Order.make_client_id(self.symbol, self.last_bar.ts, seq),
            self.symbol,
            -held,
            self.last_bar.ts,
            time.time_ns(),
            "operator flatten",
        )
        self.core.pending_units += order.units
        await self._send_order(order)
        result["client_id"] = order.client_id
        return result

    # -- training -----------------------------------------------------------------------

    def request_retrain(self, reason: str = "operator") -> bool:
        """Queue a training cycle now (``ctl retrain``); False if this is not an ML symbol.

        Raises:
            ControlRefusedError: the actor is not running (its feed ended, or it failed).
        """
        if self.trainable is None:
            return False
        if self._tg is None:
            raise ControlRefusedError(
                f"{self.symbol} is {self.state}: there is no running actor to train in; "
                "restart the daemon (or reload with new data) to retrain it"
            )
        self._retrain_reason = reason
        self._maybe_train()
        return True

    def _maybe_train(self) -> None:
        assert self.trainable is not None
        if self.training or self._tg is None:
            return
        reason = self._retrain_reason
        if reason is None and self.trainable.wants_training(self.core.bars_seen):
            reason = "schedule"
        if reason is None:
            return
        self._retrain_reason = None
        self.training = True
        self._tg.start_soon(self._train, reason)

    async def _train(self, reason: str) -> None:
        assert self.trainable is not None
        try:
            await self.trainable.train_cycle(self.deps.train_ctx, self.core.history, reason)
        finally:
            self.training = False

    # -- observation ------------------------------------------------------------------

    def stats(self) -> ActorStats:
        """Snapshot for ``ctl status``."""
        unrealized = (
            self.position.unrealized(self.last_bar.close, self.instrument) if self.last_bar else 0.0
        )
        lat: dict[str, float] = {}
        if self._latency_ns:
            arr = np.fromiter(self._latency_ns, dtype=np.float64) / 1e6
            p50, p99 = np.percentile(arr, [50, 99])
            lat = {
                "p50": round(float(p50), 4),
                "p99": round(float(p99), 4),
                "max": round(float(arr.max()), 4),
                "samples": float(len(arr)),
            }
        return ActorStats(
            symbol=self.symbol,
            state=self.state,
            last_bar_time=ns_to_iso(self.last_bar.ts) if self.last_bar else None,
            bars_seen=self.core.bars_seen,
            position_units=self.position.units,
            pending_units=self.core.pending_units,
            realized_pnl=round(self.position.realized_pnl - self.position.commission, 2),
            unrealized_pnl=round(unrealized, 2),
            orders_sent=self.orders_sent,
            orders_rejected=self.orders_rejected,
            fills=self.fills,
            denials=self.core.denials,
            restarts=self.restarts,
            last_error=self.last_error,
            bar_to_order_ms=lat,
            training=self.trainable.training_stats() if self.trainable is not None else None,
        )
