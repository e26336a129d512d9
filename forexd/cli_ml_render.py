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


def fold_table(result: WalkForwardResult, title: str) -> Table:
    """One row per walk-forward fold and a pooled row."""
    table = Table(title=title)
    for col in ("fold", "test from", "test to", "train", "test", "accuracy", "log loss",
                "sharpe", "return %", "trades"):  # fmt: skip
        table.add_column(col, justify="left" if col.startswith("test ") else "right")
    for f in result.folds:
        table.add_row(
            str(f.index + 1),
            f.test_from or str(f.test_start),
            f.test_to or str(f.test_end - 1),
            str(f.train_rows),
            str(f.test_rows),
            _num(f.accuracy, 3),
            _num(f.log_loss),
            _num(f.trading.sharpe, 2),
            _num(100 * f.trading.total_return, 2),
            str(f.trading.trades),
        )
    t = result.trading
    table.add_row(
        "all", "", "", "", str(sum(f.test_rows for f in result.folds)),
        _num(result.accuracy, 3), _num(result.log_loss), _num(t.sharpe, 2),
        _num(100 * t.total_return, 2), str(t.trades), style="bold",
    )  # fmt: skip
    return table


def search_summary(out: dict[str, Any]) -> Table:
    """The best trial of a search, parameter by parameter."""
    table = Table(
        title=f"study {out['study_name']}: best Sharpe {_num(out['best_value'], 3)} "
        f"with {out['best_trades']} trades ({out['trials_total']}/{out['target_trials']} "
        f"trials, {out['failed_this_run']} failed this run, on {out['backend']['backend']})"
    )
    table.add_column("parameter")
    table.add_column("best value", justify="right")
    for key, value in sorted(out["best_params"].items()):
        table.add_row(key, _num(value) if isinstance(value, float) else str(value))
    table.add_row("log loss (OOS)", _num(out["best_metrics"].get("log_loss")), style="dim")
    table.add_row("storage", out["storage"], style="dim")
    return table


def models_table(records: list[dict[str, Any]]) -> Table:
    """Registered models, newest first."""
    table = Table(title="models")
    for col in ("model id", "symbol", "kind", "status", "created", "data to", "OOS log loss",
                "OOS sharpe"):  # fmt: skip
        table.add_column(col)
    for r in records:
        m = r["metrics"]
        table.add_row(
            r["model_id"],
            r["symbol"],
            r["kind"],
            r["status"],
            r["created_at"],
            r["data_to"],
            _num(m.get("oos_log_loss")),
            _num(m.get("oos_sharpe"), 2),
            style="bold" if r["status"] == "champion" else None,
        )
    return table
