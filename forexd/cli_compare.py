"""``forexd models compare ID [ID ...] --data FILE``: rank registered models on one data set.

Hooked into ``forexd models`` (``cli_ml.py``) by :func:`add_compare_args` and
:func:`cmd_compare`. The models are evaluated in parallel in spawned workers within the
compute budget (``train_workers`` processes of ``blas_threads`` threads), one semaphore per
device, a timeout on every wait and evaluation (see :mod:`forexd.models.compare`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from forexd.errors import ConfigError


def add_compare_args(models: argparse.ArgumentParser) -> None:
    """Options of ``forexd models compare`` (other actions ignore them)."""
    from forexd.feeds.loaders import FORMATS

    models.add_argument("more_ids", nargs="*", metavar="ID", help="compare: further models")
    models.add_argument("--data", help="compare: candle file to trade the models on")
    models.add_argument("--format", default="auto", choices=FORMATS, help="compare: file format")
    models.add_argument("--timeframe", default="H1", help="compare: bar size (default H1)")
    models.add_argument(
        "--device", default="cpu", help="compare: cpu, cuda or cuda:N (cuda is cuda:0)"
    )
    models.add_argument(
        "--timeout-s", type=float, default=300.0, help="compare: per-model evaluation limit"
    )
    models.add_argument("--spread-pips", type=float, default=0.8, help="compare: full spread")
    models.add_argument("--slippage-pips", type=float, default=0.0, help="compare: slippage")
    models.add_argument(
        "--commission-per-million", type=float, default=0.0, help="compare: commission, USD"
    )
    models.add_argument("--units", type=int, default=10_000, help="compare: position size")


def cmd_compare(args: argparse.Namespace, settings: Any, registry: Any) -> int:
    """Run the comparison and print the ranking (a table, or JSON with ``--json``).

    Raises:
        ConfigError: no ``--data``, no id, models of different symbols, a bad number.
        ForexdError: unknown ids, unreadable data, a device that is not there.
    """
    from pathlib import Path

    from forexd.brokers.ledger import CostModel
    from forexd.cli_ml import _budget, _load
    from forexd.models.compare import compare_models
    from forexd.models.compare_worker import ModelRef
    from forexd.models.device import choose_device
    from forexd.models.trainconfig import periods_per_year

    ids = [i for i in [args.model_id, *args.more_ids] if i]
    if not ids:
        raise ConfigError("usage: forexd models compare ID [ID ...] --data FILE")
    if not args.data:
        raise ConfigError("forexd models compare: --data FILE is required (the bars to trade)")
    if args.units < 1 or args.timeout_s <= 0:
        raise ConfigError("--units and --timeout-s must be positive")
    for flag, value in (("--spread-pips", args.spread_pips), ("--slippage-pips",
                        args.slippage_pips), ("--commission-per-million",
                        args.commission_per_million)):  # fmt: skip
        if not value >= 0:
            raise ConfigError(f"{flag} {value}: must be zero or a positive number")
    records = [registry.get(i) for i in dict.fromkeys(ids)]
    symbols = sorted({r.symbol for r in records})
    if len(symbols) != 1:
        raise ConfigError(f"models of different symbols ({', '.join(symbols)}) cannot be compared")
    device = choose_device(args.device)
    load_args = argparse.Namespace(symbol=symbols[0], data=Path(args.data), format=args.format,
                                   timeframe=args.timeframe)  # fmt: skip
    symbol, candles, seconds = _load(load_args)
    budget = _budget(settings)
    result = compare_models(
        [ModelRef(r.model_id, str(registry.artifact_path(r))) for r in records],
        candles,
        symbol=symbol,
        device=device,
        workers=budget.train_workers,
        threads_per_worker=budget.blas_threads,
        timeout_s=args.timeout_s,
        costs=CostModel(args.spread_pips, args.slippage_pips, args.commission_per_million),
        units=args.units,
        periods_per_year=periods_per_year(seconds),
    )
    out = result.to_dict() | {"symbol": symbol, "data": str(args.data), "bars": len(candles)}
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{symbol}: {len(records)} models on {len(candles)} bars ({result.device})")
    for col in ("rank", "model", "kind", "status", "P&L USD", "sharpe", "max dd %", "trades",
                "in-sample bars", "seconds"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("model", "kind", "status") else "right")
    for o in result.outcomes:
        m = o.result.get("metrics", {})
        table.add_row(
            str(o.rank or "-"), o.name, str(o.result.get("kind", "")), o.status if o.status ==
            "ok" else f"{o.status}: {o.error}", f"{o.result['pnl']:,.2f}" if o.result else "",
            f"{m['sharpe']:.2f}" if m else "", f"{100 * m['max_drawdown']:.2f}" if m else "",
            str(m.get("trades", "")), str(o.result.get("in_sample_bars", "")), f"{o.seconds:.1f}",
        )  # fmt: skip
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    return 0
