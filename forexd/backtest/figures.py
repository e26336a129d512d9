"""The report's figures, drawn with matplotlib's Agg canvas into PNG bytes.

matplotlib is imported inside the functions: the daemon and the CLI's other commands never
pay for it. Figures are ``matplotlib.figure.Figure`` objects on an Agg canvas, not pyplot
ones, so nothing registers in pyplot's global figure list and nothing leaks between runs
(or between threads). Series longer than ``MAX_POINTS`` are reduced to a min/max envelope
per bucket, so a year of M1 draws as fast as a month and no spike disappears.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np

from forexd.domain.bars import FloatArray, IntArray
from forexd.extras import require_extra

MAX_POINTS = 4_000  # buckets per drawn series
MAX_MARKED_TRADES = 200  # trades marked on the price chart (the most recent ones)
DPI = 100
WIDE = (11.0, 3.6)  # inches
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _figure(size: tuple[float, float] = WIDE, rows: int = 1) -> tuple[Any, Any]:
    require_extra("matplotlib", "drawing report figures")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, squeeze=False)[:, 0]
    return fig, axes


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _dates(ts: IntArray) -> np.ndarray:
    return ts.astype("datetime64[ns]")


def envelope(ts: IntArray, values: FloatArray) -> tuple[np.ndarray, FloatArray]:
    """At most ``2 * MAX_POINTS`` points keeping each bucket's minimum and maximum."""
    n = len(values)
    if n <= 2 * MAX_POINTS:
        return _dates(ts), values
    starts = np.linspace(0, n, MAX_POINTS, endpoint=False).astype(np.int64)
    lo = np.minimum.reduceat(values, starts)
    hi = np.maximum.reduceat(values, starts)
    t = _dates(ts[starts])
    return np.repeat(t, 2), np.column_stack((lo, hi)).ravel()


def equity_png(ts: IntArray, equity: FloatArray, initial: float) -> bytes:
    """Equity curve with the initial balance as a reference line."""
    fig, (ax,) = _figure()
    t, v = envelope(ts, equity)
    ax.plot(t, v, color="#1f77b4", linewidth=0.9)
    ax.axhline(initial, color="#888888", linewidth=0.8, linestyle="--")
    ax.set_title("Equity (USD)")
    ax.grid(alpha=0.3)
    return _png(fig)


def drawdown_png(ts: IntArray, drawdown: FloatArray) -> bytes:
    """Drawdown from the running peak, in percent (drawn below zero)."""
    fig, (ax,) = _figure((11.0, 2.6))
    t, v = envelope(ts, -100.0 * drawdown)
    ax.fill_between(t, v, 0.0, color="#d62728", alpha=0.35, linewidth=0)
    ax.plot(t, v, color="#d62728", linewidth=0.7)
    ax.set_title("Drawdown (%)")
    ax.grid(alpha=0.3)
    return _png(fig)


def trades_png(
    symbol: str,
    ts: IntArray,
    close: FloatArray,
    entries: tuple[IntArray, FloatArray, IntArray],
    exits: tuple[IntArray, FloatArray],
    total_trades: int,
) -> bytes:
    """Close price with trade entries (▲ long, ▼ short) and exits (×).

    With more than ``MAX_MARKED_TRADES`` trades only the most recent ones are marked, and
    the chart starts at the first of them, so markers stay readable on a year of M1.
    """
    entry_ts, entry_px, side = entries
    exit_ts, exit_px = exits
    if len(exit_ts) > MAX_MARKED_TRADES:
        keep = slice(len(exit_ts) - MAX_MARKED_TRADES, None)
        entry_ts, entry_px, side = entry_ts[keep], entry_px[keep], side[keep]
        exit_ts, exit_px = exit_ts[keep], exit_px[keep]
        # From a few bars before the first shown entry to the end of the data.
        first = max(int(np.searchsorted(ts, entry_ts.min(), side="left")) - 5, 0)
        ts, close = ts[first:], close[first:]
    fig, (ax,) = _figure((11.0, 4.0))
    t, v = envelope(ts, close)
    ax.plot(t, v, color="#444444", linewidth=0.7)
    longs = side > 0
    ax.scatter(_dates(entry_ts[longs]), entry_px[longs], marker="^", color="#2ca02c", s=28)
    ax.scatter(_dates(entry_ts[~longs]), entry_px[~longs], marker="v", color="#d62728", s=28)
    ax.scatter(_dates(exit_ts), exit_px, marker="x", color="#1f1f1f", s=18, linewidths=0.8)
    shown = len(exit_ts)
    scope = f"last {shown} of {total_trades} trades" if shown < total_trades else "all trades"
    ax.set_title(f"{symbol} close with trades ({scope}; ▲ long, ▼ short entry, × exit)")
    ax.grid(alpha=0.3)
    return _png(fig)


def monthly_png(table: FloatArray, years: list[int]) -> bytes:
    """Heat-map of monthly returns (rows: years, columns: months), in percent."""
    fig, (ax,) = _figure((11.0, 0.9 + 0.45 * len(years)))
    pct = 100.0 * table
    finite = pct[np.isfinite(pct)]
    bound = float(np.abs(finite).max()) if len(finite) else 1.0
    ax.imshow(pct, cmap="RdYlGn", vmin=-bound, vmax=bound, aspect="auto")
    ax.set_xticks(range(12), MONTHS)
    ax.set_yticks(range(len(years)), [str(y) for y in years])
    for (row, col), value in np.ndenumerate(pct):
        if math.isfinite(value):
            ax.text(col, row, f"{value:.1f}", ha="center", va="center", fontsize=8)
    ax.set_title("Monthly returns (%)")
    return _png(fig)


def param_png(
    axes: tuple[str, ...],
    points: list[dict[str, Any]],
    values: list[float],
    metric: str,
    higher_is_better: bool,
) -> bytes:
    """A sweep's metric over its first one or two parameters.

    With more than two swept parameters each cell shows the best value over the others.
    """
    sign = 1.0 if higher_is_better else -1.0
    fig, (ax,) = _figure((8.0, 5.0) if len(axes) > 1 else WIDE)
    if len(axes) == 1:
        order = np.argsort([float(p[axes[0]]) for p in points])
        line = [float(points[i][axes[0]]) for i in order]
        ax.plot(line, np.array(values)[order], marker="o", color="#1f77b4")
        ax.set_xlabel(axes[0])
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    else:
        xs = sorted({p[axes[0]] for p in points})
        ys = sorted({p[axes[1]] for p in points})
        grid = np.full((len(ys), len(xs)), np.nan)
        for p, v in zip(points, values, strict=True):
            i, j = ys.index(p[axes[1]]), xs.index(p[axes[0]])
            if math.isfinite(v) and not sign * grid[i, j] >= sign * v:
                grid[i, j] = v
        image = ax.imshow(grid, cmap="viridis", aspect="auto", origin="lower")
        ax.set_xticks(range(len(xs)), [str(x) for x in xs], rotation=90 if len(xs) > 12 else 0)
        ax.set_yticks(range(len(ys)), [str(y) for y in ys])
        ax.set_xlabel(axes[0])
        ax.set_ylabel(axes[1])
        fig.colorbar(image, ax=ax, label=metric)
    ax.set_title(f"Sweep: {metric}" + (" (best over other parameters)" if len(axes) > 2 else ""))
    return _png(fig)
