"""Candle loaders: formats, time zones, validation messages, resampling, bundled sample."""

# STYLE.md asks for asserts that read `expected == actual`; SIM300 calls that a Yoda condition.

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forexd.domain import Bar, iso_to_ns, ns_to_iso
from forexd.errors import ConfigError, DataError
from forexd.feeds import loaders
from forexd.feeds.loaders import load_candles, read_candles, resample_candles

HIST_JAN = "20170105 170000;1.051550;1.051970;1.051500;1.051900;0"
HIST_JUL = "20170705 170000;1.134550;1.134970;1.134500;1.134900;0"
LEAN_ROW = "20170102 23:00,1.05266,1.05300,1.04550,1.04568,0,1.05281,1.05320,1.04575,1.04583,0"
CSV_HEADER = "time,open,high,low,close,volume"


def write(tmp_path: Path, lines: list[str], name: str = "candles.csv", gz: bool = False) -> Path:
    """Write ``lines`` (newline-terminated) to a file, gzip-compressed when asked."""
    path = tmp_path / name
    data = "".join(f"{line}\n" for line in lines).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def hist(day: str, hhmmss: str, o: str = "1.1", h: str = "1.2", lo: str = "1.0") -> str:
    """A HistData row with close 1.15 (inside the default high/low)."""
    return f"{day} {hhmmss};{o};{h};{lo};1.15;0"


def utc(text: str) -> int:
    """Epoch ns of an ISO time (naive means UTC)."""
    return iso_to_ns(text)


def data_error(path: Path, fmt: loaders.CandleFormat = "auto", **kwargs: object) -> str:
    """Load ``path`` expecting a DataError; return its message."""
    with pytest.raises(DataError) as info:
        load_candles(path, fmt, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert str(path) in message
    assert "Traceback" not in message
    return message


# -- formats --------------------------------------------------------------------------


def test_histdata_17_new_york_is_22_utc_in_winter_and_21_utc_in_summer(tmp_path: Path) -> None:
    """HistData wall-clock times follow New York daylight saving when converted to UTC."""
    frame = load_candles(write(tmp_path, [HIST_JAN, HIST_JUL]), "histdata")
    assert [utc("2017-01-05T22:00"), utc("2017-07-05T21:00")] == frame["ts"].tolist()


def test_histdata_frame_has_the_documented_columns_and_types(tmp_path: Path) -> None:
    """A loaded frame has ts int64, float64 OHLCV and a 0..n-1 index."""
    frame = load_candles(write(tmp_path, [HIST_JAN, HIST_JUL]), "histdata")
    assert list(loaders.COLUMNS) == list(frame.columns)
    assert ["int64"] + ["float64"] * 5 == [str(t) for t in frame.dtypes]
    assert [0, 1] == frame.index.tolist()
    assert [1.05155, 1.05197, 1.0515, 1.0519, 0.0] == frame.iloc[0, 1:].tolist()


def test_gzip_content_is_detected_whatever_the_file_name(tmp_path: Path) -> None:
    """A gzip-compressed file reads the same as plain text, even without a .gz suffix."""
    plain = load_candles(write(tmp_path, [HIST_JAN, HIST_JUL], "a.csv"))
    packed = load_candles(write(tmp_path, [HIST_JAN, HIST_JUL], "b.txt", gz=True))
    pd.testing.assert_frame_equal(plain, packed)


def test_skipped_spring_forward_time_is_read_with_standard_time(tmp_path: Path) -> None:
    """02:30 on the New York spring-forward night does not exist; it is read as EST."""
    frame = load_candles(write(tmp_path, [hist("20170312", "023000")]), "histdata")
    assert [utc("2017-03-12T07:30")] == frame["ts"].tolist()


def test_single_ambiguous_fall_back_time_is_read_as_the_first_occurrence(tmp_path: Path) -> None:
    """01:30 on the fall-back night, seen once, is the first (EDT) 01:30."""
    frame = load_candles(write(tmp_path, [hist("20171105", "013000")]), "histdata")
    assert [utc("2017-11-05T05:30")] == frame["ts"].tolist()


def test_repeated_fall_back_hour_converts_to_increasing_utc(tmp_path: Path) -> None:
    """A wall clock that repeats 01:00-01:59 reads as EDT first, then EST."""
    rows = [hist("20171105", t) for t in ("003000", "010000", "013000", "010000", "013000")]
    frame = load_candles(write(tmp_path, [*rows, hist("20171105", "020000")]), "histdata")
    expected = ["04:30", "05:00", "05:30", "06:00", "06:30", "07:00"]
    assert [utc(f"2017-11-05T{t}") for t in expected] == frame["ts"].tolist()


def test_tz_override_reads_histdata_times_as_given_zone(tmp_path: Path) -> None:
    """``tz='UTC'`` takes HistData stamps as UTC instead of New York time."""
    result = read_candles(write(tmp_path, [HIST_JUL]), "histdata", tz="UTC")
    assert [utc("2017-07-05T17:00")] == result.frame["ts"].tolist()
    assert "UTC" == result.report.tz


@pytest.mark.parametrize(
    ("side", "expected"),
    [
        ("bid", [1.05266, 1.053, 1.0455, 1.04568]),
        ("ask", [1.05281, 1.0532, 1.04575, 1.04583]),
        ("mid", [1.052735, 1.0531, 1.045625, 1.045755]),
    ],
)
def test_lean_side_picks_bid_ask_or_mid_prices(
    tmp_path: Path, side: loaders.Side, expected: list[float]
) -> None:
    """Lean rows give bid, ask or mid OHLC at their UTC time."""
    frame = load_candles(write(tmp_path, [LEAN_ROW]), "oanda-lean", side=side)
    assert [utc("2017-01-02T23:00")] == frame["ts"].tolist()
    assert expected == pytest.approx(frame.iloc[0, 1:5].tolist(), abs=1e-12)


def test_csv_naive_iso_times_are_utc(tmp_path: Path) -> None:
    """Generic CSV times without an offset are UTC by default."""
    path = write(
        tmp_path,
        [
            CSV_HEADER,
            "2017-01-02 22:00,1.1,1.2,1.0,1.15,5",
            "2017-01-02T23:00:00,1.1,1.2,1.0,1.15,7",
        ],
    )
    frame = load_candles(path, "csv")
    assert [utc("2017-01-02T22:00"), utc("2017-01-02T23:00")] == frame["ts"].tolist()
    assert [5.0, 7.0] == frame["volume"].tolist()


def test_csv_naive_times_use_the_given_zone(tmp_path: Path) -> None:
    """With ``tz``, naive CSV times are wall-clock times in that zone."""
    path = write(tmp_path, [CSV_HEADER, "2017-07-05 17:00,1.1,1.2,1.0,1.15,0"])
    frame = load_candles(path, "csv", tz="America/New_York")
    assert [utc("2017-07-05T21:00")] == frame["ts"].tolist()


def test_csv_times_with_offsets_are_converted_and_ignore_tz(tmp_path: Path) -> None:
    """ISO times with ``Z`` or ``+hh:mm`` carry their own zone."""
    rows = [
        "2017-01-02T22:00:00Z,1.1,1.2,1.0,1.15,0",
        "2017-01-03T00:00:00+01:00,1.1,1.2,1.0,1.15,0",
    ]
    frame = load_candles(write(tmp_path, [CSV_HEADER, *rows]), "csv", tz="Asia/Tokyo")
    assert [utc("2017-01-02T22:00"), utc("2017-01-02T23:00")] == frame["ts"].tolist()


def test_csv_epoch_seconds_are_utc(tmp_path: Path) -> None:
    """Integer and fractional epoch seconds convert exactly to nanoseconds."""
    rows = ["1483394400,1.1,1.2,1.0,1.15,0", "1483398000.5,1.1,1.2,1.0,1.15,0"]
    frame = load_candles(write(tmp_path, [CSV_HEADER, *rows]), "csv")
    assert [1_483_394_400_000_000_000, 1_483_398_000_500_000_000] == frame["ts"].tolist()


def test_csv_without_volume_column_has_zero_volume(tmp_path: Path) -> None:
    """The volume column is optional; without it every bar has volume 0."""
    path = write(tmp_path, ["Time, Open, High, Low, Close", "2017-01-02 22:00,1.1,1.2,1.0,1.15"])
    assert [0.0] == load_candles(path)["volume"].tolist()


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([HIST_JAN], "histdata"),
        ([LEAN_ROW], "oanda-lean"),
        ([CSV_HEADER, "2017-01-02 22:00,1.1,1.2,1.0,1.15,0"], "csv"),
        (["\ufefftime,open,high,low,close", "2017-01-02 22:00,1.1,1.2,1.0,1.15"], "csv"),
    ],
)
def test_auto_detects_the_format_from_the_first_line(
    tmp_path: Path, lines: list[str], expected: str
) -> None:
    """``auto`` tells each format from its first line."""
    path = write(tmp_path, lines)
    assert expected == loaders.sniff_format(path)
    assert expected == read_candles(path).report.format


def test_unknown_format_error_lists_formats_and_the_format_flag(tmp_path: Path) -> None:
    """A first line no format fits gives an error naming every format and --format."""
    message = data_error(write(tmp_path, ["Date;Bid;Ask", "x;1;2"]))
    for expected in ("histdata", "oanda-lean", "csv", "--format", "'Date;Bid;Ask'"):
        assert expected in message


# -- bad input ------------------------------------------------------------------------


def test_missing_file_is_a_data_error(tmp_path: Path) -> None:
    """A path that does not exist fails with DataError naming it."""
    assert "does not exist" in data_error(tmp_path / "nope.csv")


@pytest.mark.parametrize("content", [b"", b"\n \n", gzip.compress(b"")])
def test_empty_file_is_a_data_error(tmp_path: Path, content: bytes) -> None:
    """Empty, blank-only and empty gzip files fail with DataError."""
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    assert "is empty" in data_error(path)


def test_csv_with_only_a_header_has_no_data_rows(tmp_path: Path) -> None:
    """A CSV header without rows fails with DataError."""
    assert "no data rows" in data_error(write(tmp_path, [CSV_HEADER]))


def test_truncated_gzip_file_is_a_data_error(tmp_path: Path) -> None:
    """A cut-off gzip file fails with DataError, not a zlib traceback."""
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(gzip.compress(f"{HIST_JAN}\n".encode() * 5000)[:200])
    assert "cannot be read" in data_error(path)


def test_wrong_column_count_names_the_line_and_the_format(tmp_path: Path) -> None:
    """A Lean file with a missing column fails on line 1, describing the 11 columns."""
    message = data_error(write(tmp_path, [LEAN_ROW.rsplit(",", 1)[0]]))
    assert "line 1 has 10 columns, expected 11" in message
    assert "--format" in message


def test_extra_field_on_a_later_line_names_that_line(tmp_path: Path) -> None:
    """A row with more fields than the ones before fails naming its line."""
    message = data_error(write(tmp_path, [HIST_JAN, HIST_JUL, f"{HIST_JUL};9"]), "histdata")
    assert "line 3 has 7 fields" in message


def test_wrong_csv_header_names_the_expected_header(tmp_path: Path) -> None:
    """A CSV header with other names fails, showing the accepted header."""
    path = write(tmp_path, ["time,o,h,l,c", "2017-01-02 22:00,1.1,1.2,1.0,1.15"])
    message = data_error(path, "csv")
    assert "line 1 header" in message
    assert "time,open,high,low,close" in message


def test_unparsable_number_names_column_line_and_value(tmp_path: Path) -> None:
    """A price that is not a number fails naming the column, line and value."""
    message = data_error(write(tmp_path, [HIST_JAN, hist("20170106", "170000", h="1.2x")]))
    assert "column 'high'" in message
    assert "'1.2x'" in message
    assert "at line 2;" in message


@pytest.mark.parametrize(
    "stamp", ["20170230 170000", "20170006 170000", "2017-01-06 17:00", "20170106 250000"]
)
def test_unparsable_time_names_the_line_and_expected_layout(tmp_path: Path, stamp: str) -> None:
    """Impossible dates, other layouts and hour 25 fail naming the line."""
    message = data_error(write(tmp_path, [HIST_JAN, f"{stamp};1.1;1.2;1.0;1.15;0"]), "histdata")
    assert f"'{stamp}'" in message
    assert "at line 2;" in message
    assert "20170102 020000" in message


@pytest.mark.parametrize("value", ["", "nan", "inf"])
def test_empty_nan_or_infinite_price_is_reported(tmp_path: Path, value: str) -> None:
    """Empty fields, NaN and infinity fail naming the column and line."""
    message = data_error(write(tmp_path, [HIST_JAN, hist("20170106", "170000", o=value)]))
    assert "column 'open' is empty, NaN or infinite" in message
    assert "at line 2;" in message


def test_row_with_too_few_fields_is_reported_as_missing_values(tmp_path: Path) -> None:
    """A short row leaves trailing columns empty, which fails naming its line."""
    message = data_error(write(tmp_path, [HIST_JAN, "20170106 170000;1.1;1.2;1.0"]))
    assert "column 'close'" in message
    assert "too few fields" in message
    assert "at line 2;" in message


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (hist("20170106", "170000", o="0"), "open is zero or negative"),
        (hist("20170106", "170000", lo="-1"), "low is zero or negative"),
        (hist("20170106", "170000", h="0.9", lo="1.0"), "high is below low"),
        (hist("20170106", "170000", o="1.3", h="1.2"), "high is below open or close"),
        (hist("20170106", "170000", lo="1.16"), "low is above open or close"),
    ],
)
def test_inconsistent_prices_fail_naming_the_rule_and_line(
    tmp_path: Path, row: str, problem: str
) -> None:
    """Non-positive prices and highs/lows that do not bound the bar are errors."""
    message = data_error(write(tmp_path, [HIST_JAN, row]))
    assert problem in message
    assert "at line 2;" in message


def test_bad_ask_prices_in_a_lean_file_fail_even_when_reading_bid(tmp_path: Path) -> None:
    """Both price sets of a Lean row are validated, whichever side is returned."""
    bad = LEAN_ROW.replace("1.05320", "1.04000")
    assert "ask_high is below ask_low" in data_error(write(tmp_path, [LEAN_ROW, bad]))


def test_negative_volume_is_an_error(tmp_path: Path) -> None:
    """A negative volume fails naming the line."""
    message = data_error(write(tmp_path, [HIST_JAN, "20170106 170000;1.1;1.2;1.0;1.15;-3"]))
    assert "volume is negative at line 2" in message


def test_duplicate_times_fail_and_suggest_repair(tmp_path: Path) -> None:
    """Two rows with the same time fail naming both lines and the --repair option."""
    message = data_error(write(tmp_path, [HIST_JAN, HIST_JUL, HIST_JUL]))
    assert "duplicate times at line 3" in message
    assert "lines 2 and 3 are both 2017-07-05T21:00:00Z" in message
    assert "--repair" in message


def test_unsorted_times_fail_and_suggest_repair(tmp_path: Path) -> None:
    """A row earlier than the one before it fails naming the lines."""
    message = data_error(write(tmp_path, [HIST_JUL, HIST_JAN]))
    assert "not in order at line 2" in message
    assert "--repair" in message


def test_error_shows_the_first_lines_and_counts_the_rest(tmp_path: Path) -> None:
    """Many bad rows are summarised: five line numbers, then how many more."""
    rows = [hist("20170106", f"17{m:02d}00", lo="1.3") for m in range(12)]
    message = data_error(write(tmp_path, rows))
    assert "at lines 1, 2, 3, 4, 5 and 7 more;" in message


def test_blank_lines_are_skipped_and_line_numbers_stay_true(tmp_path: Path) -> None:
    """Blank lines are not rows, and errors after them still name the right line."""
    path = write(tmp_path, [HIST_JAN, "", HIST_JUL])
    assert 1 == read_candles(path).report.blank_lines
    bad = write(tmp_path, [HIST_JAN, "", "", hist("20170106", "170000", lo="1.3")], "bad.csv")
    assert "at line 4;" in data_error(bad)


def test_repair_sorts_rows_drops_exact_duplicates_and_reports_counts(tmp_path: Path) -> None:
    """``repair=True`` sorts, removes exact duplicates and says how many of each."""
    path = write(tmp_path, [HIST_JUL, HIST_JAN, HIST_JUL, HIST_JUL])
    result = read_candles(path, repair=True)
    assert [utc("2017-01-05T22:00"), utc("2017-07-05T21:00")] == result.frame["ts"].tolist()
    assert [0, 1] == result.frame.index.tolist()
    assert (1, 2) == (result.report.out_of_order, result.report.duplicates_dropped)


def test_repair_refuses_rows_with_the_same_time_and_different_prices(tmp_path: Path) -> None:
    """Conflicting duplicates cannot be repaired: the error names both lines."""
    other = HIST_JUL.replace("1.134900", "1.134800")
    message = data_error(write(tmp_path, [HIST_JAN, HIST_JUL, other]), repair=True)
    assert "lines 2 and 3 have the same time" in message


def test_csv_epoch_milliseconds_are_rejected(tmp_path: Path) -> None:
    """Times that look like epoch milliseconds fail instead of landing in year 48000."""
    path = write(tmp_path, [CSV_HEADER, "1483394400000,1.1,1.2,1.0,1.15,0"])
    assert "milliseconds" in data_error(path)


def test_csv_mixing_offset_and_naive_times_is_rejected(tmp_path: Path) -> None:
    """A time column that mixes naive and offset times fails naming the odd line."""
    rows = ["2017-01-02T22:00Z,1.1,1.2,1.0,1.15,0", "2017-01-02T23:00,1.1,1.2,1.0,1.15,0"]
    message = data_error(write(tmp_path, [CSV_HEADER, *rows, rows[0].replace("22", "21")]))
    assert "mixes times" in message
    assert "at line 3;" in message


def test_csv_unparsable_iso_time_names_the_line(tmp_path: Path) -> None:
    """A CSV time that is not ISO 8601 fails naming its line."""
    rows = ["2017-01-02 22:00,1.1,1.2,1.0,1.15,0", "yesterday,1.1,1.2,1.0,1.15,0"]
    message = data_error(write(tmp_path, [CSV_HEADER, *rows]))
    assert "'yesterday' is not ISO 8601" in message
    assert "at line 3;" in message


def test_unknown_time_zone_is_a_config_error(tmp_path: Path) -> None:
    """A time zone name that is not IANA fails before the file is read."""
    with pytest.raises(ConfigError, match="Mars/Olympus"):
        load_candles(write(tmp_path, [HIST_JAN]), tz="Mars/Olympus")


def test_ask_side_of_a_bid_only_format_is_a_config_error(tmp_path: Path) -> None:
    """Asking for ask prices from a HistData file fails instead of returning bids."""
    with pytest.raises(ConfigError, match="oanda-lean"):
        load_candles(write(tmp_path, [HIST_JAN]), side="ask")


# -- resampling and bars --------------------------------------------------------------


def frame_of(rows: list[tuple[str, float, float, float, float, float]]) -> pd.DataFrame:
    """A candle frame from (ISO time, o, h, l, c, v) tuples."""
    return pd.DataFrame([(utc(t), *v) for t, *v in rows], columns=list(loaders.COLUMNS)).astype(
        {"ts": "int64"}
    )


def test_resample_aggregates_minutes_into_an_hour_bar() -> None:
    """Open is the first, close the last, high/low the extremes, volume the sum."""
    m1 = frame_of(
        [
            ("2017-01-02T22:00", 1.0, 1.2, 0.9, 1.1, 1.0),
            ("2017-01-02T22:01", 1.1, 1.5, 1.0, 1.2, 2.0),
            ("2017-01-02T22:59", 1.2, 1.3, 0.8, 1.25, 3.0),
            ("2017-01-02T23:00", 1.25, 1.3, 1.2, 1.22, 4.0),
        ]
    )
    h1 = resample_candles(m1, 3600)
    expected = [
        [utc("2017-01-02T22:00"), 1.0, 1.5, 0.8, 1.25, 6.0],
        [utc("2017-01-02T23:00"), 1.25, 1.3, 1.2, 1.22, 4.0],
    ]
    assert expected == h1.to_numpy(dtype=object).tolist()
    assert ["int64"] + ["float64"] * 5 == [str(t) for t in h1.dtypes]


def test_resample_aligns_to_epoch_multiples_and_leaves_gaps_empty() -> None:
    """Bars start at multiples of the timeframe since 1970 and empty periods are absent."""
    m1 = frame_of(
        [
            ("2017-01-02T22:37", 1.0, 1.0, 1.0, 1.0, 0.0),
            ("2017-01-03T03:05", 1.0, 1.0, 1.0, 1.0, 0.0),
        ]
    )
    h4 = resample_candles(m1, 4 * 3600)
    assert [utc("2017-01-02T20:00"), utc("2017-01-03T00:00")] == h4["ts"].tolist()


def test_resample_rejects_a_non_positive_timeframe() -> None:
    """A zero timeframe is a programming error."""
    with pytest.raises(ValueError, match="positive"):
        resample_candles(frame_of([]), 0)


def test_frame_to_bars_turns_rows_into_bars(tmp_path: Path) -> None:
    """Each row becomes a Bar with the symbol and plain Python numbers."""
    frame = load_candles(write(tmp_path, [HIST_JAN]))
    expected = [Bar("EURUSD", utc("2017-01-05T22:00"), 1.05155, 1.05197, 1.0515, 1.0519, 0.0)]
    assert expected == loaders.frame_to_bars(frame, "EURUSD")
    assert int is type(next(loaders.iter_bars(frame, "EURUSD")).ts)


# -- bundled sample -------------------------------------------------------------------


def test_bundled_sample_holds_two_years_of_eurusd_h1() -> None:
    """The package ships 12,323 OANDA EURUSD H1 bars, 2017-01-02 23:00 to 2018-12-31 21:00."""
    result = read_candles(loaders.bundled_sample_path(), loaders.BUNDLED_FORMAT)
    ts = result.frame["ts"]
    assert ("EURUSD", "H1") == (loaders.BUNDLED_SYMBOL, loaders.BUNDLED_TIMEFRAME)
    assert "oanda-lean" == result.report.format
    assert 12_323 == len(result.frame)
    assert ("2017-01-02T23:00:00Z", "2018-12-31T21:00:00Z") == (
        ns_to_iso(int(ts.iloc[0])),
        ns_to_iso(int(ts.iloc[-1])),
    )
    assert 0 == int((ts % (3600 * 10**9)).sum())


def test_bundled_sample_has_its_notice() -> None:
    """The attribution file sits beside the sample and names source and licence."""
    notice = (loaders.bundled_sample_path().parent / "NOTICE").read_text()
    for expected in ("QuantConnect/Lean", "Data/forex/oanda/hour/eurusd.zip", "Apache", "OANDA"):
        assert expected in notice


# -- real data (../shared/data/fx) ----------------------------------------------------


def weekly_opens(ts: pd.Series) -> pd.DatetimeIndex:
    """Times of the first bar after each gap of more than a day."""
    values = ts.to_numpy(dtype=np.int64)
    gap = np.diff(values) > 86_400 * 10**9
    return pd.DatetimeIndex(values[1:][gap], tz="UTC")


@pytest.mark.needs_shared
def test_real_histdata_eurusd_loads_with_new_york_weekly_opens(shared_fx_dir: Path) -> None:
    """371,635 M1 bars; every weekly open is 17:00 in New York, summer and winter."""
    path = shared_fx_dir / "histdata_m1_2017" / "DAT_ASCII_EURUSD_M1_2017.csv.gz"
    frame = load_candles(path, "histdata")
    assert 371_635 == len(frame)
    assert utc("2017-01-02T07:00") == frame["ts"].iloc[0]  # 02:00 EST
    assert utc("2017-12-29T21:57") == frame["ts"].iloc[-1]  # 16:57 EST
    opens = weekly_opens(frame["ts"])
    new_york = opens.tz_convert("America/New_York")
    assert {(17, 0)} == set(zip(new_york.hour, new_york.minute, strict=True))
    assert {21, 22} == set(opens.hour)


@pytest.mark.needs_shared
def test_real_lean_hourly_eurusd_loads_with_utc_weekly_opens(shared_fx_dir: Path) -> None:
    """74,439 H1 bars from 2007 to 2018; Sunday opens are 22:00 UTC or 21:00 UTC in summer."""
    frame = load_candles(shared_fx_dir / "lean_oanda" / "hour" / "eurusd.csv.gz", side="mid")
    ts = frame["ts"]
    assert 74_439 == len(frame)
    assert (utc("2007-01-01T21:00"), utc("2018-12-31T21:00")) == (ts.iloc[0], ts.iloc[-1])
    opens = weekly_opens(ts)
    assert {21, 22} == set(opens[opens.day_of_week == 6].hour)


@pytest.mark.needs_shared
def test_histdata_resampled_to_h1_lines_up_with_oanda_hours(shared_fx_dir: Path) -> None:
    """Every OANDA hour of 2017 is a HistData H1 bar, and summer closes agree within a pip."""
    m1 = load_candles(shared_fx_dir / "histdata_m1_2017" / "DAT_ASCII_EURUSD_M1_2017.csv.gz")
    h1 = resample_candles(m1, 3600).set_index("ts")
    lean = load_candles(loaders.bundled_sample_path()).set_index("ts")
    lean = lean.loc[h1.index[0] : h1.index[-1]]
    assert 0 == len(lean.index.difference(h1.index))
    summer = lean.index[(lean.index >= utc("2017-06-01")) & (lean.index < utc("2017-09-01"))]
    gap = (h1.loc[summer, "close"] - lean.loc[summer, "close"]).abs()
    assert 0.0001 > gap.median()


@pytest.mark.needs_shared
def test_bundled_sample_rows_are_the_lean_rows_unchanged(shared_fx_dir: Path) -> None:
    """The bundled file is the 2017-2018 rows of the Lean file, byte for byte."""
    with gzip.open(shared_fx_dir / "lean_oanda" / "hour" / "eurusd.csv.gz", "rt") as fh:
        source = [line.rstrip("\n") for line in fh if line.startswith(("2017", "2018"))]
    with gzip.open(loaders.bundled_sample_path(), "rt") as fh:
        bundled = fh.read().splitlines()
    assert source == bundled


def _read_both(monkeypatch: pytest.MonkeyPatch, path: Path, **kw: str) -> tuple[object, object]:
    """The file read by the pyarrow fast path and by the pandas path."""
    fast = read_candles(path, **kw)  # type: ignore[arg-type]
    monkeypatch.setattr(loaders, "read_fixed", lambda *_: None)
    slow = read_candles(path, **kw)  # type: ignore[arg-type]
    monkeypatch.undo()
    return fast, slow


@pytest.mark.needs_shared
@pytest.mark.parametrize(
    ("relative", "side"),
    [
        ("histdata_m1_2017/DAT_ASCII_EURUSD_M1_2017.csv.gz", "bid"),
        ("histdata_m1_2017/DAT_ASCII_USDJPY_M1_2017.csv.gz", "bid"),
        ("lean_oanda/hour/eurusd.csv.gz", "mid"),
    ],
)
def test_fast_reader_gives_the_pandas_readers_frame_bit_for_bit(
    shared_fx_dir: Path, monkeypatch: pytest.MonkeyPatch, relative: str, side: str
) -> None:
    """pyarrow and pandas read the same real file to identical columns and report."""
    fast, slow = _read_both(monkeypatch, shared_fx_dir / relative, side=side)
    assert slow.report == fast.report  # type: ignore[attr-defined]
    pd.testing.assert_frame_equal(slow.frame, fast.frame, check_exact=True)  # type: ignore[attr-defined]


def test_fast_reader_declines_a_file_it_cannot_read_cleanly(tmp_path: Path) -> None:
    """A blank line, a bad number or an odd stamp sends the file to the pandas path."""
    from forexd.feeds.candle_arrow import read_fixed
    from forexd.feeds.candle_parse import HISTDATA

    good = [hist("20170105", "170000"), hist("20170105", "170100")]
    assert read_fixed(write(tmp_path, good, "ok.csv"), HISTDATA, False) is not None
    for name, rows in {
        "blank": [good[0], "", good[1]],
        "word": [good[0], hist("20170105", "170100", o="x")],
        "nan": [good[0], hist("20170105", "170100", o="nan")],
        "stamp": [good[0], hist("20170105", "17010")],
        "date": [good[0], hist("20170231", "170100")],
        "fields": [good[0], good[1] + ";9"],
    }.items():
        assert read_fixed(write(tmp_path, rows, f"{name}.csv"), HISTDATA, False) is None, name
