"""The synchronous heart of a symbol actor, shared by the live daemon and the backtest.

``SymbolCore`` turns a bar into at most one order: it appends the bar to the history,
asks the strategy for a target position, subtracts what is held and what is already on
its way, and passes the difference through the order gate (risk). It does no I/O and
knows nothing about time other than bar timestamps, so a backtest can drive it directly
with no event loop, and live trading and backtests take identical decisions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from forexd.domain import Bar, Fill, Instrument, Order
from forexd.domain.bars import BarHistory
from forexd.strategies.base import Strategy

HISTORY_SLACK_BARS = 8  # extra bars kept beyond the strategy's warm-up, for features


@dataclass(frozen=True, slots=True)
class GateDecision:
    """What the order gate allowed: ``units`` (possibly reduced) or a denial reason."""

    units: int
    reason: str | None = None


class OrderGate(Protocol):
    """Risk check between a strategy's wish and the broker."""

    def check(
        self, symbol: str, units: int, position_units: int, price: float, ts: int
    ) -> GateDecision:
        """Approve, reduce or deny an order of ``units`` (signed)."""
        ...


class Sizer(Protocol):
    """Turns the strategy's target into a size (fixed-fractional or Kelly)."""

    def __call__(self, history: BarHistory, target: int) -> int:
        """The signed units to hold for a target of this sign."""
        ...


ATR_BARS = 14


def average_true_range(history: BarHistory, n: int = ATR_BARS) -> float:
    """Simple mean true range of the last ``n`` bars (0.0 with fewer than 2 bars)."""
    if len(history) < 2:
        return 0.0
    k = min(n, len(history) - 1)
    high, low = history.highs(k), history.lows(k)
    prev_close = history.closes(k + 1)[:-1]
    tr = [
        max(h - lo, abs(h - c), abs(lo - c))
        for h, lo, c in zip(high.tolist(), low.tolist(), prev_close.tolist(), strict=True)
    ]
    return float(sum(tr) / k)


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
        "sizer",
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

    def replace_strategy(self, strategy: Strategy) -> None:
        """Swap the strategy (hot reload), keeping the bars already seen."""
        self.strategy = strategy
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
        if target is None or target == held:
            return None
        units = target - held
        if self.gate is not None:
            decision = self.gate.check(bar.symbol, units, held, bar.close, bar.ts)
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
        )

    def on_fill(self, fill: Fill) -> None:
        """Move filled units from in flight to held."""
        self.position_units += fill.units
        self.pending_units -= fill.units

    def on_reject(self, order: Order) -> None:
        """An order will never fill: stop counting it as in flight."""
        self.pending_units -= order.units
