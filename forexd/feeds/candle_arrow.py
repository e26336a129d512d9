"""The fast path for fixed-layout candle files (histdata, oanda-lean): pyarrow's CSV reader.

Options weighed (a year of EURUSD M1, 371,635 rows, measured for issue 15): pandas' C
parser reads the time column as one Python string per row, which is then re-encoded to
bytes before it is cut into digits — about two thirds of the load. ``pd.read_csv(engine=
"pyarrow")`` hands back the same object column. pyarrow's own reader, asked for the time
column as ``binary``, keeps every stamp in one contiguous byte buffer; for fixed-width
stamps that buffer *is* the byte grid :func:`~forexd.feeds.candle_times.parse_time_grid`
reads, so no Python object is made per row, and the numbers are parsed on all cores.

Only clean files take this path. Anything irregular — a blank line, a wrong column count,
a field that is not a number, an empty or NaN field, a stamp of another width or one that
does not parse — makes :func:`read_fixed` return ``None``, and the caller reads the file
with the pandas path, whose messages name the line and what to do. So the fast path only
has to be right on clean files, and it is checked against the pandas path on real data
(``tests/test_loaders.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from forexd.feeds.candle_checks import F64, I64
from forexd.feeds.candle_parse import FormatSpec
from forexd.feeds.candle_times import parse_time_grid


@dataclass(frozen=True, slots=True)
class FixedTable:
    """The columns of a clean fixed-layout file."""

    wall: I64  # bar times as wall-clock epoch ns (not yet localised)
    values: dict[str, F64]  # every numeric column by name, finite float64
    lines: I64  # 1-based file line of each row


def read_fixed(path: Path, spec: FormatSpec, gz: bool) -> FixedTable | None:
    """Read a clean histdata/oanda-lean file; ``None`` if it is not clean (see module note).

    Args:
        path: the file.
        spec: its format; must have a fixed-width time layout and no header.
        gz: whether the file is gzip-compressed.
    """
    layout = spec.time_layout
    if layout is None or spec.header:
        return None
    try:
        import pyarrow as pa
        import pyarrow.csv as pacsv
    except ImportError:  # pyarrow is a dependency, but a broken install still loads files
        return None
    names = list(spec.columns)
    types = {name: pa.float64() for name in names[1:]}
    types[names[0]] = pa.binary()
    try:
        with pa.input_stream(str(path), compression="gzip" if gz else None) as stream:
            table = pacsv.read_csv(
                stream,
                read_options=pacsv.ReadOptions(column_names=names),
                parse_options=pacsv.ParseOptions(delimiter=spec.sep, ignore_empty_lines=False),
                convert_options=pacsv.ConvertOptions(column_types=types),
            )
    except (pa.ArrowException, OSError, ValueError):
        return None  # the pandas path reads it again and says what is wrong
    n = table.num_rows
    if n == 0 or any(column.null_count for column in table.columns):
        return None
    wall = _stamps(table.column(0).combine_chunks(), layout, n)
    if wall is None:
        return None
    values: dict[str, F64] = {}
    for name in names[1:]:
        column = table.column(name).to_numpy()
        if not np.isfinite(column).all():
            return None
        values[name] = column
    return FixedTable(wall, values, np.arange(1, n + 1, dtype=np.int64))


def _stamps(stamps: object, layout: str, n: int) -> I64 | None:
    """Wall-clock times of a binary column of fixed-width stamps; ``None`` if any is off."""
    width = len(layout)
    _, offsets_buf, data_buf = stamps.buffers()  # type: ignore[attr-defined]
    first = stamps.offset  # type: ignore[attr-defined]
    offsets = np.frombuffer(offsets_buf, dtype=np.int32)[first : first + n + 1]
    if offsets[-1] - offsets[0] != n * width or not (np.diff(offsets) == width).all():
        return None
    data = np.frombuffer(data_buf, dtype=np.uint8)[offsets[0] : offsets[-1]]
    wall, ok = parse_time_grid(data.reshape(n, width), layout, np.ones(n, dtype=bool))
    return wall if bool(ok.all()) else None
