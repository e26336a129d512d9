"""Human output of ``forexd train``, ``search`` and ``models``: rich tables and progress bars.

Progress bars go to stderr and only on a terminal, so piped output and ``--json`` stay
clean; they are transient (erased when done).
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from forexd.cli.output import PIPE_WIDTH
from forexd.cli.tables import Col, compact_time, fit_table
from forexd.models.walkforward import WalkForwardResult

ProgressFn = Callable[[int, int], None]


def _num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}f}"


def _bar(what: str) -> Progress:
    return Progress(
        TextColumn(what),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )


@contextlib.contextmanager
def progress_bar(*, enabled: bool, what: str) -> Iterator[ProgressFn | None]:
    """A ``progress(done, total)`` callback drawing a bar, or ``None`` off a terminal."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    with _bar(f"training {what}") as bar:
        task = bar.add_task("folds", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@contextlib.contextmanager
def trial_bar(*, enabled: bool, total: int | None) -> Iterator[Callable[[int, float | None], None]]:
    """An ``on_trial(done, value)`` callback drawing a bar (a no-op off a terminal)."""
    if not enabled or not sys.stderr.isatty():
        yield lambda done, value: None
        return
    with _bar("search") as bar:
        task = bar.add_task("trials", total=total)

        def update(done: int, value: float | None) -> None:
            bar.update(task, completed=done)

        yield update


#: At 80 columns the per-fold quality (accuracy, log loss) outranks the test start, which
#: the previous fold's "test to" implies anyway.
FOLD_COLUMNS = (
    Col("fold"),
    Col("test from (UTC)", "left", keep=3),
    Col("test to (UTC)", "left", keep=7),
    Col("train", keep=1),
    Col("test", keep=2),
    Col("accuracy", keep=6),
    Col("log loss", keep=5),
    Col("sharpe"),
    Col("return %"),
    Col("trades", keep=8),
)

MODEL_COLUMNS = (
    Col("model id", "left"),
    Col("symbol", "left", keep=2),
    Col("kind", "left", keep=5),
    Col("status", "left"),
    Col("created (UTC)", "left", keep=3),
    Col("data to", "left", keep=1),
    Col("OOS log loss", keep=4),
    Col("OOS sharpe", keep=6),
)


def fold_table(result: WalkForwardResult, title: str, width: int = PIPE_WIDTH) -> Any:
    """One row per walk-forward fold and a pooled row, fitted to ``width`` columns."""
    rows = [
        [
            str(f.index + 1),
            compact_time(f.test_from) if f.test_from else str(f.test_start),
            compact_time(f.test_to) if f.test_to else str(f.test_end - 1),
            str(f.train_rows),
            str(f.test_rows),
            _num(f.accuracy, 3),
            _num(f.log_loss),
            _num(f.trading.sharpe, 2),
            _num(100 * f.trading.total_return, 2),
            str(f.trading.trades),
        ]
        for f in result.folds
    ]
    t = result.trading
    rows.append([
        "all", "", "", "", str(sum(f.test_rows for f in result.folds)),
        _num(result.accuracy, 3), _num(result.log_loss), _num(t.sharpe, 2),
        _num(100 * t.total_return, 2), str(t.trades),
    ])  # fmt: skip
    styles = [None] * len(result.folds) + ["bold"]
    return fit_table(FOLD_COLUMNS, rows, width=width, title=title, row_styles=styles)


def best_line(out: dict[str, Any]) -> str:
    """The best trial's Sharpe beside its trade count; no Sharpe when it never traded."""
    trading = (out.get("best_metrics") or {}).get("trading") or {}
    trades = out.get("best_trades", trading.get("trades"))
    if trades == 0:
        return "best trial made no trades (no Sharpe to speak of)"
    count = f" over {trades:,} trades" if isinstance(trades, int) else ""
    return f"best Sharpe {_num(out['best_value'], 3)}{count}"


def search_summary(out: dict[str, Any]) -> Table:
    """The best trial of a search, parameter by parameter."""
    table = Table(
        title=f"study {out['study_name']}: {best_line(out)} "
        f"({out['trials_total']}/{out['target_trials']} "
        f"trials, {out['failed_this_run']} failed this run, on {out['backend']['backend']})"
    )
    table.add_column("parameter")
    table.add_column("best value", justify="right")
    for key, value in sorted(out["best_params"].items()):
        table.add_row(key, _num(value) if isinstance(value, float) else str(value))
    trading = out["best_metrics"].get("trading") or {}
    table.add_row("trades (OOS)", str(trading.get("trades", "—")), style="dim")
    table.add_row("log loss (OOS)", _num(out["best_metrics"].get("log_loss")), style="dim")
    table.add_row("storage", out["storage"], style="dim")
    return table


def models_table(records: list[dict[str, Any]], width: int = PIPE_WIDTH) -> Any:
    """Registered models, newest first, fitted to ``width`` columns."""
    rows = [
        [
            r["model_id"],
            r["symbol"],
            r["kind"],
            r["status"],
            compact_time(r["created_at"]),
            compact_time(r["data_to"]),
            _num(r["metrics"].get("oos_log_loss")),
            _num(r["metrics"].get("oos_sharpe"), 2),
        ]
        for r in records
    ]
    styles = ["bold" if r["status"] == "champion" else None for r in records]
    return fit_table(MODEL_COLUMNS, rows, width=width, title="models", row_styles=styles)


def model_details(record: dict[str, Any]) -> Table:
    """``models show``: the record's fields and headline metrics, one per row."""
    table = Table(title=f"model {record.get('model_id', '?')}", show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in record.items():
        if key == "metrics" and isinstance(value, dict):
            for mkey, mvalue in value.items():
                if not isinstance(mvalue, dict | list):
                    shown = _num(mvalue) if isinstance(mvalue, float) else str(mvalue)
                    table.add_row(f"metrics.{mkey}", shown)
        elif not isinstance(value, dict | list):
            table.add_row(key, _num(value) if isinstance(value, float) else str(value))
    return table
