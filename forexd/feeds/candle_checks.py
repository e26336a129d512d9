"""Checks on parsed candle columns; every failure names the file, the lines and a fix.

The checks run on whole numpy columns (a handful of vector operations per rule), so a
year of M1 bars is validated in milliseconds. Each rule reports the first few offending
lines and how many there are in all, because a user fixing a file wants to find the
rows, not read a list of thousands.

Order policy: timestamps must be strictly increasing. Unsorted rows and duplicate
times are errors by default, because either usually means two files were concatenated
or a time zone conversion went wrong, and silently fixing that hides the cause.
``repair=True`` sorts (stable) and drops *exact* duplicates (same time, same values);
two rows with the same time and different prices are still an error, since there is no
way to tell which one is right.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from forexd.domain import ns_to_iso
from forexd.errors import DataError

MAX_LINES_SHOWN = 5  # offending line numbers quoted in a message; the rest are counted

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]

REPAIR_HINT = (
    "sort the file by time and remove duplicate rows, or let forexd do it: "
    "`forexd data import --repair` (repair=True in Python) sorts the rows and drops exact "
    "duplicates"
)
OHLC_HINT = "fix or delete these rows (every bar needs low <= open, close <= high)"


def where(lines: I64) -> str:
    """``line 7`` / ``lines 7, 9, 12, 15, 20 and 31 more`` for a message."""
    shown = ", ".join(str(n) for n in lines[:MAX_LINES_SHOWN].tolist())
    more = len(lines) - MAX_LINES_SHOWN
    word = "line" if len(lines) == 1 else "lines"
    return f"{word} {shown}" + (f" and {more} more" if more > 0 else "")


def row_error(path: object, problem: str, lines: I64, hint: str) -> DataError:
    """A :class:`DataError` naming the file, the problem, the lines and what to do."""
    return DataError(f"{path}: {problem} at {where(lines)}; {hint}")


def to_float_columns(
    path: object, frame: pd.DataFrame, names: tuple[str, ...], lines: I64
) -> dict[str, F64]:
    """Convert the named columns of ``frame`` to finite float64 arrays.

    Args:
        path: the file, for messages.
        frame: the raw table; its columns are named by ``names``.
        names: the numeric columns to convert.
        lines: the file line number of each row.

    Raises:
        DataError: a field is not a number, is empty, NaN or infinite.
    """
    out: dict[str, F64] = {}
    for name in names:
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column.dtype):
            values = column.to_numpy(dtype=np.float64)
        else:
            # The C parser leaves a column as text when any field is not a number;
            # only then is the slower element-wise conversion needed.
            numbers = pd.to_numeric(column, errors="coerce")
            unparsable = (numbers.isna() & column.notna()).to_numpy()
            if unparsable.any():
                first = column.to_numpy()[unparsable][0]
                raise row_error(
                    path,
                    f"column {name!r} has a value that is not a number ({first!r})",
                    lines[unparsable],
                    "prices and volumes must be plain decimal numbers",
                )
            values = numbers.to_numpy(dtype=np.float64)
        missing = ~np.isfinite(values)
        if missing.any():
            raise row_error(
                path,
                f"column {name!r} is empty, NaN or infinite (or the row has too few fields)",
                lines[missing],
                "fill in or delete these rows",
            )
        out[name] = values
    return out


# integrity (issue 10): a guess with wide margin. The largest quoted FX rates (USD/IRR,
# USD/VND) are in the tens of thousands; 1e7 leaves room and keeps notional finite.
MAX_PRICE = 1e7


def check_ohlc(path: object, label: str, columns: tuple[F64, F64, F64, F64], lines: I64) -> None:
    """Check one set of open/high/low/close columns for positive, consistent prices.

    Args:
        path: the file, for messages.
        label: column prefix for messages (``""``, ``"bid_"``, ``"ask_"``).
        columns: open, high, low, close.
        lines: the file line number of each row.

    Raises:
        DataError: a price is zero or negative, or high/low do not bound the bar.
    """
    open_, high, low, close = columns
    for name, values in zip(("open", "high", "low", "close"), columns, strict=True):
        bad = values <= 0
        if bad.any():
            raise row_error(
                path, f"{label}{name} is zero or negative", lines[bad], "prices must be > 0"
            )
        # -- integrity (issue 10): a finite but absurd price (1e308) overflows notional
        # and P&L to inf downstream; refuse it here, naming the line.
        absurd = values > MAX_PRICE
        if absurd.any():
            raise row_error(
                path,
                f"{label}{name} is above {MAX_PRICE:g}",
                lines[absurd],
                "no exchange rate is near this; check the file's price column and scale",
            )
        # -- end integrity
    rules = (
        (high < low, f"{label}high is below {label}low"),
        (high < np.maximum(open_, close), f"{label}high is below {label}open or {label}close"),
        (low > np.minimum(open_, close), f"{label}low is above {label}open or {label}close"),
    )
    for bad, problem in rules:
        if bad.any():
            raise row_error(path, problem, lines[bad], OHLC_HINT)


def check_non_negative(path: object, name: str, values: F64, lines: I64) -> None:
    """Raise :class:`DataError` when a volume/size column has a negative value."""
    bad = values < 0
    if bad.any():
        raise row_error(path, f"{name} is negative", lines[bad], "volumes must be >= 0")


@dataclass(frozen=True, slots=True)
class OrderFix:
    """What :func:`check_order` did: the rows to keep, in order, and the counts."""

    keep: NDArray[np.intp] | None  # None: the rows were already strictly increasing
    out_of_order: int  # rows whose time was earlier than the row before them
    duplicates_dropped: int  # exact duplicate rows removed


def check_order(
    path: object, ts: I64, lines: I64, values: dict[str, F64], *, repair: bool
) -> OrderFix:
    """Check that ``ts`` strictly increases; with ``repair``, sort and drop exact duplicates.

    Args:
        path: the file, for messages.
        ts: the bar times (epoch ns UTC), in file order.
        lines: the file line number of each row.
        values: every numeric column; rows are exact duplicates when all of them match.
        repair: sort and deduplicate instead of failing.

    Raises:
        DataError: unsorted or duplicate times (without ``repair``), or two rows with the
            same time and different values (always).
    """
    step = np.diff(ts)
    if bool((step > 0).all()):
        return OrderFix(None, 0, 0)
    backwards = np.flatnonzero(step < 0)
    if not repair:
        if backwards.size:
            i = int(backwards[0])
            raise DataError(
                f"{path}: times are not in order at {where(lines[backwards + 1])} "
                f"(line {lines[i + 1]} at {ns_to_iso(int(ts[i + 1]))} comes after line "
                f"{lines[i]} at {ns_to_iso(int(ts[i]))}); {REPAIR_HINT}"
            )
        same = np.flatnonzero(step == 0)
        i = int(same[0])
        raise DataError(
            f"{path}: duplicate times at {where(lines[same + 1])} (lines {lines[i]} and "
            f"{lines[i + 1]} are both {ns_to_iso(int(ts[i]))}); {REPAIR_HINT}"
        )
    order = np.argsort(ts, kind="stable")
    dup = np.flatnonzero(np.diff(ts[order]) == 0) + 1  # sorted positions repeating the previous
    if not dup.size:
        return OrderFix(order, int(backwards.size), 0)
    this, prev = order[dup], order[dup - 1]
    exact = np.ones(dup.size, dtype=bool)
    for column in values.values():
        exact &= column[this] == column[prev]
    if not exact.all():
        j = int(np.flatnonzero(~exact)[0])
        raise DataError(
            f"{path}: lines {lines[prev[j]]} and {lines[this[j]]} have the same time "
            f"{ns_to_iso(int(ts[this[j]]))} but different values (conflicting rows at "
            f"{where(np.sort(lines[this[~exact]]))}); repair cannot tell which row is right, "
            "delete the wrong ones"
        )
    return OrderFix(np.delete(order, dup), int(backwards.size), int(dup.size))


# --------------------------------------------------------------- what a file claims to be

SPACING_TOLERANCE = 0.1  # median spacing may differ from the nominal by 10% (gaps, DST)


def median_spacing_s(ts: I64) -> float | None:
    """Median seconds between consecutive bars (``None`` for fewer than two bars)."""
    if len(ts) < 2:
        return None
    return float(np.median(np.diff(ts))) / 1e9


def check_spacing(path: object, ts: I64, timeframe: str, timeframes: dict[str, int]) -> None:
    """Refuse bars whose spacing is not ``timeframe`` (M1 rows stored as H1, say).

    Args:
        path: the file, for the message.
        ts: bar open times, epoch ns, sorted.
        timeframe: the timeframe the user says the bars have.
        timeframes: every timeframe name and its seconds.

    Raises:
        DataError: the median spacing is not ``timeframe``'s, naming the one it is.
    """
    spacing = median_spacing_s(ts)
    want = timeframes[timeframe]
    if spacing is None or abs(spacing - want) <= SPACING_TOLERANCE * want:
        return
    name, seconds = min(timeframes.items(), key=lambda kv: abs(kv[1] - spacing))
    if abs(seconds - spacing) <= SPACING_TOLERANCE * seconds:
        fix = f"import it with --timeframe {name}" + (
            f" (backtest and train resample it to {timeframe} with --timeframe {timeframe})"
            if seconds < want
            else ""
        )
        what = f"{spacing:.0f} s apart ({name})"
    else:
        fix = "check the file"
        what = f"{spacing:.0f} s apart (median), which is no known timeframe"
    raise DataError(
        f"{path}: bars are {what}, not {timeframe} ({want} s); {fix}, "
        "or pass --force to store them as they are"
    )


def symbol_in_name(path: object, symbols: Iterable[str]) -> str | None:
    """The one symbol of ``symbols`` named in a file name (``DAT_ASCII_EURUSD_M1`` -> EURUSD)."""
    name = re.sub(r"[^A-Z]", "", Path(str(path)).name.upper())
    found = [s for s in symbols if s in name]
    return found[0] if len(found) == 1 else None


def check_symbol_name(path: object, symbol: str, symbols: Iterable[str]) -> None:
    """Refuse a file whose name names another symbol than ``symbol``.

    Raises:
        DataError: the name says e.g. EURUSD while ``symbol`` is GBPUSD.
    """
    named = symbol_in_name(path, symbols)
    if named is not None and named != symbol:
        raise DataError(
            f"{path}: the file name says {named}, but --symbol is {symbol}; pass "
            f"--symbol {named}, or --force if the file really holds {symbol}"
        )
