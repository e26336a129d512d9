"""The ``forexd`` command line.

Typed errors raised anywhere below become one line on stderr and an exit code here, and
only here: 0 success, 1 unexpected failure (a bug: traceback shown), 2 bad input or
configuration, 3 no daemon running, 4 a daemon already running on the data directory,
5 risk state unusable.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from forexd import __version__
from forexd.errors import ForexdError

CTL_COMMANDS = ("status", "stop", "ping", "version", "risk", "retrain")
IMPORT_FORMATS = ("auto", "histdata", "oanda-lean", "csv")


def _add_location(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML config file (FOREXD_* env overrides it)")
    p.add_argument("--data-dir", type=Path, help="state directory (default: platform data dir)")
    p.add_argument("--runtime-dir", type=Path, help="socket/pid directory (default DATA/run)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (choices come from the registries they describe)."""
    from forexd.config import TIMEFRAME_SECONDS

    parser = argparse.ArgumentParser(prog="forexd", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"forexd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon in the foreground until SIGTERM/SIGINT")
    _add_location(run)
    run.add_argument("--speed", type=float, help="replay speed: 0 = max, N = N× real time")
    run.add_argument("--log-format", choices=("auto", "json", "console"))
    run.add_argument(
        "--exit-when-done",
        action="store_true",
        help="shut down cleanly once every replay feed is exhausted",
    )

    ctl = sub.add_parser("ctl", help="talk to a running daemon")
    ctl.add_argument("action", choices=CTL_COMMANDS)
    ctl.add_argument(
        "rest",
        nargs="*",
        metavar="ARG",
        help="risk: `resume [SYMBOL]` lifts halted/reducing (needs --note)",
    )
    ctl.add_argument("--note", help="who and why, for audited operator actions")
    ctl.add_argument("--json", action="store_true", help="machine-readable output")
    _add_location(ctl)

    risk = sub.add_parser("risk", help="inspect or repair the risk state file offline")
    risk.add_argument("risk_command", choices=("show", "repair"))
    risk.add_argument("--force", action="store_true", help="repair: rebuild even a valid file")
    risk.add_argument("--json", action="store_true")
    _add_location(risk)

    hw = sub.add_parser("hw", help="hardware found and the compute budget derived from it")
    hw.add_argument("--json", action="store_true")
    hw.add_argument("--config", type=Path)

    data = sub.add_parser("data", help="manage stored candles")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    imp = data_sub.add_parser("import", help="load a candle file into the SQLite store")
    imp.add_argument("file", type=Path)
    imp.add_argument("--symbol", required=True)
    imp.add_argument("--timeframe", default="M1", choices=tuple(TIMEFRAME_SECONDS))
    imp.add_argument("--format", default="auto", choices=IMPORT_FORMATS)
    imp.add_argument(
        "--repair",
        action="store_true",
        help="sort unsorted rows and drop exact duplicates instead of failing",
    )
    imp.add_argument("--json", action="store_true")
    _add_location(imp)

    cfg = sub.add_parser("config", help="configuration tools")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = cfg_sub.add_parser("check", help="validate a config and print effective settings")
    check.add_argument("file", type=Path, nargs="?", help="omit to see defaults + environment")
    check.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, dispatch, map errors to exit codes."""
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ForexdError as exc:
        print(f"forexd: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        return _cmd_run(args)
    if args.command == "ctl":
        return _cmd_ctl(args)
    if args.command == "hw":
        return _cmd_hw(args)
    if args.command == "data":
        return _cmd_data_import(args)
    if args.command == "config":
        return _cmd_config_check(args)
    if args.command == "risk":
        return _cmd_risk(args)
    raise AssertionError(args.command)  # argparse rejects unknown commands first


def _settings(args: argparse.Namespace, **extra: Any) -> Any:
    from forexd.config import load_settings

    return load_settings(
        getattr(args, "config", None),
        data_dir=getattr(args, "data_dir", None),
        runtime_dir=getattr(args, "runtime_dir", None),
        **extra,
    )


def _cmd_run(args: argparse.Namespace) -> int:
    from forexd.daemon.logsetup import configure_logging
    from forexd.daemon.paths import resolve_paths
    from forexd.daemon.runner import run_daemon

    settings = _settings(args, log_format=args.log_format)
    if args.speed is not None:
        settings.feed.speed = args.speed
    configure_logging(settings.log_level, settings.log_format)
    run_daemon(settings, resolve_paths(settings), exit_when_done=args.exit_when_done)
    return 0


def _cmd_ctl(args: argparse.Namespace) -> int:
    from forexd.daemon.control import request
    from forexd.daemon.paths import resolve_paths

    paths = resolve_paths(_settings(args))
    cmd, payload = _ctl_request(args)
    result = request(paths, cmd, payload)
    if args.json:
        print(json.dumps(result, indent=2))
    elif args.action == "status":
        from forexd.daemon.render import print_status

        print_status(result)
    else:
        print(json.dumps(result))
    return 0


def _ctl_request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """Map ``ctl ACTION [ARGS]`` to a protocol command and its args."""
    from forexd.errors import ConfigError

    if args.action == "risk" and args.rest:
        if args.rest[0] != "resume" or len(args.rest) > 2:
            raise ConfigError("usage: forexd ctl risk [resume [SYMBOL] --note TEXT]")
        if not args.note:
            raise ConfigError('ctl risk resume needs --note "who and why" for the audit log')
        symbol = args.rest[1].upper() if len(args.rest) == 2 else None
        return "risk_resume", {"symbol": symbol, "note": args.note}
    if args.action == "retrain":
        if len(args.rest) != 1:
            raise ConfigError("usage: forexd ctl retrain SYMBOL")
        return "retrain", {"symbol": args.rest[0]}
    if args.rest:
        raise ConfigError(f"ctl {args.action} takes no arguments (got {' '.join(args.rest)})")
    return args.action, {}


def _cmd_risk(args: argparse.Namespace) -> int:
    from forexd.daemon.paths import resolve_paths
    from forexd.daemon.riskruntime import fills_seed
    from forexd.storage.riskstate import RiskStateStore

    settings = _settings(args)
    paths = resolve_paths(settings)
    store = RiskStateStore(paths.risk_state, settings.account_id)
    if args.risk_command == "show":
        state = store.read()
        print(json.dumps(state.model_dump(mode="json"), indent=None if args.json else 2))
        return 0
    report = store.repair(fills_seed(paths.db), force=args.force)
    print(report.summary())
    return 0


def _cmd_hw(args: argparse.Namespace) -> int:
    from forexd.daemon import resources

    settings = _settings(args)
    hw = resources.detect_hardware(import_torch=True)
    budget = resources.budget_from_config(
        settings.compute, hw, max(1, len(settings.active_symbols))
    )
    report = resources.hardware_report(hw, budget)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        from rich.console import Console

        Console().print(resources.render_hardware_table(report))
    return 0


def _cmd_data_import(args: argparse.Namespace) -> int:
    from forexd.daemon.paths import resolve_paths
    from forexd.domain import get_instrument
    from forexd.storage.candles import import_candles

    symbol = get_instrument(args.symbol).symbol
    paths = resolve_paths(_settings(args))
    result = import_candles(
        paths.db, args.file, symbol, args.timeframe, args.format, repair=args.repair
    )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"imported {result['inserted']} new {args.timeframe} candles for {symbol} from "
            f"{args.file} into {paths.db} ({result['already_stored']} already stored, "
            f"{result['first']} .. {result['last']})"
        )
    return 0


def _cmd_config_check(args: argparse.Namespace) -> int:
    from forexd.config import env_snapshot, load_settings
    from forexd.daemon.paths import resolve_paths

    settings = load_settings(args.file)
    effective = settings.model_dump(mode="json")
    paths = resolve_paths(settings)
    effective["resolved_paths"] = {
        "data_dir": str(paths.data_dir),
        "runtime_dir": str(paths.runtime_dir),
    }
    if args.json:
        print(json.dumps({"valid": True, "settings": effective, "env": env_snapshot()}, indent=2))
    else:
        origin = args.file or "defaults + environment"
        print(f"{origin}: valid")
        print(json.dumps(effective, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
