"""Only the present is traded: which bars may lead to an order.

A live feed hands an actor history first (OANDA's back-fill of 500 candles, the bars a
restart missed) and then bars as they close. Deciding on the history would send real
orders at today's price for bars hours old. So a bar that closed before the actor
(re)started, or that is older than ``max_age`` when it arrives, only warms the strategy.

The clock is the feed's: OANDA's stream time (the clock its bars are built on, so a local
clock's skew or a simulated server cannot make every bar look old or new), the wall clock
for a live feed without one. While the clock is unknown (no stream message yet) nothing
trades. A recorded feed (replay, backtest) has its own clock: the bar it is playing *is*
the present, so every bar it delivers may trade (``clock is None``), and replay/backtest
parity is untouched. Bar ``ts`` is the open time; a bar closes at ``ts + period``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

NS_PER_S = 1_000_000_000

BEFORE_START = "closed_before_start"
STALE = "stale"
NO_CLOCK = "no_clock"

Clock = Callable[[], "int | None"]
"""Now in epoch ns, or ``None`` while the feed has not told the time yet."""


@dataclass(frozen=True, slots=True)
class PresentPolicy:
    """Decides whether a bar is the present.

    Attributes:
        period_ns: bar length.
        max_age_ns: a bar that arrives more than this after its close is stale.
        clock: the feed's clock (ns); ``None`` for a recorded feed (its bars are the present).
    """

    period_ns: int = 0
    max_age_ns: int = 0
    clock: Clock | None = None

    @classmethod
    def recorded(cls) -> PresentPolicy:
        """Replay and backtest: the feed's own clock; every bar may trade."""
        return cls()

    @classmethod
    def live(
        cls,
        period_s: int,
        max_age_bars: float = 1.0,
        clock: Clock = time.time_ns,
    ) -> PresentPolicy:
        """A live feed: bars older than ``max_age_bars`` periods at arrival do not trade."""
        period = period_s * NS_PER_S
        return cls(period, round(period * max_age_bars), clock)

    def now_ns(self) -> int | None:
        """The present on the wall clock, or ``None`` for a recorded feed."""
        return self.clock() if self.clock is not None else None  # None: recorded or unknown

    def not_present(self, bar_ts: int, started_ns: int | None) -> str | None:
        """Why the bar opened at ``bar_ts`` must not trade, or ``None`` if it may.

        Args:
            bar_ts: the bar's open time (ns).
            started_ns: when the actor's current life started on the feed's clock (ns);
                ``None`` for a recorded feed, or when the clock was not known yet (then
                only the age rule applies).
        """
        if self.clock is None:
            return None
        now = self.clock()
        if now is None:
            return NO_CLOCK
        closed = bar_ts + self.period_ns
        if started_ns is not None and closed <= started_ns:
            return BEFORE_START
        if now - closed > self.max_age_ns:
            return STALE
        return None
