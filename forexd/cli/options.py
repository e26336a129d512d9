"""Options that several commands share, each written once.

Choices come from the registries they describe (timeframes, candle formats), so the
command line cannot drift from the configuration or the loaders.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_location(p: argparse.ArgumentParser, *, runtime_dir: bool = True) -> None:
    """``--config``, ``--data-dir`` and (by default) ``--runtime-dir``."""
    p.add_argument("--config", type=Path, help="TOML config file (FOREXD_* env overrides it)")
    p.add_argument("--data-dir", type=Path, help="state directory (default: platform data dir)")
    if runtime_dir:
        p.add_argument("--runtime-dir", type=Path, help="socket/pid directory (default DATA/run)")


def add_json(p: argparse.ArgumentParser) -> None:
    """``--json``: the same data as the human output, errors included."""
    p.add_argument(
        "--json", action="store_true", help="machine-readable output (errors too, as JSON)"
    )


def timeframes() -> tuple[str, ...]:
    """Every timeframe name, shortest first."""
    from forexd.domain.timeframes import TIMEFRAME_SECONDS

    return tuple(TIMEFRAME_SECONDS)


def timeframe_seconds(name: str) -> int:
    """Seconds in one bar of timeframe ``name`` (a name :func:`timeframes` lists)."""
    from forexd.domain.timeframes import TIMEFRAME_SECONDS

    return TIMEFRAME_SECONDS[name]


def add_timeframe(p: argparse.ArgumentParser, *, default: str | None, help: str) -> None:
    """``--timeframe`` with the registry's names as choices."""
    p.add_argument("--timeframe", default=default, choices=timeframes(), help=help)


def add_candle_format(p: argparse.ArgumentParser, *, with_auto_help: str = "") -> None:
    """``--format`` of a candle file (stored as ``args.data_format``)."""
    from forexd.feeds.loaders import FORMATS

    p.add_argument(
        "--format",
        dest="data_format",
        default="auto",
        choices=FORMATS,
        help="candle file format (auto: from the header)" + with_auto_help,
    )
