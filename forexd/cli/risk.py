"""``forexd risk show|repair``: the risk state file, offline (no daemon needed)."""

from __future__ import annotations

import argparse
from typing import Any

from forexd.cli.options import add_json, add_location
from forexd.cli.output import Output
from forexd.cli.parser import bind

SHOWN_DAYS = 7  # FX days of realised P&L shown to people (the daemon's report keeps 7 too)


def configure(name: str, p: argparse.ArgumentParser) -> None:
    """Add ``risk show`` and ``risk repair``."""
    actions = p.add_subparsers(dest="risk_command", required=True, metavar="ACTION")
    show = actions.add_parser("show", help="print the risk state file")
    repair = actions.add_parser("repair", help="rebuild a corrupt state file from the fills")
    repair.add_argument("--force", action="store_true", help="rebuild even a valid file")
    for leaf, handler in ((show, handle_show), (repair, handle_repair)):
        add_location(leaf)
        add_json(leaf)
        bind(leaf, handler)


def _store(args: argparse.Namespace) -> tuple[Any, Any]:
    from forexd.config import load_settings
    from forexd.daemon.paths import resolve_paths
    from forexd.storage.riskstate import RiskStateStore

    settings = load_settings(args.config, data_dir=args.data_dir, runtime_dir=args.runtime_dir)
    paths = resolve_paths(settings)
    return paths, RiskStateStore(paths.risk_state, settings.account_id)


def handle_show(args: argparse.Namespace, out: Output) -> int:
    """Print the stored risk state (a summary for people, the whole file with ``--json``)."""
    from forexd.cli.ctl_render import print_risk

    paths, store = _store(args)
    state = store.read().model_dump(mode="json")
    stats = {
        "account_state": state["account"]["state"],
        "account_cause": state["account"]["cause"],
        "symbol_states": {s: v["state"] for s, v in state["symbols"].items()},
        "approvals": state["approvals"],
        "clipped": state["clipped"],
        "denials": state["denials"],
        "last_equity": state["last_equity"],
        "equity_peak": state["equity_peak"],
        "day_start_equity": state["day_start_equity"],
        "fx_day": state["fx_day"],
    }
    days = list(state["realized_pnl_by_day"].items())
    report = {
        "account_id": state["account_id"],
        "file": str(paths.risk_state),
        **state,
        "realized_pnl_by_day": dict(days[-SHOWN_DAYS:]),  # like `ctl risk`; --json has all
    }
    return out.result(state, lambda console: print_risk(stats, report, console))


def handle_repair(args: argparse.Namespace, out: Output) -> int:
    """Rebuild the state file from the fills table (see docs/risk.md)."""
    from forexd.daemon.pidlock import refuse_while_running
    from forexd.daemon.riskruntime import fills_seed

    paths, store = _store(args)
    # A running daemon would write its own state back over the repaired file.
    refuse_while_running(paths.pidfile, "repairing the risk state")
    report = store.repair(fills_seed(paths.db), force=args.force)
    data = {
        "file": str(report.path),
        "action": report.action,
        "problem": report.problem,
        "backup": None if report.backup is None else str(report.backup),
        "seeded": report.seeded,
        "halted": report.halted,
        "state": report.state.model_dump(mode="json"),
    }
    return out.result(data, report.summary())
