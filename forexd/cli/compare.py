"""``forexd models compare ID [ID ...] --data FILE``: rank registered models on one data set.

An action of ``forexd models`` (:mod:`forexd.cli.ml` adds these options with
:func:`add_compare_args` and calls :func:`handle_compare`). The models are evaluated in
parallel in spawned workers within the compute budget (``train_workers`` processes of
``blas_threads`` threads), one semaphore per device, a timeout on every wait and evaluation
(see :mod:`forexd.rl.compare`). Output goes through :class:`~forexd.cli.output.Output`, so
``--json`` and errors behave as in every other command.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forexd.errors import ConfigError

if TYPE_CHECKING:
    from forexd.cli.output import Output
    from forexd.config import Settings
    from forexd.rl.compare import CompareResult
    from forexd.storage.model_registry import ModelRegistry

DEFAULT_TIMEOUT_S = 300.0
DEFAULT_UNITS = 10_000  # the ml strategy's default position size


def add_compare_args(models: argparse.ArgumentParser) -> None:
    """Options of ``forexd models compare`` (other actions ignore them)."""
    from forexd.cli.options import add_candle_format, add_timeframe

    models.add_argument("more_ids", nargs="*", metavar="ID", help="compare: further models")
    models.add_argument("--data", type=Path, help="compare: candle file to trade the models on")
    add_candle_format(models)
    add_timeframe(models, default="H1", help="compare: bar size; finer files are resampled")
    models.add_argument(
        "--device", default="cpu", help="compare: cpu, cuda or cuda:N (cuda is cuda:0)"
    )
    models.add_argument(
        "--timeout-s",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help="compare: per-model evaluation limit in seconds",
    )
    models.add_argument("--spread-pips", type=float, default=0.8, help="compare: full spread")
    models.add_argument("--slippage-pips", type=float, default=0.0, help="compare: slippage")
    models.add_argument(
        "--commission-per-million", type=float, default=0.0, help="compare: commission, USD"
    )
    models.add_argument("--units", type=int, default=DEFAULT_UNITS, help="compare: position size")


def _check(args: argparse.Namespace) -> list[str]:
    ids = [i for i in [args.model_id, *args.more_ids] if i]
    if not ids:
        raise ConfigError("usage: forexd models compare ID [ID ...] --data FILE")
    if args.data is None:
        raise ConfigError("forexd models compare: --data FILE is required (the bars to trade)")
    if args.units < 1:
        raise ConfigError(f"--units {args.units}: must be a positive number of units")
    if not args.timeout_s > 0:
        raise ConfigError(f"--timeout-s {args.timeout_s}: must be a positive number of seconds")
    for flag, value in (
        ("--spread-pips", args.spread_pips),
        ("--slippage-pips", args.slippage_pips),
        ("--commission-per-million", args.commission_per_million),
    ):
        if not value >= 0:
            raise ConfigError(f"{flag} {value}: must be zero or a positive number")
    return list(dict.fromkeys(ids))


def handle_compare(
    args: argparse.Namespace, out: Output, settings: Settings, registry: ModelRegistry
) -> int:
    """Run the comparison and print the ranking (a table, or JSON with ``--json``).

    Raises:
        ConfigError: no ``--data``, no id, models of different symbols, a bad number.
        ForexdError: unknown ids, unreadable data, a device that is not there.
    """
    from forexd.brokers.ledger import CostModel
    from forexd.cli.ml_data import cli_budget, load_candle_file
    from forexd.cli.output import Spinner
    from forexd.models.device import choose_device
    from forexd.models.trainconfig import periods_per_year
    from forexd.rl.compare import compare_models
    from forexd.rl.compare_worker import ModelRef

    ids = _check(args)
    records = [registry.get(i) for i in ids]
    symbols = sorted({r.symbol for r in records})
    if len(symbols) != 1:
        raise ConfigError(f"models of different symbols ({', '.join(symbols)}) cannot be compared")
    device = choose_device(args.device)
    load_args = argparse.Namespace(
        symbol=symbols[0], data=args.data, data_format=args.data_format, timeframe=args.timeframe
    )
    with Spinner(out, f"reading {args.data}"):
        symbol, candles, seconds = load_candle_file(load_args)
    budget = cli_budget(settings)
    with Spinner(out, f"comparing {len(records)} models on {device}"):
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
    data = result.to_dict() | {"symbol": symbol, "data": str(args.data), "bars": len(candles)}
    return out.result(data, lambda console: console.print(_table(result, symbol, len(candles))))


def _table(result: CompareResult, symbol: str, bars: int) -> Any:
    from rich.table import Table

    from forexd.cli.output import money, num

    table = Table(title=f"{symbol}: {len(result.outcomes)} models on {bars} bars ({result.device})")
    for col in ("rank", "model", "kind", "status", "P&L USD", "sharpe", "max dd %", "trades",
                "in-sample bars", "seconds"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("model", "kind", "status") else "right")
    for o in result.outcomes:
        m = o.result.get("metrics", {})
        status = o.status if o.status == "ok" else f"{o.status}: {o.error}"
        table.add_row(
            str(o.rank or "-"), o.name, str(o.result.get("kind", "")), status,
            money(o.result["pnl"]) if o.result else "",
            num(m["sharpe"], 2) if m else "", num(100 * m["max_drawdown"], 2) if m else "",
            str(m.get("trades", "")), str(o.result.get("in_sample_bars", "")),
            f"{o.seconds:.1f}",
        )  # fmt: skip
    return table
