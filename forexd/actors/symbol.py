"""SymbolActor: the async shell around :class:`~forexd.actors.core.SymbolCore`.

One actor per symbol. It owns its state and an inbox of typed messages
(:mod:`forexd.actors.messages`): bars from its feed pump, and commands — pause, resume,
flatten, retrain, replace the strategy (reload), a champion from its trainer. Nothing
else mutates it; callers that need an answer wait on the message's reply. Per bar it: lets
the broker fill what was pending, records fills, asks the core for an order (only for a
bar that is the present, see :mod:`forexd.actors.present`), writes the order to SQLite
*before* sending it, then sends it. One life of an actor is :meth:`SymbolActor.run`; the
supervisor restarts it after a crash, and every restart rebuilds state from the store.
Commands sent while a life is restarting wait in a queue that outlives the life.

Why it is over 400 lines: the life cycle, the inbox loop and the
command handlers are one state machine; sending orders (``orders.py``), training
(``training.py``), messages and dependencies live in their own modules.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from typing import Any

import anyio
import numpy as np
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from forexd.actors.core import SymbolCore, average_true_range
from forexd.actors.deps import ActorDeps, ActorStats
from forexd.actors.inference import predict_ahead
from forexd.actors.messages import (
    AdoptFill,
    Bars,
    ChampionReady,
    Command,
    FeedEnded,
    Flatten,
    Message,
    ReplaceStrategy,
    Retrain,
    SetPaused,
)
from forexd.actors.orders import OrderFlow
from forexd.actors.present import STALE
from forexd.actors.training import TrainingSlot
from forexd.domain import Bar, Fill, Order, OrderStatus, Position, get_instrument, ns_to_iso
from forexd.domain.bars import BarHistory
from forexd.errors import ControlRefusedError, StorageError
from forexd.feeds.base import ChunkedFeed
from forexd.risk import SizingConfig
from forexd.storage.orders import TradeRecord, load_actor_state
from forexd.strategies.base import ProtectedStrategy, Strategy

INBOX_MESSAGES = 64  # a message is one bar, or a chunk of bars at full replay speed
COMMAND_QUEUE = 64  # commands waiting for the actor (they survive a restart)
LATENCY_SAMPLES = 10_000


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
        self.record = TradeRecord(deps.writer)
        self.log = log.bind(component="actor", symbol=symbol)
        self.state = "starting"
        self.restarts = 0
        self.last_error: str | None = None
        self.accepting_orders = True  # cleared by the supervisor on shutdown/stop
        self.sizing = sizing
        self._equity = 0.0
        self.core = self._new_core()
        self.orders = OrderFlow(self)
        self.position = Position(symbol)
        self.last_bar: Bar | None = None
        self._done_bar: Bar | None = None  # the newest bar whose effects are all queued
        self._latency_ns: deque[int] = deque(maxlen=LATENCY_SAMPLES)
        self.done = anyio.Event()
        self.scope = anyio.CancelScope()  # cancelled to stop this actor for good
        self.paused = False  # survives restarts of the actor (the core is rebuilt)
        self.training = TrainingSlot(self)
        self._started_ns: int | None = None
        self.not_traded: dict[str, int] = {}
        self._warming = False
        cmd_send, cmd_recv = anyio.create_memory_object_stream[Command](COMMAND_QUEUE)
        self._commands: MemoryObjectSendStream[Command] = cmd_send
        self._command_queue: MemoryObjectReceiveStream[Command] = cmd_recv
        self._tg: TaskGroup | None = None

    def _new_core(self) -> SymbolCore:
        core = SymbolCore(self.instrument, self.strategy, self.deps.risk)
        if self.sizing is not None:
            core.sizer = self._size
        return core

    def _size(self, history: BarHistory, target: int) -> int:
        """Risk-based size with the strategy's direction (its probability for Kelly)."""
        assert self.sizing is not None
        strategy = self.strategy
        protection = (
            strategy.protection(history) if isinstance(strategy, ProtectedStrategy) else None
        )
        units = self.sizing.units(
            self.instrument,
            equity=self._equity,
            price=history.closes(1)[0],
            atr=average_true_range(history),
            win_prob=getattr(strategy, "last_probability", None),
            stop_distance=None if protection is None else protection.stop_distance,
        )
        return units if target > 0 else -units

    # -- the caller's side ------------------------------------------------------------

    async def ask(
        self, message: SetPaused | Flatten | Retrain | ReplaceStrategy | AdoptFill
    ) -> Any:
        """Send a command and wait for the actor's answer.

        Raises:
            ControlRefusedError: the actor is parked (``failed``/``stopped``), its queue is
                full, or it did not answer in time.
        """
        if self.state in ("failed", "stopped"):
            raise ControlRefusedError(
                f"{self.symbol} is {self.state}: no actor is running to handle "
                f"{type(message).__name__}; see `forexd ctl status` for its last error"
            )
        self.tell(message)
        return await message.reply.wait(self.symbol, type(message).__name__)

    def tell(self, message: Command) -> None:
        """Queue a command without waiting (handled by the current or the next life).

        Raises:
            ControlRefusedError: the queue is full.
        """
        try:
            self._commands.send_nowait(message)
        except anyio.WouldBlock:
            raise ControlRefusedError(
                f"{self.symbol} has {COMMAND_QUEUE} commands waiting; try again shortly"
            ) from None

    async def post(self, message: Command) -> None:
        """Queue a command, waiting for room (a trainer's champion is never dropped)."""
        await self._commands.send(message)

    async def set_paused(self, paused: bool) -> None:
        """Pause (no new decisions) or resume; fills and bars keep being processed."""
        await self.ask(SetPaused(paused))

    async def flatten(self) -> dict[str, Any]:
        """Pause and send the order that closes the position (written ahead, as always)."""
        result: dict[str, Any] = await self.ask(Flatten())
        return result

    async def request_retrain(self, reason: str = "operator") -> bool:
        """Start a training cycle now; True if one was already running.

        Raises:
            ControlRefusedError: not an ML symbol, or its feed has ended.
        """
        already: bool = await self.ask(Retrain(reason))
        return already

    async def replace_strategy(self, strategy: Strategy, params: dict[str, Any]) -> None:
        """Trade with ``strategy`` from the next bar.

        An actor between lives (restarting, parked) gets it from its queue when its next life
        starts; the caller does not wait for that (a reload must not hang on a backoff).
        """
        message = ReplaceStrategy(strategy, params)
        if self.state not in ("running", "paused", "finished"):
            self.tell(message)
            return
        await self.ask(message)

    # -- life cycle -------------------------------------------------------------------

    def _restore(self) -> int | None:
        """Rebuild position, known orders and history from the store; return last bar ts."""
        self.core = self._new_core()
        self.core.paused = self.paused
        state = load_actor_state(
            self.deps.db_path, self.symbol, self.deps.timeframe, self.core.history.capacity
        )
        self.position = state.position
        self.core.position_units = state.position.units
        self.core.pending_units = state.pending_units
        self.core.bars_seen = state.bars_seen
        self.orders.known = state.orders
        # `ctl status` counts every order the broker took across restarts, like bars_seen:
        # not the rejected ones, nor those still unacknowledged.
        self.orders.sent = sum(
            s not in (OrderStatus.PENDING.value, OrderStatus.REJECTED.value)
            for s in state.orders.values()
        )
        for bar in state.warm_bars:
            self.core.warm(bar)
            self.last_bar = self._done_bar = bar
        return state.last_bar_ts

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """One life: restore, report ready, serve the inbox until cancelled.

        The life goes on after a replay's feed ends (state ``finished``): commands are
        still answered.
        """
        # SQLite reads off the loop: a restart must not stall the symbols still trading.
        after_ts = await anyio.to_thread.run_sync(self._restore)
        await self.training.restore()
        self._started_ns = self.deps.present.now_ns()
        self._warming = False
        inbox_send, inbox = anyio.create_memory_object_stream[Message](INBOX_MESSAGES)
        self.state = "running" if not self.core.paused else "paused"
        self.log.info(
            "actor_started",
            resume_after=ns_to_iso(after_ts) if after_ts else None,
            position_units=self.position.units,
            restarts=self.restarts,
        )
        task_status.started()
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._pump, inbox_send.clone(), after_ts)
                tg.start_soon(self._forward_commands, inbox_send)
                await self._consume(inbox)
        finally:
            self._tg = None
            # Every effect of the last finished bar was queued before this; on a hard
            # cancel the writer may already be gone, and then the restart replays the chunk.
            with contextlib.suppress(StorageError):
                self._write_progress()

    async def _pump(self, send: MemoryObjectSendStream[Message], after_ts: int | None) -> None:
        feed = self.deps.feed
        async with send:
            if isinstance(feed, ChunkedFeed):
                async for chunk in feed.chunks(self.symbol, after_ts):
                    await send.send(Bars(chunk))
            else:
                async for bar in feed.bars(self.symbol, after_ts):
                    await send.send(Bars([bar]))
            await send.send(FeedEnded())

    async def _forward_commands(self, send: MemoryObjectSendStream[Message]) -> None:
        """Commands join the inbox in order with the bars (one queue, one consumer)."""
        async with send:
            while True:
                command = await self._command_queue.receive()
                await send.send(command)

    async def _consume(self, inbox: MemoryObjectReceiveStream[Message]) -> None:
        async with inbox:
            async for message in inbox:
                if isinstance(message, Bars):
                    for bar in message.bars:
                        await self.on_bar(bar)
                    # Progress once per message: a crash replays at most one chunk, and
                    # every decision in it is idempotent (deterministic client ids).
                    self._write_progress()
                    await self.deps.writer.wait_for_room()
                elif isinstance(message, FeedEnded):
                    # A cycle started near the end still finishes and hands over its
                    # champion before the symbol reports finished (as a restart would see).
                    await self.training.wait_idle()
                    self._write_progress()
                    self.state = "finished"
                    self.log.info("feed_exhausted", bars_seen=self.core.bars_seen)
                    self.done.set()
                else:
                    await self._handle(message)

    async def _handle(self, message: Command) -> None:
        """Apply one command; its reply carries the result or the error."""
        if isinstance(message, ChampionReady):
            self.training.install(message.champion)
            return
        try:
            result: Any = None
            if isinstance(message, SetPaused):
                self._set_paused(message.paused)
            elif isinstance(message, Flatten):
                result = await self._flatten()
            elif isinstance(message, Retrain):
                result = self._retrain(message.reason)
            elif isinstance(message, AdoptFill):
                self._adopt_fill(message.fill)
            else:
                await self._replace_strategy(message.strategy, message.params)
        except Exception as exc:  # the caller gets it; the actor keeps serving
            message.reply.fail(exc)
            return
        message.reply.set(result)

    # -- per bar ----------------------------------------------------------------------

    async def on_bar(self, bar: Bar) -> None:
        """Handle one bar: fills, decision (only in the present), write-ahead order, send."""
        t0 = time.perf_counter_ns()
        deps = self.deps
        fills = await deps.broker.on_bar(bar)
        for fill in fills:
            self.orders.record_fill(fill)
        # -- oanda (issue 11): orders the broker proved never executed release their
        # in-flight units and their row; only then may a new order (new id) follow.
        take_released = getattr(deps.broker, "take_released", None)
        for order, proof in take_released(self.symbol) if take_released else ():
            self._release_order(order, proof)
        # -- end oanda
        self.position.last_price = bar.close
        self.last_bar = bar
        if deps.risk is not None or self.sizing is not None:
            self._equity = (await deps.broker.account()).equity
            if deps.risk is not None:
                deps.risk.observe_equity(self._equity, bar.ts)
        why_not = deps.present.not_present(bar.ts, self._started_ns)
        if why_not is not None:
            self._not_traded(bar, why_not)
            self.core.observe(bar)
        else:
            if self._warming:
                self._warming = False
                self.log.info("trading_from_bar", bar_time=ns_to_iso(bar.ts), **self.not_traded)
            await self._decide(bar, t0)
        if self.training.active:
            self.training.maybe_start(None)
        if deps.store_candles:
            self.record.candle(deps.timeframe, bar)
        if fills or self.core.bars_seen % deps.equity_every_bars == 0:
            acct = await deps.broker.account()
            self.record.equity(bar.ts, acct.balance, acct.equity, acct.unrealized_pnl)
        self._done_bar = bar

    async def _decide(self, bar: Bar, t0: int) -> None:
        denials = self.core.denials
        if not self.core.paused:  # an expensive model predicts in a worker thread first
            await predict_ahead(self.strategy, self.core.history, bar)
        order = self.core.on_bar(bar)
        self.log.debug(
            "bar_decided",
            bar_ts=bar.ts,
            close=bar.close,
            position=self.core.position_units,
            order_units=0 if order is None else order.units,
        )
        if self.core.denials != denials:
            self.log.warning(
                "order_denied", reason=self.core.last_denial, bar_time=ns_to_iso(bar.ts)
            )
            self.record.event("order_denied", self.symbol, self.core.last_denial or "")
        if order is not None and self.accepting_orders:
            await self.orders.send(order)
            self._latency_ns.append(time.perf_counter_ns() - t0)
        elif order is not None:
            self.core.on_reject(order)

    def _not_traded(self, bar: Bar, why: str) -> None:
        count = self.not_traded.get(why, 0) + 1
        self.not_traded[why] = count
        if not self._warming and self.core.bars_seen > 0 and why == STALE:
            # A late bar after trading had begun: the feed lags; an operator should know.
            self.log.warning("bar_not_traded", reason=why, bar_time=ns_to_iso(bar.ts))
        elif count == 1:
            # The first of its kind; the rest of the warm-up is summed up in
            # ``trading_from_bar`` when the first present bar arrives.
            self.log.info("bar_not_traded", reason=why, bar_time=ns_to_iso(bar.ts))
        self._warming = True

    # -- oanda (issue 11): resolution and adoption ----------------------------------------

    def _release_order(self, order: Order, proof: str) -> None:
        """An order proven never executed: stop counting it in flight, cancel its row."""
        self.core.on_reject(order)
        self.orders.known[order.client_id] = OrderStatus.CANCELLED.value
        self.record.order_status(order.client_id, OrderStatus.CANCELLED, proof)
        self.log.warning("order_not_executed", client_id=order.client_id, proof=proof)

    async def adopt_fill(self, fill: Fill) -> None:
        """Take a position difference found at the broker into the book (``ctl adopt``).

        Like every change to the actor's state, it is applied by the actor itself, between
        two bars (an :class:`AdoptFill` message).
        """
        await self.ask(AdoptFill(fill))

    def _adopt_fill(self, fill: Fill) -> None:
        realized = self.position.apply(fill, self.instrument)
        self.core.position_units = self.position.units
        self.record.fill(fill, realized, self.position)

    # -- end oanda

    def _write_progress(self) -> None:
        if self._done_bar is not None:
            self.record.progress(self.symbol, self._done_bar.ts, self.core.bars_seen)

    # -- commands (run inside the actor) ------------------------------------------------

    def _set_paused(self, paused: bool) -> None:
        self.paused = self.core.paused = paused
        if self.state in ("running", "paused"):
            self.state = "paused" if paused else "running"
        self.log.warning(
            "actor_paused" if paused else "actor_resumed", position_units=self.position.units
        )

    async def _flatten(self) -> dict[str, Any]:
        self._set_paused(True)
        return await self.orders.flatten()

    def _retrain(self, reason: str) -> bool:
        if not self.training.active:
            raise ControlRefusedError(
                f"{self.symbol} trades {self.strategy.name}, which has no model to retrain"
            )
        if self.state == "finished":
            raise ControlRefusedError(
                f"{self.symbol} is finished: its feed ended, there are no new bars to train "
                "on; restart the daemon (or reload with new data) to retrain it"
            )
        already = self.training.running
        self.training.maybe_start(reason)
        return already

    async def _replace_strategy(self, strategy: Strategy, params: dict[str, Any]) -> None:
        self.strategy = strategy
        self.core.replace_strategy(strategy)
        await self.training.strategy_replaced(strategy)
        self.log.info("strategy_reloaded", strategy=strategy.name, params=params)

    def start_task(self, fn: Any, *args: Any) -> bool:
        """Run ``fn(*args)`` in this life's task group; False when no life is running."""
        if self._tg is None:
            return False
        self._tg.start_soon(fn, *args)
        return True

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
            orders_sent=self.orders.sent,
            orders_rejected=self.orders.rejected,
            fills=self.orders.fills,
            denials=self.core.denials,
            restarts=self.restarts,
            last_error=self.last_error,
            bar_to_order_ms=lat,
            training=self.training.stats(),
            bars_not_traded=dict(self.not_traded),
            protection=self._protection_view(),
        )

    def _protection_view(self) -> dict[str, Any] | None:
        """Stop and target held at the broker for the open position (``ctl status``)."""
        view = getattr(self.deps.broker, "protection_of", None)
        return view(self.symbol) if view is not None and self.position.units else None
