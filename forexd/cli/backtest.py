"""``forexd backtest``: replay history through the live strategy and risk code."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from forexd.cli.output import Output, Spinner
from forexd.cli.parser import bind


def configure(name: str, p: argparse.ArgumentParser) -> None:
    """Add the backtest flags (they import the engine: only built when backtest runs)."""
    from forexd.cli.backtest_args import add_backtest_arguments

    add_backtest_arguments(p)  # --json included
    p.add_argument("--config", type=Path, help="config (costs, --from-store data dir)")
    p.add_argument("--data-dir", type=Path, help="data dir whose store --from-store reads")
    bind(p, handle)


def handle(args: argparse.Namespace, out: Output) -> int:
    """Run one backtest or a sweep; print the summary (or JSON) and write the report."""
    # Each import where it is needed: a single run does not load the sweep pool, the
    # hardware probe or the report writer (whole-process time is mostly imports).
    from forexd.backtest.summary import render_summary
    from forexd.cli.backtest_args import request_from_args
    from forexd.config import load_settings
    from forexd.daemon.paths import resolve_paths

    settings = load_settings(args.config, data_dir=args.data_dir)
    request = request_from_args(args, db_path=resolve_paths(settings).db)
    what = f"{request.grid_size} backtests" if request.grid else "backtest"
    with Spinner(out, f"running {what}…") as spinner:
        if request.grid:
            from forexd.backtest.grid import run_grid
            from forexd.daemon.budget import budget_from_config
            from forexd.daemon.hardware import detect_hardware
            from forexd.daemon.threads import ThreadLimiter

            budget = budget_from_config(settings.compute, detect_hardware(), 1)
            ThreadLimiter().apply(budget.blas_threads)
            from forexd.daemon.backends import make_executor  # [compute] backend / --ray

            executor = make_executor(settings.compute, budget, ray_address=args.ray)
            try:
                result: Any = run_grid(request, workers=budget.train_workers, executor=executor)
            finally:
                executor.close()
        else:
            from forexd.backtest.runner import run_backtest

            result = run_backtest(request)
        if args.report:
            spinner.update(f"writing {args.report}…")
        written = []
        if args.report:
            from forexd.backtest.report import write_report

            written = write_report(result, args.report, args.png_dir)
    data: dict[str, Any] = {}
    if out.as_json:  # the trade records cost ~0.5 s for a year of M1; people see a summary
        data = result.to_dict(trades=not request.grid)
        if written:
            data["written"] = [str(p) for p in written]

    def draw(console: Any) -> None:
        console.print(render_summary(result))
        for path in written:
            console.print(f"wrote {path}", markup=False)

    return out.result(data, draw)
