"""The synchronous heart of a symbol actor, shared by the live daemon and the backtest.

``SymbolCore`` turns a bar into at most one order: it appends the bar to the history,
asks the strategy for a target position, subtracts what is held and what is already on
its way, and passes the difference through the order gate (risk). It does no I/O and
knows nothing about time other than bar timestamps, so a backtest can drive it directly
with no event loop, and live trading and backtests take identical decisions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from forexd.domain import PROTECTIVE_EXITS, Bar, Fill, Instrument, Order, Protection
from forexd.domain.bars import BarHistory, average_true_range
from forexd.strategies.base import ProtectedStrategy, Strategy

__all__ = ["GateDecision", "OrderGate", "Sizer", "SymbolCore", "average_true_range"]

HISTORY_SLACK_BARS = 8  # extra bars kept beyond the strategy's warm-up, for features


@dataclass(frozen=True, slots=True)
class GateDecision:
    """What the order gate allowed: ``units`` (possibly reduced) or a denial reason."""

    units: int
    reason: str | None = None


class OrderGate(Protocol):
    """Risk check between a strategy's wish and the broker."""

    def check(
        self,
        symbol: str,
        units: int,
        position_units: int,
        price: float,
        ts: int,
        stop_distance: float | None = None,
    ) -> GateDecision:
        """Approve, reduce or deny an order of ``units`` (signed).

        ``stop_distance`` is the order's stop-loss distance (``None``: no stop), for
        ``[risk] require_stop``.
        """
        ...


class Sizer(Protocol):
    """Turns the strategy's target into a size (fixed-fractional or Kelly)."""

    def __call__(self, history: BarHistory, target: int) -> int:
        """The signed units to hold for a target of this sign."""
        ...


def _protection_of(strategy: Strategy) -> Callable[[BarHistory], Protection | None] | None:
    """The strategy's ``protection`` method, looked up once (a runtime protocol check
    costs ~15 µs, too much per order on a backtest's hot path)."""
    return strategy.protection if isinstance(strategy, ProtectedStrategy) else None


class SymbolCore:
    """Per-symbol decision state: history, position, in-flight units."""

    __slots__ = (
        "bars_seen",
        "denials",
        "gate",
        "history",
        "instrument",
        "last_denial",
        "paused",
        "pending_units",
        "position_units",
        "protect",
        "protective_exits",
        "sizer",
        "stopped_side",
        "strategy",
    )

    def __init__(
        self, instrument: Instrument, strategy: Strategy, gate: OrderGate | None = None
    ) -> None:
        self.instrument = instrument
        self.strategy = strategy
        self.gate = gate
        self.history = BarHistory(instrument, max(strategy.warmup_bars, 1) + HISTORY_SLACK_BARS)
        self.position_units = 0
        self.pending_units = 0
        self.bars_seen = 0
        self.paused = False
        self.denials = 0
        self.last_denial: str | None = None
        self.sizer: Sizer | None = None
        self.protect = _protection_of(strategy)
        self.protective_exits = 0
        # Side (+1/-1) a protective exit closed; that side is not re-entered until the
        # strategy wants flat or the other side, so a stop is not undone on the next bar.
        self.stopped_side = 0

    def replace_strategy(self, strategy: Strategy) -> None:
        """Swap the strategy (hot reload), keeping the bars already seen."""
        self.strategy = strategy
        self.protect = _protection_of(strategy)
        capacity = max(strategy.warmup_bars, 1) + HISTORY_SLACK_BARS
        old = self.history
        if capacity == old.capacity or old.last is None:
            self.history = BarHistory(self.instrument, capacity) if old.last is None else old
            return
        new = BarHistory(self.instrument, capacity)
        symbol = old.last.symbol
        for t, o, h, lo, c in zip(
            old.times().tolist(),
            old.opens().tolist(),
            old.highs().tolist(),
            old.lows().tolist(),
            old.closes().tolist(),
            strict=True,
        ):
            new.append(Bar(symbol, t, o, h, lo, c))
        self.history = new

    def warm(self, bar: Bar) -> None:
        """Add a historical bar without deciding (restart warm-up)."""
        self.history.append(bar)

    def observe(self, bar: Bar) -> None:
        """Count a bar that must not be traded (not the present): history only."""
        self.history.append(bar)
        self.bars_seen += 1

    def on_bar(self, bar: Bar) -> Order | None:
        """Consume the newest bar and return the order to send, if any."""
        self.history.append(bar)
        self.bars_seen += 1
        if self.paused:
            return None
        held = self.position_units + self.pending_units
        target = self.strategy.decide(self.history, held)
        if target is not None and target != 0 and self.sizer is not None:
            target = self.sizer(self.history, target)
        if target is None:
            return None
        if self.stopped_side:
            if target * self.stopped_side > 0:
                return None
            self.stopped_side = 0
        if target == held:
            return None
        units = target - held
        protection = self._protection(held, target)
        if self.gate is not None:
            stop = None if protection is None else protection.stop_distance
            decision = self.gate.check(
                bar.symbol, units, held, bar.close, bar.ts, stop_distance=stop
            )
            if decision.reason is not None or decision.units == 0:
                self.denials += 1
                self.last_denial = decision.reason
                return None
            units = decision.units
        self.pending_units += units
        return Order(
            client_id=Order.make_client_id(bar.symbol, bar.ts, 0),
            symbol=bar.symbol,
            units=units,
            bar_ts=bar.ts,
            created_ns=time.time_ns(),
            reason=f"{self.strategy.name}: target {target}",
            protection=protection,
        )

    def _protection(self, held: int, target: int) -> Protection | None:
        """The strategy's protection for an order that opens, grows or flips a position."""
        protect = self.protect
        if protect is None or target == 0:
            return None
        if held != 0 and (held > 0) == (target > 0) and abs(target) <= abs(held):
            return None  # reducing: the position keeps the protection it has
        return protect(self.history)

    def on_fill(self, fill: Fill) -> None:
        """Move filled units from in flight to held (a protective exit was never in flight)."""
        self.position_units += fill.units
        if fill.reason in PROTECTIVE_EXITS:
            self.protective_exits += 1
            if self.position_units == 0:
                self.stopped_side = -1 if fill.units > 0 else 1
            return
        self.pending_units -= fill.units

    def on_reject(self, order: Order) -> None:
        """An order will never fill: stop counting it as in flight."""
        self.pending_units -= order.units
