"""Backtests that run the live code: the event-driven engine drives the daemon's own
``SymbolCore`` and ``Ledger`` on a simulated clock; the vectorised engine gets the same fills
with numpy for sweeps. See ``docs/backtesting.md``.

Public API (what ``forexd backtest`` uses)::

    request = BacktestRequest(...)   # the CLI: forexd.cli.backtest_args.request_from_args
    result = run_grid(request, workers=n) if request.grid else run_backtest(request)
    console.print(render_summary(result)); json.dumps(result.to_dict())
    write_report(result, Path("out.html"), png_dir=None)
"""

from forexd.backtest.grid import GridResult, GridRow, run_grid
from forexd.backtest.metrics import RANK_METRICS, Metrics
from forexd.backtest.report import write_report
from forexd.backtest.request import BacktestRequest
from forexd.backtest.result import BacktestResult
from forexd.backtest.runner import run_backtest
from forexd.backtest.summary import render_summary

__all__ = [
    "RANK_METRICS",
    "BacktestRequest",
    "BacktestResult",
    "GridResult",
    "GridRow",
    "Metrics",
    "render_summary",
    "run_backtest",
    "run_grid",
    "write_report",
]
