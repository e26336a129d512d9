"""Every human table at 80 columns: values whole, or their column named as left out."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

from rich.console import Console

from forexd.cli.ctl_render import print_status
from forexd.cli.ml_render import best_line, fold_table, models_table
from forexd.cli.tables import Col, fit_table

WIDTH = 80


def _text(renderable: Any = None, draw: Any = None) -> str:
    console = Console(record=True, width=WIDTH)
    if draw is not None:
        draw(console)
    else:
        console.print(renderable)
    return console.export_text()


def _assert_whole(text: str, values: list[str], columns: list[str]) -> None:
    """Each value is printed whole unless its column is named as not shown."""
    lines = text.splitlines()
    assert all(len(line) <= WIDTH for line in lines), text
    assert "…" not in text, text
    left_out = next((line for line in lines if "not shown at" in line), "")
    caption = " ".join(lines[lines.index(left_out) :]) if left_out else ""
    for value, column in zip(values, columns, strict=True):
        assert value in text or column in caption, (value, column, text)


def _status() -> dict[str, Any]:
    row = {
        "symbol": "EURUSD", "state": "running", "last_bar_time": "2018-01-02T10:00:00Z",
        "bars_seen": 123456, "position_units": -10000, "realized_pnl": 12345.5,
        "unrealized_pnl": -3.25, "orders_sent": 789, "restarts": 1, "last_error": None,
        "training": None,
    }  # fmt: skip
    return {
        "version": "0.1.0", "pid": 42, "state": "running", "uptime_s": 61.0, "broker": "paper",
        "rss_mb": 101.5, "threads": {"now": 4, "peak": 6},
        "budget": {"usable_cpus": 2, "cpu_slots": 2, "train_workers": 1, "blas_threads": 2,
                   "max_concurrent_symbols": 1},
        "loop_lag_ms": {"p50": 0.1, "p99": 0.9, "max": 2.0},
        "account": {"balance": 100_012.5, "equity": 100_009.25},
        "risk": {"account_state": "reducing", "account_cause": "daily_loss",
                 "symbol_states": {"EURUSD": "halted"}, "approvals": 3, "clipped": 0,
                 "denials": {"max_units": 2}},
        "symbols": [row, {**row, "symbol": "USDJPY"}],
    }  # fmt: skip


def test_status_table_fits_80_columns_without_losing_a_value() -> None:
    """The status table at 80 columns keeps symbol, state, risk and position whole."""
    text = _text(draw=lambda c: print_status(_status(), c))
    assert "risk: account reducing (daily_loss)" in text
    assert "halted" in text
    values = ["EURUSD", "USDJPY", "running", "2018-01-02 10:00", "123456", "-10000",
              "12,345.50", "-3.25", "789"]  # fmt: skip
    columns = ["symbol", "symbol", "state", "last bar", "bars", "position", "realized",
               "unrealized", "orders"]  # fmt: skip
    _assert_whole(text, values, columns)
    for must in ("EURUSD", "-10000", "halted", "789"):  # orders stay at 80 columns
        assert must in text


def _fold(i: int) -> Any:
    trading = SimpleNamespace(sharpe=1.2345, total_return=0.01234, trades=17)
    return SimpleNamespace(
        index=i, test_from=f"2017-0{i + 1}-01T00:00:00Z", test_to=f"2017-0{i + 1}-28T23:00:00Z",
        test_start=0, test_end=1, train_rows=4321, test_rows=987, accuracy=0.5123,
        log_loss=0.69312, trading=trading,
    )  # fmt: skip


def test_walk_forward_table_keeps_dates_and_metrics_whole_at_80_columns() -> None:
    """`train`'s fold table shows full dates and numbers at 80 columns (no "2017…")."""
    folds = [_fold(i) for i in range(3)]
    result = SimpleNamespace(folds=folds, accuracy=0.51, log_loss=0.693, trading=folds[0].trading)
    text = _text(fold_table(result, "EURUSD H1 walk-forward", width=WIDTH))  # type: ignore[arg-type]
    values = ["2017-01-01 00:00", "2017-03-28 23:00", "0.512", "0.6931", "1.23", "1.23",
              "4321", "987", "17"]  # fmt: skip
    columns = ["test from", "test to", "accuracy", "log loss", "sharpe", "return %", "train",
               "test", "trades"]  # fmt: skip
    _assert_whole(text, values, columns)
    assert "1.23" in text and "2017-03-28 23:00" in text  # sharpe and the test end stay


def test_models_table_keeps_ids_whole_at_80_columns() -> None:
    """`models list` at 80 columns keeps the model id (what promote needs) and status."""
    record = {
        "model_id": "EURUSD-20171231T230000Z-abcdef", "symbol": "EURUSD",
        "kind": "hist_gradient_boosting", "status": "champion",
        "created_at": "2026-12-02T01:02:03Z", "data_to": "2017-12-29T16:00:00Z",
        "metrics": {"oos_log_loss": 0.6912, "oos_sharpe": 0.87},
    }  # fmt: skip
    text = _text(models_table([record], width=WIDTH))
    values = [record["model_id"], "champion", "hist_gradient_boosting", "2026-12-02T01:02:03Z",
              "2017-12-29 16:00", "0.6912", "0.87"]  # fmt: skip
    columns = ["model id", "status", "kind", "created", "data to", "OOS log loss", "OOS sharpe"]
    _assert_whole(text, values, columns)
    assert record["model_id"] in text


def test_fit_table_folds_headers_then_drops_the_least_useful_column() -> None:
    """A long header folds at a space; an over-wide table loses its lowest-keep column."""
    cols = [Col("name", "left"), Col("a long header", keep=2), Col("detail", "left", keep=1)]
    rows = [["x" * 30, "1", "y" * 40]]
    text = _text(fit_table(cols, rows, width=WIDTH))
    assert "x" * 30 in text and "a long" in text and "header" in text
    assert "y" * 40 not in text and "not shown at 80 columns: detail" in text


def test_search_never_reports_a_sharpe_for_a_trial_that_never_traded() -> None:
    """best Sharpe 0.000 with no trades reads "made no trades"; otherwise trades are shown."""
    none = {"best_value": 0.0, "best_metrics": {"trading": {"trades": 0}}}
    assert "best trial made no trades" in best_line(none)
    some = {"best_value": 0.4123, "best_metrics": {"trading": {"trades": 42}}}
    assert "best Sharpe 0.412 over 42 trades" == best_line(some)


def test_hardware_table_keeps_figures_and_values_on_one_line_at_80_columns() -> None:
    """`forexd hw` at 80 columns: each figure's name and value are whole on their row."""
    from forexd.cli.system import hardware_table
    from forexd.config import ComputeConfig
    from forexd.daemon.budget import budget_from_config
    from forexd.daemon.hardware import detect_hardware
    from forexd.daemon.hwreport import hardware_report

    hw = detect_hardware()
    budget_obj = budget_from_config(ComputeConfig(), hw, 1)
    report = hardware_report(hw, budget_obj)
    # As after torch and sklearn loaded: several BLAS/OpenMP libraries (order-independent).
    lib = {"internal_api": "openblas", "num_threads": 2}
    report["thread_caps"]["loaded_libraries"] = [lib] * 6
    text = _text(hardware_table(report))
    assert all(len(line) <= WIDTH for line in text.splitlines())
    budget = report["budget"]
    for figure, value in (
        ("usable CPUs", str(budget["usable_cpus"])),
        ("BLAS threads per job", str(budget["blas_threads"])),
        ("max concurrent symbols", str(budget["max_concurrent_symbols"])),
    ):
        assert re.search(rf"│ {re.escape(figure)} +│ +{value} │", text), text
    assert re.search(r"│ RAM total / available +│ +[\d.]+ GiB / [\d.]+ GiB │", text), text


def test_status_shows_each_positions_stop_and_target() -> None:
    """A protected position shows `stop / target`; a trailing stop is marked with `~`."""
    status = _status()
    status["symbols"][0]["protection"] = {"stop": 1.0982, "take_profit": 1.1031}
    status["symbols"][1]["protection"] = {
        "stop": 150.5,
        "take_profit": None,
        "stop_kind": "trailing",
    }
    console = Console(record=True, width=160)
    print_status(status, console)
    text = console.export_text()
    assert "stop / target" in text
    assert "1.0982 / 1.1031" in text and "~150.5 / -" in text
