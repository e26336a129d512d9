"""The vectorised engine's fills when the strategy sets protective stops.

A stop makes the position path-dependent (an exit changes what the next target does), so
the targets alone no longer give the fills. This module walks the run from event to event
instead of from bar to bar: numpy finds the next bar where the strategy's target asks for
an order (per held value, an index of the bars whose target differs from it) and the next
bar where a fixed stop or target is touched (one comparison over the segment between
them). Only those bars go through a :class:`~forexd.brokers.ledger.Ledger`, the same
object, rule and arithmetic as the event-driven engine, so the fills are the same numbers.
A trailing stop moves on every bar, so a segment with one is walked bar by bar through the
ledger. Stop distances come from :func:`~forexd.domain.bars.mean_true_range` over exactly
the bars the live history would hold (its capacity is the strategy's warm-up plus
``HISTORY_SLACK_BARS``).

The re-entry rule is :class:`~forexd.actors.core.SymbolCore`'s: after a protective exit
the side it closed is not entered again until the strategy's target leaves that side.
"""

from __future__ import annotations

import numpy as np

from forexd.actors.core import HISTORY_SLACK_BARS
from forexd.backtest.data import SymbolSeries
from forexd.backtest.trades import REASON_CODE
from forexd.brokers.ledger import CostModel, Ledger, Protective
from forexd.domain import Bar, Fill, Order
from forexd.domain.bars import ATR_BARS, FloatArray, IntArray, mean_true_range
from forexd.strategies.base import NO_CHANGE, ProtectionParams, VectorisedStrategy


def protection_params(strategy: VectorisedStrategy) -> ProtectionParams | None:
    """The strategy's protection parameters when it sets a stop, else ``None``."""
    params = getattr(strategy, "params", None)
    if isinstance(params, ProtectionParams) and params.stop_atr is not None:
        return params
    return None


class _Walk:
    """State of one symbol's event-to-event walk."""

    def __init__(
        self, series: SymbolSeries, targets: IntArray, capacity: int, costs: CostModel
    ) -> None:
        self.s = series
        self.targets = targets
        self.capacity = capacity
        self.ledger = Ledger(0.0, costs)
        self.ts = series.ts.tolist()
        self.o = series.open.tolist()
        self.h = series.high.tolist()
        self.lo = series.low.tolist()
        self.c = series.close.tolist()
        self.fills: list[tuple[int, Fill]] = []
        self._differs: dict[int, IntArray] = {}
        self._leaves: dict[int, IntArray] = {}
        self.decided = np.flatnonzero(targets != NO_CHANGE)

    def bar(self, k: int) -> Bar:
        return Bar(self.s.symbol, self.ts[k], self.o[k], self.h[k], self.lo[k], self.c[k])

    def step(self, k: int) -> None:
        """Let the ledger see bar ``k``; keep its fills with their bar index."""
        for f in self.ledger.on_bar(self.bar(k)):
            self.fills.append((k, f))

    def next_order(self, start: int, held: int, stopped: int) -> tuple[int, int] | None:
        """First bar >= ``start`` whose close sends an order, and the side still stopped."""
        t = self.targets
        while True:
            if stopped:
                idx = self._leaves.get(stopped)
                if idx is None:
                    d = self.decided
                    idx = self._leaves[stopped] = d[t[d] * stopped <= 0]
                j = int(np.searchsorted(idx, start))
                if j == len(idx):
                    return None
                k = int(idx[j])
                stopped = 0  # the target left the stopped side
                if int(t[k]) == held:
                    start = k + 1
                    continue
                return k, stopped
            idx = self._differs.get(held)
            if idx is None:
                d = self.decided
                idx = self._differs[held] = d[t[d] != held]
            j = int(np.searchsorted(idx, start))
            return None if j == len(idx) else (int(idx[j]), 0)

    def first_touch(self, guard: Protective, start: int, end: int) -> int | None:
        """First bar in ``[start, end]`` where a fixed stop or target is touched."""
        if start > end:
            return None
        part = slice(start, end + 1)
        if guard.side > 0:
            hit = self.s.low[part] <= guard.stop
            if guard.take_profit is not None:
                hit |= self.s.high[part] >= guard.take_profit
        else:
            hit = self.s.high[part] >= guard.stop
            if guard.take_profit is not None:
                hit |= self.s.low[part] <= guard.take_profit
        where = np.flatnonzero(hit)
        return None if len(where) == 0 else start + int(where[0])

    def atr(self, k: int) -> float:
        """``average_true_range`` of the live history after bar ``k``."""
        length = min(k + 1, self.capacity)
        if length < 2:
            return 0.0
        n = min(ATR_BARS, length - 1)
        return mean_true_range(
            self.h[k - n + 1 : k + 1], self.lo[k - n + 1 : k + 1], self.c[k - n : k]
        )


def protected_fills(
    series: SymbolSeries,
    strategy: VectorisedStrategy,
    params: ProtectionParams,
    costs: CostModel,
) -> tuple[IntArray, IntArray, FloatArray, FloatArray, IntArray]:
    """One symbol's fills with protective exits: local bar, units, price, commission, reason."""
    n = len(series)
    capacity = max(strategy.warmup_bars, 1) + HISTORY_SLACK_BARS
    w = _Walk(series, strategy.targets(series.bar_arrays()), capacity, costs)
    symbol = series.symbol
    held, stopped, k = 0, 0, 0  # k: the first bar whose close is not decided yet
    seen = 0  # the first bar the ledger has not seen
    while k < n:
        nxt = w.next_order(k, held, stopped)
        end = n - 1 if nxt is None else nxt[0]
        guard = w.ledger.protective.get(symbol)
        if guard is not None:
            if guard.trail is not None:
                exit_bar = None
                for b in range(seen, end + 1):
                    w.step(b)
                    seen = b + 1
                    if symbol not in w.ledger.protective:
                        exit_bar = b
                        break
            else:
                exit_bar = w.first_touch(guard, seen, end)
                if exit_bar is not None:
                    w.step(exit_bar)
                    seen = exit_bar + 1
            if exit_bar is not None:
                stopped = guard.side
                held = 0
                k = exit_bar
                continue
        if nxt is None:
            break
        d, stopped = nxt
        target = int(w.targets[d])
        protection = None
        if target != 0 and not (
            held != 0 and (held > 0) == (target > 0) and abs(target) <= abs(held)
        ):
            protection = params.from_atr(w.atr(d))
        units = target - held
        w.ledger.submit(
            Order(
                Order.make_client_id(symbol, w.ts[d], 0), symbol, units, w.ts[d], 0, "", protection
            )
        )
        if d + 1 >= n:
            break
        w.step(d + 1)
        seen = d + 2
        held = w.ledger.units(symbol)
        last = w.fills[-1][1] if w.fills else None
        if held == 0 and last is not None and last.reason:
            stopped = -1 if last.units > 0 else 1  # stopped out on the order's fill bar
        k = d + 1
    if not w.fills:
        i, f = np.zeros(0, np.int64), np.zeros(0)
        return i, i, f, f, i
    at, fills = zip(*w.fills, strict=True)
    return (
        np.array(at, np.int64),
        np.array([f.units for f in fills], np.int64),
        np.array([f.price for f in fills], np.float64),
        np.array([f.commission for f in fills], np.float64),
        np.array([REASON_CODE[f.reason] for f in fills], np.int64),
    )
