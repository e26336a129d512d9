"""Importing a candle file into the store (``forexd data import``).

The feeds read and check the file (:func:`~forexd.feeds.loaders.read_candles`); the store
only writes the checked frame (:func:`~forexd.storage.candles.write_candles`). So the
dependency runs one way, feeds → storage, and a bad file is rejected before anything is
written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from forexd.domain import ns_to_iso
from forexd.feeds.loaders import read_candles
from forexd.storage.candles import write_candles


def import_candles(
    db_path: Path,
    file: Path,
    symbol: str,
    timeframe: str,
    fmt: str,
    *,
    repair: bool = False,
    check: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Validate ``file`` completely, then insert its candles in one transaction.

    Existing candles are never overwritten (``INSERT OR IGNORE``): a re-import is
    idempotent, and a bad file is rejected before anything is written.

    Args:
        check: called with the parsed frame before anything is written; it raises to
            refuse the file (the CLI checks bar spacing against ``timeframe`` there).

    Raises:
        DataError: the file is missing or invalid (nothing is written).
        StorageError: the store cannot be opened.
    """
    loaded = read_candles(file, fmt, repair=repair)  # type: ignore[arg-type]
    frame, report = loaded.frame, loaded.report
    if check is not None:
        check(frame)
    inserted = write_candles(db_path, frame, symbol, timeframe)
    ts = frame["ts"]
    return {
        "symbol": symbol,
        "timeframe": timeframe,
        "file": str(file),
        "rows": len(frame),
        "inserted": inserted,
        "already_stored": len(frame) - inserted,
        "format": report.format,
        "rows_reordered": report.out_of_order,
        "duplicates_dropped": report.duplicates_dropped,
        "first": ns_to_iso(int(ts.iloc[0])),
        "last": ns_to_iso(int(ts.iloc[-1])),
    }
