"""Streamed prices to bars: a pure aggregator that also knows what it may have missed.

A bar built from a price stream is only right if the stream was connected for the whole
period. :class:`BarBuilder` therefore flags a bar ``needs_resync`` when it may be
incomplete — it started before the current connection was known to be live, or the stream
broke since the symbol's previous bar — and the feed then takes that bar (and any before
it that the outage swallowed) from the broker's candle history instead.

"Known to be live" uses server time only: the first message of a connection (a price or
a heartbeat) at time ``t`` proves the stream was connected at ``t``; periods starting at
``t + start_margin`` or later were seen whole. The margin (1 s, a guess) covers OANDA's
250 ms price windows, whose last price can carry a time just before the connection.

A period closes when a later price of the same symbol arrives, or when a heartbeat's
server time has passed its end by ``close_grace`` (1 s by default, also a guess: a price
from the window spanning the boundary may still be on its way). Periods without a price
make no bar, as in OANDA's own candles.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from forexd.domain import NS_PER_S, Bar

START_MARGIN_S = 1.0
CLOSE_GRACE_S = 1.0


@dataclass(frozen=True, slots=True)
class LiveBar:
    """A closed bar from the stream; ``needs_resync``: ticks may be missing."""

    bar: Bar
    needs_resync: bool


@dataclass(slots=True)
class _Open:
    start: int
    open: float
    high: float
    low: float
    close: float
    ticks: int
    partial: bool


class BarBuilder:
    """Aggregates (symbol, time, price) ticks into period bars aligned to the epoch."""

    def __init__(
        self,
        symbols: Iterable[str],
        period_s: int,
        *,
        start_margin_s: float = START_MARGIN_S,
        close_grace_s: float = CLOSE_GRACE_S,
    ) -> None:
        """Start with every symbol "interrupted": nothing has been seen yet.

        Args:
            symbols: the symbols whose ticks will arrive.
            period_s: the bar length; bars start at multiples of it since the epoch
                (UTC midnight for a day).
            start_margin_s: see the module note.
            close_grace_s: see the module note.
        """
        self.symbols = tuple(symbols)
        self.period_ns = period_s * NS_PER_S
        self._margin_ns = int(start_margin_s * NS_PER_S)
        self._grace_ns = int(close_grace_s * NS_PER_S)
        self._open: dict[str, _Open] = {}
        self._last_tick: dict[str, int] = {}
        self._last_emitted: dict[str, int] = {}
        self._interrupted = set(self.symbols)
        self._live_from: int | None = None
        self.late_ticks = 0

    def connected(self) -> None:
        """A new connection: its first message will date its start."""
        self._live_from = None

    def disconnected(self) -> None:
        """The stream broke: open bars are incomplete, and so may be anything after."""
        for building in self._open.values():
            building.partial = True
        self._interrupted = set(self.symbols)
        self._live_from = None

    def _seen(self, ts: int) -> None:
        if self._live_from is None:
            self._live_from = ts + self._margin_ns

    def on_price(self, symbol: str, ts: int, price: float) -> list[LiveBar]:
        """Add one tick; return the bar it closed, if any."""
        self._seen(ts)
        if ts <= self._last_tick.get(symbol, -1):
            return []  # a repeat (e.g. a snapshot) or out of order: never count it twice
        start = ts - ts % self.period_ns
        if start <= self._last_emitted.get(symbol, -1):
            self.late_ticks += 1  # its period was closed already; the resync covers it
            return []
        self._last_tick[symbol] = ts
        out: list[LiveBar] = []
        building = self._open.get(symbol)
        if building is not None and building.start != start:
            out.append(self._emit(symbol))
            building = None
        if building is None:
            live_from = self._live_from if self._live_from is not None else ts
            self._open[symbol] = _Open(start, price, price, price, price, 1, start < live_from)
        else:
            building.high = max(building.high, price)
            building.low = min(building.low, price)
            building.close = price
            building.ticks += 1
        return out

    def on_heartbeat(self, ts: int) -> list[LiveBar]:
        """Server time ``ts`` passed: close every bar that ended ``close_grace`` before."""
        self._seen(ts)
        due = [s for s, b in self._open.items() if b.start + self.period_ns + self._grace_ns <= ts]
        return [self._emit(symbol) for symbol in due]

    def _emit(self, symbol: str) -> LiveBar:
        b = self._open.pop(symbol)
        self._last_emitted[symbol] = b.start
        resync = b.partial or symbol in self._interrupted
        self._interrupted.discard(symbol)
        bar = Bar(symbol, b.start, b.open, b.high, b.low, b.close, float(b.ticks))
        return LiveBar(bar, resync)
