"""A terminal summary of a backtest or a sweep (rich renderables, printed by ``cli.py``)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.table import Table

from forexd.backtest.metrics import Metrics
from forexd.backtest.result import BacktestResult
from forexd.domain import ns_to_iso

if TYPE_CHECKING:
    from forexd.backtest.grid import GridResult

TOP_ROWS = 10  # sweep points shown


def _pct(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value * 100:,.2f} %"


def _num(value: float, digits: int = 2) -> str:
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:,.{digits}f}"


def metric_rows(m: Metrics) -> list[tuple[str, str]]:
    """Label and formatted value of every metric, in reading order."""
    return [
        ("Final equity", f"{_num(m.final_equity)} USD"),
        ("Total return", _pct(m.total_return)),
        ("Annual return", _pct(m.annual_return)),
        ("Annual volatility", _pct(m.annual_volatility)),
        ("Sharpe", _num(m.sharpe)),
        ("Sortino", _num(m.sortino)),
        ("Max drawdown", _pct(-m.max_drawdown)),
        (
            "Max drawdown duration",
            f"{_num(m.max_drawdown_duration_days, 1)} days ({m.max_drawdown_duration_bars:,} bars)",
        ),
        ("Trades", f"{m.trades:,}"),
        ("Win rate", _pct(m.win_rate)),
        ("Profit factor", _num(m.profit_factor)),
        ("Average trade", f"{_num(m.avg_trade)} USD"),
        ("Exposure", _pct(m.exposure)),
        ("Bars", f"{m.bars:,} ({_num(m.bars_per_year, 0)} per year)"),
    ]


def _run_table(result: BacktestResult) -> Table:
    d = result.data
    params = ", ".join(f"{k}={v}" for k, v in result.params.items())
    table = Table(title=f"{result.request.strategy}({params})", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("Symbols", ", ".join(d.symbols))
    table.add_row(
        "Period", f"{d.timeframe} {ns_to_iso(int(d.ts[0]))} .. {ns_to_iso(int(d.ts[-1]))}"
    )
    c = result.request.costs
    table.add_row(
        "Costs",
        f"spread {c.spread_pips} pips, slippage {c.slippage_pips} pips, "
        f"{c.commission_per_million} USD/M",
    )
    table.add_row("Engine", f"{result.engine} ({result.elapsed_s:.2f} s)")
    for label, value in metric_rows(result.metrics):
        table.add_row(label, value)
    table.add_row("Commission paid", f"{_num(result.commission)} USD")
    if result.request.rollover:
        table.add_row("Financing", f"{_num(result.financing)} USD")
    for pos in result.open_positions:
        table.add_row(
            f"Open {pos.symbol}",
            f"{pos.units:+,} @ {pos.avg_price} ({_num(pos.unrealized_pnl)} USD)",
        )
    return table


def _grid_table(result: GridResult) -> Table:
    table = Table(
        title=f"Sweep: {len(result.rows)} points ranked by {result.rank_by} "
        f"({result.engine}, {result.workers} worker(s), {result.elapsed_s:.2f} s)"
    )
    table.add_column("#", justify="right")
    for axis in result.axes:
        table.add_column(axis, justify="right")
    for name in ("sharpe", "total_return", "max_drawdown", "trades"):
        table.add_column(name, justify="right")
    for rank, row in enumerate(result.rows[:TOP_ROWS], start=1):
        m = row.metrics
        table.add_row(
            str(rank),
            *(str(row.params[a]) for a in result.axes),
            _num(m.sharpe),
            _pct(m.total_return),
            _pct(-m.max_drawdown),
            f"{m.trades:,}",
        )
    if result.skipped:
        table.caption = f"{len(result.skipped)} invalid point(s) skipped"
    return table


def render_summary(result: BacktestResult | GridResult) -> RenderableType:
    """A rich renderable: the run's metrics, or the sweep's ranking and its best run."""
    if isinstance(result, BacktestResult):
        return _run_table(result)
    parts: list[RenderableType] = [_grid_table(result)]
    if result.best is not None:
        parts.append(_run_table(result.best))
    return Group(*parts)
