"""Fixed-width candle time stamps (``20170102 020000``) to wall-clock epoch ns, vectorised.

The stamps are cut into digits on their raw bytes, two digits at a time through a 64k
lookup table, which is ~50x faster than ``pd.to_datetime(format=...)`` and ~6x faster
than a digit-by-digit loop over byte positions (a year of M1: ~0.05 s). Used by the pandas
reader (:mod:`forexd.feeds.candle_parse`) and the pyarrow one
(:mod:`forexd.feeds.candle_arrow`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from forexd.domain import NS_PER_S
from forexd.feeds.candle_checks import I64

DAY_NS = 86_400 * NS_PER_S
_DIGITS = np.full(256, -1, dtype=np.int16)  # byte -> its digit, -1 if not a digit
_DIGITS[ord("0") : ord("9") + 1] = np.arange(10)
_PAIRS = np.full(65536, -1, dtype=np.int16)  # two bytes (first one low) -> 00..99, or -1
_TENS, _UNITS = np.divmod(np.arange(100), 10)
_PAIRS[(_TENS + ord("0")) | ((_UNITS + ord("0")) << 8)] = np.arange(100)


def parse_fixed_times(values: NDArray[np.object_], layout: str) -> tuple[I64, NDArray[np.bool_]]:
    """Parse fixed-width stamps such as ``20170102 020000`` into wall-clock epoch ns.

    Args:
        values: the time strings (NaN where a field was empty).
        layout: one character per byte: ``Y M D h m s`` are digits, anything else must
            match literally.

    Returns:
        The wall-clock times as if UTC, and a mask of the values that parsed (a valid
        calendar date and time of day, exactly ``len(layout)`` ASCII characters).
    """
    width = len(layout) + 1  # one spare byte shows up values that are too long
    try:
        raw = values.astype(f"S{width}")
    except UnicodeEncodeError:
        ascii_only = [v if isinstance(v, str) and v.isascii() else "" for v in values.tolist()]
        raw = np.array(ascii_only, dtype=object).astype(f"S{width}")
    grid = raw.view(np.uint8).reshape(len(values), width)
    return parse_time_grid(grid[:, :-1], layout, grid[:, -1] == 0)


def parse_time_grid(
    grid: NDArray[np.uint8], layout: str, ok: NDArray[np.bool_]
) -> tuple[I64, NDArray[np.bool_]]:
    """:func:`parse_fixed_times` on the stamps' bytes, one row of ``len(layout)`` per value.

    Args:
        grid: the bytes of each stamp.
        layout: as for :func:`parse_fixed_times`.
        ok: rows already known to be well-formed so far (updated copy returned).
    """
    # Two digits at a time through a 64k lookup table (-1 where either byte is not a
    # digit): a year of M1 stamps parses in ~0.05 s instead of ~0.3 s digit by digit.
    ok = ok.copy()
    parts: dict[str, I64] = {}
    for ch in "YMDhms":
        where = [pos for pos, c in enumerate(layout) if c == ch]
        value = np.zeros(len(grid), dtype=np.int64)
        if len(where) % 2:
            single = _DIGITS[grid[:, where[0]]]
            ok &= single >= 0
            value = single.astype(np.int64)
        for p, q in zip(where[len(where) % 2 :: 2], where[len(where) % 2 + 1 :: 2], strict=True):
            pair = _PAIRS[grid[:, p].astype(np.uint16) | (grid[:, q].astype(np.uint16) << 8)]
            ok &= pair >= 0
            value = value * 100 + pair
        parts[ch] = value
    for pos, ch in enumerate(layout):
        if ch not in parts:
            ok &= grid[:, pos] == ord(ch)
    year, month, day = parts["Y"], parts["M"], parts["D"]
    ok &= (month >= 1) & (month <= 12) & (day >= 1) & (day <= 31)
    ok &= (parts["h"] < 24) & (parts["m"] < 60) & (parts["s"] < 60)
    months = np.where(ok, (year - 1970) * 12 + month - 1, 0)
    days = months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    days = days + np.where(ok, day - 1, 0)
    # 31 Feb rolls into March: the month of the computed day shows it.
    ok &= days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) == months
    seconds = parts["h"] * 3600 + parts["m"] * 60 + parts["s"]
    wall = np.where(ok, days * DAY_NS + seconds * NS_PER_S, 0)
    return wall.astype(np.int64), ok
