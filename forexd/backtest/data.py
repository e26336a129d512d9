"""Market data for a backtest: load candle frames, check them, merge the symbols.

A portfolio backtest walks one timeline: every symbol's bars merged by open time, ties
broken by symbol name (symbols are sorted, so the order is the same on every run). The
merge is an index (``code``, ``local``) into per-symbol column arrays rather than a copy of
the bars: a portfolio costs three int64 columns per bar on top of the OHLC data itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from forexd.backtest.request import BacktestRequest
from forexd.domain import INSTRUMENTS, NS_PER_S, Instrument, get_instrument, ns_to_iso
from forexd.domain.bars import BarArrays, FloatArray, IntArray
from forexd.domain.timeframes import TIMEFRAME_SECONDS
from forexd.errors import ConfigError, DataError
from forexd.feeds.frames import clip_frame

PRICE_COLUMNS = ("open", "high", "low", "close")
TIMEFRAME_TOLERANCE = 0.1  # median spacing may differ from the nominal by 10% (gaps, DST)


@dataclass(frozen=True, slots=True)
class SymbolSeries:
    """One symbol's bars as columns (``ts`` strictly increasing, epoch ns UTC)."""

    symbol: str
    instrument: Instrument
    ts: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray

    def __len__(self) -> int:
        return len(self.ts)

    def bar_arrays(self) -> BarArrays:
        """The series as the strategies' vectorised input."""
        return BarArrays.from_ohlc(
            self.instrument, self.ts, self.open, self.high, self.low, self.close
        )


@dataclass(frozen=True, slots=True)
class MarketData:
    """Several symbols on one merged timeline.

    Attributes:
        series: per-symbol columns, sorted by symbol.
        timeframe: bar timeframe (``M1``, ``H1``...).
        ts: open time of each merged bar.
        code: index into ``series`` of each merged bar.
        local: index of each merged bar within its own series.
    """

    series: tuple[SymbolSeries, ...]
    timeframe: str
    ts: IntArray
    code: IntArray
    local: IntArray

    @property
    def symbols(self) -> tuple[str, ...]:
        """Symbol names in code order."""
        return tuple(s.symbol for s in self.series)

    def __len__(self) -> int:
        return len(self.ts)


def series_from_frame(symbol: str, frame: pd.DataFrame) -> SymbolSeries:
    """Check a candle frame and turn it into columns.

    Raises:
        DataError: missing columns, no rows, NaN or non-positive prices, or times that are
            not strictly increasing; the message names the symbol and the first bad row.
    """
    instrument = get_instrument(symbol)
    missing = [c for c in ("ts", *PRICE_COLUMNS) if c not in frame.columns]
    if missing:
        raise DataError(f"{symbol}: candle data lacks column(s) {', '.join(missing)}")
    if len(frame) == 0:
        raise DataError(f"{symbol}: no bars in the selected data (check --start/--end)")
    ts = frame["ts"].to_numpy(dtype=np.int64)
    cols = {c: frame[c].to_numpy(dtype=np.float64) for c in PRICE_COLUMNS}
    for name, col in cols.items():
        bad = ~np.isfinite(col) | (col <= 0)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(
                f"{symbol}: bar {i} ({ns_to_iso(int(ts[i]))}) has {name} = {col[i]}; prices "
                "must be positive numbers (repair the file or import it with --repair)"
            )
    step = np.diff(ts)
    if (step <= 0).any():
        i = int(np.argmax(step <= 0)) + 1
        raise DataError(
            f"{symbol}: bar times are not strictly increasing at row {i} "
            f"({ns_to_iso(int(ts[i]))}); sort and de-duplicate the file (data import --repair)"
        )
    volume = (
        frame["volume"].to_numpy(dtype=np.float64)
        if "volume" in frame.columns
        else np.zeros(len(ts))
    )
    return SymbolSeries(
        instrument.symbol,
        instrument,
        ts,
        cols["open"],
        cols["high"],
        cols["low"],
        cols["close"],
        volume,
    )


def infer_timeframe(ts: IntArray, symbol: str) -> str:
    """The timeframe whose length is closest to the median bar spacing.

    Raises:
        DataError: fewer than two bars, or a spacing that matches no timeframe.
    """
    if len(ts) < 2:
        raise DataError(f"{symbol}: one bar is not enough to tell the timeframe; pass --timeframe")
    median_s = float(np.median(np.diff(ts))) / NS_PER_S
    name, seconds = min(TIMEFRAME_SECONDS.items(), key=lambda kv: abs(kv[1] - median_s))
    if abs(seconds - median_s) > TIMEFRAME_TOLERANCE * seconds:
        raise DataError(
            f"{symbol}: bars are {median_s:.0f} s apart (median), which is no known timeframe "
            f"({', '.join(TIMEFRAME_SECONDS)}); pass --timeframe"
        )
    return name


def market_data(frames: Mapping[str, pd.DataFrame], timeframe: str | None = None) -> MarketData:
    """Check, sort and merge per-symbol candle frames into one timeline.

    Raises:
        DataError: a frame is invalid (see :func:`series_from_frame`), or no frames.
        ConfigError: an unknown timeframe.
    """
    if not frames:
        raise DataError("no candle data: give --data FILE, --from-store, or a symbol")
    series = tuple(
        sorted(
            (series_from_frame(sym, frame) for sym, frame in frames.items()),
            key=lambda s: s.symbol,
        )
    )
    if len({s.symbol for s in series}) != len(series):
        raise ConfigError("the same symbol is given twice; pass each --symbol once")
    if timeframe is None:
        timeframe = infer_timeframe(series[0].ts, series[0].symbol)
    elif timeframe not in TIMEFRAME_SECONDS:
        raise ConfigError(
            f"--timeframe {timeframe!r}: choose one of {', '.join(TIMEFRAME_SECONDS)}"
        )
    if len(series) == 1:
        n = len(series[0])
        return MarketData(
            series, timeframe, series[0].ts, np.zeros(n, np.int64), np.arange(n, dtype=np.int64)
        )
    all_ts = np.concatenate([s.ts for s in series])
    codes = np.concatenate([np.full(len(s), k, np.int64) for k, s in enumerate(series)])
    local = np.concatenate([np.arange(len(s), dtype=np.int64) for s in series])
    order = np.lexsort((codes, all_ts))  # by time, then symbol: a stable, repeatable merge
    return MarketData(series, timeframe, all_ts[order], codes[order], local[order])


def check_warmup(data: MarketData, warmup_bars: int, label: str) -> None:
    """Refuse data on which the strategy could never trade.

    A decision needs ``warmup_bars`` closes and its order fills on the next bar, so each
    symbol needs at least ``warmup_bars + 1`` bars.

    Raises:
        DataError: naming the symbol, the bars it has and the bars needed.
    """
    need = warmup_bars + 1
    for s in data.series:
        if len(s) < need:
            raise DataError(
                f"{s.symbol}: {len(s)} bar(s) in the selected range, but {label} needs at least "
                f"{need} ({warmup_bars} to warm up and one more to fill an order); widen "
                "--start/--end or use a shorter warm-up"
            )


def symbol_from_path(path: Path) -> str | None:
    """The one known symbol named in a file name (``DAT_ASCII_EURUSD_M1`` → EURUSD)."""
    from forexd.feeds.candle_checks import symbol_in_name

    return symbol_in_name(path, INSTRUMENTS)  # one rule, shared with `data import`


def conform_timeframe(
    frames: dict[str, pd.DataFrame], timeframe: str | None
) -> dict[str, pd.DataFrame]:
    """Resample frames finer than ``timeframe`` up to it (M1 data run as H1, say).

    Raises:
        ConfigError: an unknown timeframe.
        DataError: data coarser than the timeframe asked for.
    """
    from forexd.feeds.loaders import resample_candles

    if timeframe is None:
        return frames
    if timeframe not in TIMEFRAME_SECONDS:
        raise ConfigError(
            f"--timeframe {timeframe!r}: choose one of {', '.join(TIMEFRAME_SECONDS)}"
        )
    want = TIMEFRAME_SECONDS[timeframe]
    out = {}
    for symbol, frame in frames.items():
        ts = frame["ts"].to_numpy(dtype=np.int64)
        have = TIMEFRAME_SECONDS[infer_timeframe(ts, symbol)] if len(ts) > 1 else want
        if have > want:
            raise DataError(
                f"{symbol}: the data has {have} s bars, coarser than --timeframe {timeframe}; "
                "pass the data's own timeframe or a coarser one"
            )
        out[symbol] = frame if have == want else resample_candles(frame, want)
    return out


def load_frames(request: BacktestRequest) -> tuple[dict[str, pd.DataFrame], tuple[str, ...]]:
    """Read the request's candles (file, store or bundled sample), clipped to start/end.

    Returns:
        The frames by symbol and the symbols, normalised (``eur_usd`` → ``EURUSD``).

    Raises:
        ConfigError: no symbol can be determined, several symbols share one file, or a bad
            ``--start``/``--end``.
        DataError: the file or store has no usable candles.
    """
    from forexd.feeds.loaders import BUNDLED_SYMBOL, bundled_sample_path, load_candles

    symbols = tuple(get_instrument(s).symbol for s in request.symbols)
    if request.from_store:
        if request.db_path is None:
            raise ConfigError("--from-store: no store path was given")
        if not symbols:
            raise ConfigError("--from-store needs --symbol (one or more)")
        if request.timeframe is None:
            raise ConfigError("--from-store needs --timeframe (the store keeps several)")
        from forexd.storage.candles import read_store  # sqlite + the writer: --from-store only

        frames = {s: read_store(request.db_path, s, request.timeframe) for s in symbols}
    else:
        template = request.data
        if template is None:
            template = bundled_sample_path()
            symbols = symbols or (BUNDLED_SYMBOL,)
        if not symbols:
            guessed = symbol_from_path(template)
            if guessed is None:
                raise ConfigError(
                    f"--data {template}: cannot tell the symbol from the file name; pass --symbol"
                )
            symbols = (guessed,)
        if len(symbols) > 1 and "{symbol}" not in str(template):
            raise ConfigError(
                f"--data {template}: several symbols need one file each; put {{symbol}} in the "
                "path (e.g. data/DAT_ASCII_{symbol}_M1_2017.csv.gz)"
            )
        frames = {}
        for sym in symbols:
            path = Path(str(template).replace("{symbol}", sym))
            if not path.exists():
                raise DataError(f"--data {path}: no such file")
            frames[sym] = load_candles(path, request.data_format)
    clipped = {s: clip_frame(f, request.start, request.end) for s, f in frames.items()}
    return clipped, symbols
