"""Backtests that run the live code: the event-driven engine drives the daemon's own
``SymbolCore`` and ``Ledger`` on a simulated clock; the vectorised engine gets the same fills
with numpy for sweeps. See ``docs/backtesting.md``.

Public API (what ``forexd backtest`` uses)::

    request = BacktestRequest(...)   # the CLI: forexd.cli.backtest_args.request_from_args
    result = run_grid(request, workers=n) if request.grid else run_backtest(request)
    console.print(render_summary(result)); json.dumps(result.to_dict())
    write_report(result, Path("out.html"), png_dir=None)

Imports are lazy (PEP 562 ``__getattr__``): ``from forexd.backtest import run_backtest``
loads the engine, not the sweep pool, the HTML report or the store — whole-process
``forexd backtest`` time is mostly imports (issue 15).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from forexd.backtest.grid import GridResult, GridRow, run_grid
    from forexd.backtest.metrics import RANK_METRICS, Metrics
    from forexd.backtest.report import write_report
    from forexd.backtest.request import BacktestRequest
    from forexd.backtest.result import BacktestResult
    from forexd.backtest.runner import run_backtest
    from forexd.backtest.summary import render_summary

_HOME = {
    "GridResult": "grid",
    "GridRow": "grid",
    "run_grid": "grid",
    "RANK_METRICS": "metrics",
    "Metrics": "metrics",
    "write_report": "report",
    "BacktestRequest": "request",
    "BacktestResult": "result",
    "run_backtest": "runner",
    "render_summary": "summary",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"forexd.backtest.{home}"), name)


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
