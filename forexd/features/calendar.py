"""Calendar features from epoch-nanosecond UTC timestamps: time of day, weekday, sessions.

Session flags follow local business hours (Tokyo 09-18 JST, London 08-17, New York 08-17
local), so London and New York move by an hour with daylight saving time. The DST rules are
written out here (EU since 1996; US since 2007, and the 1987-2006 rule before that) rather
than looked up in the tz database: it keeps the features layer pure numpy, vectorised and
the same on every platform (Windows has no tz database without the ``tzdata`` package).
Years before 1987 use the 1987 US rule; forexd has no data that old.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable
from datetime import datetime, timezone

import numpy as np
import numpy.typing as npt

from forexd.domain import NS_PER_S
from forexd.domain.bars import FloatArray, IntArray

BoolArray = npt.NDArray[np.bool_]

NS_PER_HOUR = 3600 * NS_PER_S
NS_PER_DAY = 24 * NS_PER_HOUR
EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)

TOKYO_UTC_OFFSET_H = 9  # Japan has no DST
LONDON_UTC_OFFSET_H = 0  # +1 in summer
NEW_YORK_UTC_OFFSET_H = -5  # +1 in summer
TOKYO_HOURS = (9.0, 18.0)  # local business hours [open, close)
LONDON_HOURS = (8.0, 17.0)
NEW_YORK_HOURS = (8.0, 17.0)


def _utc_ns(year: int, month: int, day: int, hour: int) -> int:
    return int(datetime(year, month, day, hour, tzinfo=timezone.utc).timestamp()) * NS_PER_S


def _sunday(year: int, month: int, nth: int) -> int:
    """Day of month of the ``nth`` Sunday (1-based; ``-1`` is the last one)."""
    sundays = [week[calendar.SUNDAY] for week in calendar.monthcalendar(year, month)]
    sundays = [d for d in sundays if d != 0]
    return sundays[nth - 1] if nth > 0 else sundays[nth]


def eu_summer_time(year: int) -> tuple[int, int]:
    """EU summer time ``[start, end)`` in epoch ns: last Sundays of March/October, 01 UTC."""
    return (_utc_ns(year, 3, _sunday(year, 3, -1), 1), _utc_ns(year, 10, _sunday(year, 10, -1), 1))


def us_daylight_time(year: int) -> tuple[int, int]:
    """US Eastern daylight time ``[start, end)`` in epoch ns (02:00 local both ends)."""
    if year >= 2007:
        return (
            _utc_ns(year, 3, _sunday(year, 3, 2), 7),
            _utc_ns(year, 11, _sunday(year, 11, 1), 6),
        )
    return (_utc_ns(year, 4, _sunday(year, 4, 1), 7), _utc_ns(year, 10, _sunday(year, 10, -1), 6))


def _in_period(ts_ns: IntArray, period: Callable[[int], tuple[int, int]]) -> BoolArray:
    """Whether each timestamp lies in its year's ``period``; one rule call per distinct year."""
    years = ts_ns.astype("datetime64[ns]").astype("datetime64[Y]").astype(np.int64) + 1970
    uniq, inverse = np.unique(years, return_inverse=True)
    bounds = np.array([period(int(y)) for y in uniq], dtype=np.int64).reshape(len(uniq), 2)
    in_period: BoolArray = (ts_ns >= bounds[inverse, 0]) & (ts_ns < bounds[inverse, 1])
    return in_period


def utc_hours(ts_ns: IntArray) -> FloatArray:
    """Fractional UTC hour of the day (0 <= h < 24)."""
    hours: FloatArray = np.mod(ts_ns, NS_PER_DAY).astype(np.float64) / NS_PER_HOUR
    return hours


def time_of_day(ts_ns: IntArray) -> tuple[FloatArray, FloatArray]:
    """Sine and cosine of the UTC time of day (23:59 sits next to 00:00)."""
    angle = 2.0 * np.pi * utc_hours(ts_ns) / 24.0
    return np.sin(angle), np.cos(angle)


def day_of_week(ts_ns: IntArray) -> tuple[FloatArray, FloatArray]:
    """Sine and cosine of the UTC weekday (Monday = 0 ... Sunday = 6)."""
    weekday = np.mod(np.floor_divide(ts_ns, NS_PER_DAY) + EPOCH_WEEKDAY, 7)
    angle = 2.0 * np.pi * weekday.astype(np.float64) / 7.0
    return np.sin(angle), np.cos(angle)


def _open(local_hours: FloatArray, hours: tuple[float, float]) -> FloatArray:
    flags: FloatArray = ((local_hours >= hours[0]) & (local_hours < hours[1])).astype(np.float64)
    return flags


def sessions(ts_ns: IntArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """0/1 flags: Tokyo, London and New York sessions open at each timestamp."""
    utc = utc_hours(ts_ns)
    london = utc + LONDON_UTC_OFFSET_H + _in_period(ts_ns, eu_summer_time)
    new_york = utc + NEW_YORK_UTC_OFFSET_H + _in_period(ts_ns, us_daylight_time)
    tokyo = utc + TOKYO_UTC_OFFSET_H
    return (
        _open(np.mod(tokyo, 24.0), TOKYO_HOURS),
        _open(np.mod(london, 24.0), LONDON_HOURS),
        _open(np.mod(new_york, 24.0), NEW_YORK_HOURS),
    )
