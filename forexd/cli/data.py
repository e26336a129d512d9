"""``forexd data import``: load a candle file into the SQLite store, after checking it.

Besides the file's own checks (OHLC, order, duplicates), two claims the user makes are
checked against the file: the bar spacing must be ``--timeframe``'s, and a file whose name
names a symbol must be imported under that symbol. A mistake there would store, say, a year
of one-minute rows labelled H1, which every later backtest reads without complaint.
``--force`` skips these two checks (never the file's own).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from forexd.cli.options import add_candle_format, add_json, add_location, add_timeframe
from forexd.cli.output import Output, Spinner
from forexd.cli.parser import bind


def configure(name: str, p: argparse.ArgumentParser) -> None:
    """Add ``data import``."""
    actions = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    imp = actions.add_parser("import", help="load a candle file into the SQLite store")
    imp.add_argument("file", type=Path)
    imp.add_argument("--symbol", required=True, help="instrument the file holds, e.g. EURUSD")
    add_timeframe(imp, default="M1", help="the file's bar size (checked against the file)")
    add_candle_format(imp)
    imp.add_argument(
        "--repair",
        action="store_true",
        help="sort unsorted rows and drop exact duplicates instead of failing",
    )
    imp.add_argument(
        "--force",
        action="store_true",
        help="store even if the bar spacing or the file name disagree with the flags",
    )
    add_json(imp)
    add_location(imp)
    bind(imp, handle_import)


def handle_import(args: argparse.Namespace, out: Output) -> int:
    """Check and import one candle file."""
    from forexd.cli.options import timeframe_seconds, timeframes
    from forexd.config import load_settings
    from forexd.daemon.paths import resolve_paths
    from forexd.domain import INSTRUMENTS, get_instrument
    from forexd.feeds import candle_checks
    from forexd.feeds.candle_import import import_candles

    symbol = get_instrument(args.symbol).symbol
    if not args.force:
        candle_checks.check_symbol_name(args.file, symbol, INSTRUMENTS)
    settings = load_settings(args.config, data_dir=args.data_dir, runtime_dir=args.runtime_dir)
    paths = resolve_paths(settings)
    with Spinner(out, f"reading {args.file}") as spinner:

        def check(frame: Any) -> None:
            if not args.force:
                tf = {name: timeframe_seconds(name) for name in timeframes()}
                ts = frame["ts"].to_numpy(dtype="int64")
                candle_checks.check_spacing(args.file, ts, args.timeframe, tf)
            spinner.update(f"writing {len(frame):,} {args.timeframe} candles to {paths.db}")

        result = import_candles(
            paths.db,
            args.file,
            symbol,
            args.timeframe,
            args.data_format,
            repair=args.repair,
            check=check,
        )
    sentence = (
        f"imported {result['inserted']:,} new {args.timeframe} candles for {symbol} from "
        f"{args.file} into {paths.db} ({result['already_stored']:,} already stored, "
        f"{result['first']} .. {result['last']})"
    )
    return out.result(result, sentence)
