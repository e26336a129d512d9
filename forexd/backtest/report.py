"""A backtest report: one self-contained HTML file, optionally the figures as PNG files.

Self-contained means it opens from a USB stick on a machine without network: the CSS is
inline and every figure is a PNG embedded as a base64 ``data:`` URI (SVG would be larger
for a year of M1 and slower to render). Nothing is fetched, nothing runs (no script).
The HTML is written to a temporary file and renamed, so a reader never sees half a report.
"""

from __future__ import annotations

import base64
import html
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from forexd import __version__
from forexd.backtest import figures
from forexd.backtest.grid import GridResult
from forexd.backtest.metrics import RANK_METRICS, drawdown, monthly_returns
from forexd.backtest.result import BacktestResult
from forexd.backtest.summary import metric_rows
from forexd.backtest.trades import EXIT_REASONS
from forexd.domain import ns_to_iso

TRADE_ROWS = 50  # most recent trades listed
SWEEP_ROWS = 20  # best sweep points listed
PERCENT_METRICS = {"total_return", "annual_return", "annual_volatility", "max_drawdown"}

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:1150px;color:#222}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid
#ddd;padding-bottom:4px}.sub{color:#666;margin-top:0}
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 8px;border-bottom:1px solid
#eee;text-align:right}th{background:#f5f5f5}td.l,th.l{text-align:left}
.kv td:first-child{text-align:left;font-weight:600}img{max-width:100%;display:block;
margin:8px 0}.grid{display:flex;gap:40px;flex-wrap:wrap}
tr.exit-stop_loss td,tr.exit-trailing_stop td{background:#fdecea}
tr.exit-take_profit td{background:#e8f5e9}
"""


@dataclass(frozen=True, slots=True)
class Figure:
    """One rendered figure."""

    name: str  # file stem and element id
    title: str
    png: bytes

    def img(self) -> str:
        """An ``<img>`` element with the PNG inline."""
        data = base64.b64encode(self.png).decode("ascii")
        return (
            f'<img id="{self.name}" alt="{html.escape(self.title)}" '
            f'src="data:image/png;base64,{data}">'
        )


def _e(value: object) -> str:
    return html.escape(str(value))


def _cell(metric: str, value: float | int | None) -> str:
    if value is None:
        return "n/a"
    if metric in PERCENT_METRICS:
        return f"{100 * value:.2f} %"
    return f"{value:,}" if isinstance(value, int) else f"{value:.3f}"


def _run_figures(result: BacktestResult) -> list[Figure]:
    d, acct = result.data, result.account
    out = [
        Figure("equity", "Equity", figures.equity_png(d.ts, acct.equity, result.initial_balance)),
        Figure(
            "drawdown",
            "Drawdown",
            figures.drawdown_png(d.ts, drawdown(acct.equity, result.initial_balance)),
        ),
    ]
    t = result.trades
    for code, series in enumerate(d.series):
        mine = t.code == code
        png = figures.trades_png(
            series.symbol,
            series.ts,
            series.close,
            (t.entry_ts[mine], t.entry_price[mine], t.side[mine]),
            (t.exit_ts[mine], t.exit_price[mine]),
            int(np.count_nonzero(mine)),
        )
        out.append(Figure(f"trades_{series.symbol}", f"{series.symbol} trades", png))
    years, table = monthly_returns(d.ts, acct.equity, result.initial_balance)
    out.append(Figure("monthly", "Monthly returns", figures.monthly_png(table, years)))
    return out


def _sweep_figure(result: GridResult) -> Figure:
    points = [r.params for r in result.rows]
    values = [r.metrics.value(result.rank_by) for r in result.rows]
    png = figures.param_png(
        result.axes, points, values, result.rank_by, RANK_METRICS[result.rank_by]
    )
    return Figure("sweep", f"Sweep: {result.rank_by}", png)


def _monthly_table(result: BacktestResult) -> str:
    years, table = monthly_returns(result.data.ts, result.account.equity, result.initial_balance)
    head = "".join(f"<th>{m}</th>" for m in figures.MONTHS)
    rows = []
    for year, values in zip(years, table, strict=True):
        cells = []
        for v in values:
            if not math.isfinite(v):
                cells.append("<td></td>")
                continue
            shade = min(abs(v) / 0.05, 1.0)  # full colour at ±5 % a month
            colour = f"rgba({'44,160,44' if v >= 0 else '214,39,40'},{0.15 + 0.55 * shade:.2f})"
            cells.append(f'<td style="background:{colour}">{100 * v:.2f}</td>')
        rows.append(f"<tr><th>{year}</th>{''.join(cells)}</tr>")
    return f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table>"


def _trade_table(result: BacktestResult) -> str:
    records = result.trades.records(result.data.symbols)[-TRADE_ROWS:]
    if not records:
        return "<p>No closed trades.</p>"
    cols = (
        "symbol", "side", "units", "entry_time", "entry_price", "exit_time", "exit_price", "exit",
    )  # fmt: skip
    head = "".join(f"<th>{c}</th>" for c in (*cols, "pnl"))
    body = "".join(
        f'<tr class="exit-{_e(r["exit"])}">'
        + "".join(f"<td>{_e(r[c])}</td>" for c in cols)
        + f"<td>{r['pnl']:.2f}</td></tr>"
        for r in records
    )
    why = result.trades.exit_reason
    counts = ", ".join(
        f"{int((why == i).sum())} by {name.replace('_', ' ')}"
        for i, name in enumerate(EXIT_REASONS)
        if i and (why == i).any()
    )
    note = (
        f"<p>The last {len(records)} of {len(result.trades)} closed trades (P&amp;L in USD, net)."
        + (f" Exits: {counts}; the rest by the strategy's signal." if counts else "")
    )
    return f"{note}</p><table><tr>{head}</tr>{body}</table>"


def _run_section(result: BacktestResult, figs: list[Figure]) -> str:
    d = result.data
    params = ", ".join(f"{k}={v}" for k, v in result.params.items())
    c = result.request.costs
    info = [
        ("Symbols", ", ".join(d.symbols)),
        ("Bars", f"{d.timeframe}, {ns_to_iso(int(d.ts[0]))} .. {ns_to_iso(int(d.ts[-1]))}"),
        ("Engine", result.engine),
        (
            "Costs",
            f"spread {c.spread_pips} pips, slippage {c.slippage_pips} pips, "
            f"commission {c.commission_per_million} USD/M",
        ),
        ("Initial balance", f"{result.initial_balance:,.2f} USD"),
        *metric_rows(result.metrics),
        ("Commission paid", f"{result.commission:,.2f} USD"),
        ("Financing", f"{result.financing:,.2f} USD"),
    ]
    kv = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in info)
    by_name = {f.name: f for f in figs}
    trades = "".join(f.img() for f in figs if f.name.startswith("trades_"))
    return (
        f"<h2>Run: {_e(result.request.strategy)}({_e(params)})</h2>"
        f'<table class="kv">{kv}</table>'
        f"<h2>Equity</h2>{by_name['equity'].img()}{by_name['drawdown'].img()}"
        f"<h2>Trades</h2>{trades}{_trade_table(result)}"
        f"<h2>Monthly returns (%)</h2>{_monthly_table(result)}{by_name['monthly'].img()}"
    )


def _sweep_section(result: GridResult, fig: Figure) -> str:
    axes = result.axes
    head = "".join(f"<th>{_e(a)}</th>" for a in axes)
    shown = ("sharpe", "total_return", "max_drawdown", "trades")
    head += "".join(f"<th>{_e(m)}</th>" for m in shown)
    rows = []
    for rank, row in enumerate(result.rows[:SWEEP_ROWS], start=1):
        m = row.metrics.to_dict()
        cells = "".join(f"<td>{_e(row.params[a])}</td>" for a in axes)
        cells += "".join(f"<td>{'n/a' if m[k] is None else f'{m[k]:.4g}'}</td>" for k in shown)
        rows.append(f"<tr><td>{rank}</td>{cells}</tr>")
    skipped = f"; {len(result.skipped)} invalid point(s) skipped" if result.skipped else ""
    return (
        f"<h2>Sweep: {len(result.rows)} points ranked by {_e(result.rank_by)}</h2>"
        f"<p>{_e(result.engine)} engine, {result.workers} worker(s), "
        f"{result.elapsed_s:.2f} s{skipped}.</p>{fig.img()}"
        f"<table><tr><th>#</th>{head}</tr>{''.join(rows)}</table>"
    )


def write_report(
    result: BacktestResult | GridResult, path_html: Path, png_dir: Path | None = None
) -> list[Path]:
    """Write the HTML report (and the figures as PNG files into ``png_dir``).

    Args:
        result: a backtest, or a sweep (its ranking, heat-map and best run).
        path_html: the HTML file to write (parent directories are created).
        png_dir: where to also write each figure as ``<name>.png``.

    Returns:
        The files written, the HTML first.
    """
    run = result if isinstance(result, BacktestResult) else result.best
    sections, figs = [], []
    title = "forexd backtest"
    if isinstance(result, GridResult):
        sweep = _sweep_figure(result)
        figs.append(sweep)
        sections.append(_sweep_section(result, sweep))
        title = f"forexd sweep: {result.request.strategy}"
    if run is not None:
        run_figs = _run_figures(run)
        figs.extend(run_figs)
        sections.append(_run_section(run, run_figs))
        if isinstance(result, BacktestResult):
            title = f"forexd backtest: {run.request.strategy} on {', '.join(run.data.symbols)}"
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1><p class='sub'>forexd {_e(__version__)}</p>"
        f"{''.join(sections)}</body></html>\n"
    )
    path_html.parent.mkdir(parents=True, exist_ok=True)
    partial = path_html.with_name(f".{path_html.name}.{os.getpid()}.tmp")
    partial.write_text(page, encoding="utf-8")
    partial.replace(path_html)
    written = [path_html]
    if png_dir is not None:
        png_dir.mkdir(parents=True, exist_ok=True)
        for fig in figs:
            target = png_dir / f"{fig.name}.png"
            target.write_bytes(fig.png)
            written.append(target)
    return written
