"""Candle frames: clipping them to a date range (the store reads them: storage/candles.py).

A candle frame is a pandas DataFrame with columns ``ts`` (int64 epoch ns UTC, bar open),
``open``, ``high``, ``low``, ``close``, ``volume`` — strictly increasing ``ts``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forexd.domain import iso_to_ns
from forexd.errors import ConfigError


def clip_frame(frame: pd.DataFrame, start: str | None, end: str | None) -> pd.DataFrame:
    """Keep bars with ``start <= ts < end`` (ISO dates/times, UTC if naive).

    Raises:
        ConfigError: a bound is not an ISO 8601 date/time.
    """
    if start is None and end is None:
        return frame
    ts = frame["ts"].to_numpy(dtype=np.int64)
    mask = np.ones(len(ts), dtype=bool)
    for name, value, keep_after in (("start", start, True), ("end", end, False)):
        if value is None:
            continue
        try:
            bound = iso_to_ns(value)
        except ValueError:
            raise ConfigError(
                f"feed.{name} = {value!r} is not an ISO 8601 date/time (e.g. 2018-03-01)"
            ) from None
        mask &= ts >= bound if keep_after else ts < bound
    clipped: pd.DataFrame = frame.loc[mask].reset_index(drop=True)
    return clipped
