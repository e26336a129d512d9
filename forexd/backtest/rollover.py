"""Rollover (overnight financing) at the FX daily roll, 17:00 New York.

Model, kept deliberately simple:

- The roll happens at 17:00 America/New_York on Monday to Friday (21:00 UTC while US
  daylight time is in effect, 22:00 UTC otherwise). Wednesday's roll counts three nights,
  because spot value dates skip the weekend there (T+2); the other rolls count one.
- A position held across a roll is charged ``units × price × rate / 100 / 365`` per night
  in the quote currency, converted to USD at that price, where ``rate`` is the annual
  interest differential in percent, base minus quote (``BacktestRequest.rollover``). A long
  earns it when positive and pays it when negative; a short the reverse.
- "Held across the roll" means held after the last bar that opened before the roll, priced
  at that bar's close; the amount is booked at the symbol's first bar at or after the roll
  (bar open times in ``(previous bar, this bar]`` count), before that bar's fills. A gap
  that spans several rolls (a weekend, a holiday) books all of them at once.

Real brokers quote separate long and short rates with a markup, and use 360-day years for
some currencies; one symmetric differential on a 365-day year is the simplification chosen
here. The amount never influences a decision (no strategy or gate reads the balance), so
the engines book it from the per-bar positions after the run, identically for both.
"""

from __future__ import annotations

import numpy as np

from forexd.backtest.data import SymbolSeries
from forexd.backtest.positions import to_account
from forexd.domain import NS_PER_S
from forexd.domain.bars import FloatArray, IntArray
from forexd.features.calendar import us_daylight_time

NS_PER_HOUR = 3600 * NS_PER_S
NS_PER_DAY = 24 * NS_PER_HOUR
ROLL_UTC_HOUR_DAYLIGHT = 21  # 17:00 EDT
ROLL_UTC_HOUR_STANDARD = 22  # 17:00 EST
WEDNESDAY = 2  # Monday = 0
WEDNESDAY_NIGHTS = 3
DAYS_PER_YEAR = 365
EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday


def roll_times(first_ns: int, last_ns: int) -> tuple[IntArray, IntArray]:
    """Every roll instant (epoch ns) around ``[first_ns, last_ns]`` and its night count."""
    days = np.arange(first_ns // NS_PER_DAY - 1, last_ns // NS_PER_DAY + 2, dtype=np.int64)
    weekday = (days + EPOCH_WEEKDAY) % 7
    days = days[weekday < 5]
    weekday = weekday[weekday < 5]
    daylight_roll = days * NS_PER_DAY + ROLL_UTC_HOUR_DAYLIGHT * NS_PER_HOUR
    years = days.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970
    uniq, inverse = np.unique(years, return_inverse=True)
    bounds = np.array([us_daylight_time(int(y)) for y in uniq], dtype=np.int64).reshape(-1, 2)
    in_daylight = (daylight_roll >= bounds[inverse, 0]) & (daylight_roll < bounds[inverse, 1])
    rolls = np.where(in_daylight, daylight_roll, daylight_roll + NS_PER_HOUR)
    nights = np.where(weekday == WEDNESDAY, WEDNESDAY_NIGHTS, 1).astype(np.int64)
    return rolls, nights


def nights_per_bar(ts: IntArray) -> IntArray:
    """Nights rolled between each bar and the one before it (0 for the first bar)."""
    if len(ts) == 0:
        return np.zeros(0, np.int64)
    rolls, nights = roll_times(int(ts[0]), int(ts[-1]))
    cum = np.concatenate(([0], np.cumsum(nights)))
    rolled = cum[np.searchsorted(rolls, ts, side="right")]
    out = np.zeros(len(ts), np.int64)
    out[1:] = np.diff(rolled)
    return out


def financing(series: SymbolSeries, units_after_bar: IntArray, rate_pct: float) -> FloatArray:
    """USD booked at each of the symbol's bars (positive = earned).

    Args:
        series: the symbol's bars.
        units_after_bar: position after each bar's fills.
        rate_pct: annual differential in percent (base minus quote) a long earns.
    """
    out = np.zeros(len(series))
    if rate_pct == 0.0 or len(series) < 2:
        return out
    nights = nights_per_bar(series.ts)[1:]
    held = units_after_bar[:-1]
    price = series.close[:-1]
    amount = held * price * (rate_pct / 100.0 / DAYS_PER_YEAR) * nights
    charged = (held != 0) & (nights > 0)
    out[1:] = np.where(charged, to_account(series.instrument, amount, price), 0.0)
    return out
