"""Candle files in, validated candle frames out; resampling; the bundled demo sample.

A candle frame has columns ``ts`` (int64 epoch ns UTC, bar open time), ``open``,
``high``, ``low``, ``close`` and ``volume`` (float64), a 0..n-1 index and strictly
increasing ``ts``. Three file formats are read (plain or gzip, detected by content):

* ``histdata``: HistData.com M1 ASCII, ``YYYYMMDD HHMMSS;o;h;l;c;v``, New York wall-clock
  time (EST/EDT, whatever HistData's own page says; see ``candle_parse`` for the DST rule);
* ``oanda-lean``: QuantConnect Lean's OANDA bars, 11 columns, bid and ask OHLC, UTC;
  ``side`` picks bid, ask or their mid;
* ``csv``: a header ``time,open,high,low,close[,volume]``, ISO 8601 or epoch-second times.

Clean histdata and oanda-lean files are read by pyarrow (:mod:`forexd.feeds.candle_arrow`);
any other file, or one with a problem, by pandas' C parser, which names the bad line.

Every problem in a file is a :class:`~forexd.errors.DataError` naming the file, the
first offending lines and what to do; nothing is dropped or patched silently.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from platformdirs import user_cache_path

from forexd.domain import NS_PER_S, Bar
from forexd.errors import ConfigError, DataError
from forexd.feeds import candle_checks as checks
from forexd.feeds import candle_parse as parse
from forexd.feeds.candle_arrow import read_fixed
from forexd.feeds.candle_times import parse_fixed_times

CandleFormat = Literal["auto", "histdata", "oanda-lean", "csv"]
Side = Literal["bid", "ask", "mid"]
FORMATS: tuple[str, ...] = get_args(CandleFormat)
SIDES: tuple[str, ...] = get_args(Side)
COLUMNS = ("ts", "open", "high", "low", "close", "volume")

BUNDLED_SYMBOL = "EURUSD"
BUNDLED_TIMEFRAME = "H1"
BUNDLED_FILE = "eurusd_h1_2017_2018.csv.gz"
BUNDLED_FORMAT: CandleFormat = "oanda-lean"


@dataclass(frozen=True, slots=True)
class LoadReport:
    """What :func:`read_candles` read and, with ``repair``, what it changed."""

    path: str
    format: str
    rows: int  # candles in the frame
    blank_lines: int  # empty lines skipped between rows
    out_of_order: int  # rows earlier than the row before them (moved by repair)
    duplicates_dropped: int  # exact duplicate rows removed by repair
    tz: str  # zone naive times were read in
    side: str


@dataclass(frozen=True, slots=True)
class LoadedCandles:
    """A validated candle frame and the report of how it was read."""

    frame: pd.DataFrame
    report: LoadReport


def read_candles(
    path: Path,
    fmt: CandleFormat = "auto",
    *,
    tz: str | None = None,
    side: Side = "bid",
    repair: bool = False,
) -> LoadedCandles:
    """Read and validate a candle file (plain or gzip).

    Args:
        path: the file.
        fmt: its format, or ``auto`` to tell from the first line.
        tz: IANA zone of naive times; default: the format's own (New York for
            ``histdata``, UTC otherwise). Epoch seconds and ISO times with an offset are
            unaffected.
        side: ``oanda-lean`` only: bid, ask or mid prices.
        repair: sort unsorted rows and drop exact duplicates instead of failing.

    Raises:
        DataError: the file is missing, empty, of an unknown format, or has a bad row.
        ConfigError: ``fmt``, ``side`` or ``tz`` is not a valid choice.
    """
    path = Path(path)
    if fmt not in FORMATS:
        raise ConfigError(f"unknown candle format {fmt!r}; use one of {', '.join(FORMATS)}")
    if side not in SIDES:
        raise ConfigError(f"unknown price side {side!r}; use one of {', '.join(SIDES)}")
    gz, first_line = parse.read_head(path)
    spec = parse.sniff(first_line) if fmt == "auto" else parse.SPECS[fmt]
    if spec is None:
        raise DataError(_unknown_format_message(path, first_line))
    if side != "bid" and spec is not parse.OANDA_LEAN:
        raise ConfigError(
            f"side={side!r} needs a file with bid and ask prices (oanda-lean); "
            f"{path} is {spec.name}, which has one price per bar: leave side at 'bid'"
        )
    zone = tz if tz is not None else spec.tz
    parse.resolve_zone(zone)  # a bad name fails before the file is read
    clean = read_fixed(path, spec, gz)  # fast path; None: let the pandas path explain
    if clean is not None:
        values, lines, blank = clean.values, clean.lines, 0
        ts = parse.localize(clean.wall, zone)
    else:
        columns = parse.csv_header(path, first_line) if spec.header else spec.columns
        table, lines, blank = parse.read_table(path, spec, gz, len(columns))
        table.columns = pd.Index(columns)
        values = checks.to_float_columns(path, table, columns[1:], lines)
        ts = _times(path, spec, table["time"].to_numpy(dtype=object), lines, zone)
    for p in spec.price_sets:
        ohlc = (values[f"{p}open"], values[f"{p}high"], values[f"{p}low"], values[f"{p}close"])
        checks.check_ohlc(path, p, ohlc, lines)
    for name in ("volume", "bid_size", "ask_size"):
        if name in values:
            checks.check_non_negative(path, name, values[name], lines)
    fix = checks.check_order(path, ts, lines, values, repair=repair)
    if fix.keep is not None:
        ts = ts[fix.keep]
        values = {name: column[fix.keep] for name, column in values.items()}
    frame = _frame(ts, values, side)
    report = LoadReport(
        path=str(path),
        format=spec.name,
        rows=len(frame),
        blank_lines=blank,
        out_of_order=fix.out_of_order,
        duplicates_dropped=fix.duplicates_dropped,
        tz=zone,
        side=side,
    )
    return LoadedCandles(frame, report)


def load_candles(
    path: Path,
    fmt: CandleFormat = "auto",
    *,
    tz: str | None = None,
    side: Side = "bid",
    repair: bool = False,
) -> pd.DataFrame:
    """Read and validate a candle file; the frame of :func:`read_candles`.

    Raises:
        DataError: see :func:`read_candles`.
        ConfigError: see :func:`read_candles`.
    """
    return read_candles(path, fmt, tz=tz, side=side, repair=repair).frame


def sniff_format(path: Path) -> CandleFormat:
    """Tell a candle file's format from its first line.

    Raises:
        DataError: the file is missing or empty, or its first line fits no format.
    """
    _, first_line = parse.read_head(path)
    spec = parse.sniff(first_line)
    if spec is None:
        raise DataError(_unknown_format_message(path, first_line))
    return spec.name


def resample_candles(frame: pd.DataFrame, timeframe_seconds: int) -> pd.DataFrame:
    """Aggregate candles into bars of ``timeframe_seconds`` aligned to UTC epoch multiples.

    A bar opens at the first input bar of its period and closes at the last; high/low are
    the extremes and volume the sum. Periods without any input bar produce no bar (gaps
    are not filled), and a period only partly covered still produces one.

    Raises:
        ValueError: ``timeframe_seconds`` is not positive.
        DataError: the frame's ``ts`` is not strictly increasing.
    """
    if timeframe_seconds <= 0:
        raise ValueError(f"timeframe_seconds must be positive, got {timeframe_seconds}")
    ts = frame["ts"].to_numpy(dtype=np.int64)
    if len(ts) == 0:
        return _frame(ts, {c: np.empty(0) for c in COLUMNS[1:]}, "bid")
    if not bool((np.diff(ts) > 0).all()):
        raise DataError("cannot resample candles whose ts is not strictly increasing")
    period = ts - ts % (timeframe_seconds * NS_PER_S)  # floor, also for times before 1970
    starts = np.flatnonzero(np.r_[True, period[1:] != period[:-1]])
    ends = np.r_[starts[1:], len(ts)] - 1

    def col(name: str) -> NDArray[np.float64]:
        return frame[name].to_numpy(dtype=np.float64)

    values = {
        "open": col("open")[starts],
        "high": np.maximum.reduceat(col("high"), starts),
        "low": np.minimum.reduceat(col("low"), starts),
        "close": col("close")[ends],
        "volume": np.add.reduceat(col("volume"), starts),
    }
    return _frame(period[starts], values, "bid")


def iter_bars(frame: pd.DataFrame, symbol: str) -> Iterator[Bar]:
    """Yield the frame's rows as :class:`~forexd.domain.Bar` values, oldest first."""
    columns = [frame[c].to_numpy(dtype=np.float64).tolist() for c in COLUMNS[1:]]
    ts = frame["ts"].to_numpy(dtype=np.int64).tolist()
    for t, o, h, lo, c, v in zip(ts, *columns, strict=True):
        yield Bar(symbol, t, o, h, lo, c, v)


def frame_to_bars(frame: pd.DataFrame, symbol: str) -> list[Bar]:
    """All of the frame's rows as :class:`~forexd.domain.Bar` values, oldest first."""
    return list(iter_bars(frame, symbol))


def bundled_sample_path() -> Path:
    """Path of the bundled EURUSD H1 sample (2017-2018, OANDA via QuantConnect Lean).

    Raises:
        DataError: the installation lacks the file.
    """
    resource = files("forexd") / "data" / BUNDLED_FILE
    if not resource.is_file():
        raise DataError(
            f"the bundled sample {BUNDLED_FILE} is missing from this installation of "
            "forexd; reinstall forexd, or give a candle file with feed.source"
        )
    if isinstance(resource, Path):
        return resource
    # Installed inside a zip: candle readers need a real file, so copy it out once.
    cache = user_cache_path("forexd")
    cache.mkdir(parents=True, exist_ok=True)
    copy = cache / BUNDLED_FILE
    data = resource.read_bytes()
    if not copy.is_file() or copy.stat().st_size != len(data):
        partial = cache / f"{BUNDLED_FILE}.{os.getpid()}.tmp"
        partial.write_bytes(data)
        partial.replace(copy)  # atomic: a concurrent reader never sees half a file
    return copy


def _times(
    path: Path, spec: parse.FormatSpec, raw: NDArray[np.object_], lines: checks.I64, tz: str
) -> checks.I64:
    if spec.time_layout is None:
        return parse.parse_csv_times(path, raw, lines, tz)
    wall, ok = parse_fixed_times(raw, spec.time_layout)
    if not ok.all():
        raise checks.row_error(
            path,
            f"the time {raw[~ok][0]!r} does not parse",
            lines[~ok],
            f"{spec.name} times look like {spec.time_example!r}; "
            "check the file or choose another --format",
        )
    return parse.localize(wall, tz)


def _frame(ts: checks.I64, values: dict[str, NDArray[np.float64]], side: str) -> pd.DataFrame:
    if "open" in values:
        prices = {c: values[c] for c in COLUMNS[1:5]}
        volume = values.get("volume", np.zeros(len(ts)))
    elif side == "mid":
        prices = {c: (values[f"bid_{c}"] + values[f"ask_{c}"]) / 2 for c in COLUMNS[1:5]}
        volume = (values["bid_size"] + values["ask_size"]) / 2
    else:
        prices = {c: values[f"{side}_{c}"] for c in COLUMNS[1:5]}
        volume = values[f"{side}_size"]  # Lean's "last size" is the only volume there is
    columns = {"ts": np.asarray(ts, dtype=np.int64)}
    columns.update({c: np.asarray(v, dtype=np.float64) for c, v in prices.items()})
    columns["volume"] = np.asarray(volume, dtype=np.float64)
    frame: pd.DataFrame = pd.DataFrame(columns)
    return frame


def _unknown_format_message(path: Path, first_line: str) -> str:
    known = "; ".join(spec.describe for spec in parse.SPECS.values())
    return (
        f"{path}: cannot tell the candle format from its first line {first_line[:80]!r}. "
        f"Known formats: {known}. Name the format with --format (fmt= in Python)"
    )
