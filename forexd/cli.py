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
from forexd.cli_service import add_service_commands, dispatch_service
from forexd.errors import ForexdError

CTL_COMMANDS = (
    "status",
    "stop",
    "ping",
    "version",
    "risk",
    "retrain",
    "pause",
    "resume",
    "flatten",
    "reload",
    "logs",
    "jobs",
    "train",
    "cancel",
)
IMPORT_FORMATS = ("auto", "histdata", "oanda-lean", "csv")
LOGS_POLL_S = 0.5


def _add_location(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML config file (FOREXD_* env overrides it)")
    p.add_argument("--data-dir", type=Path, help="state directory (default: platform data dir)")
    p.add_argument("--runtime-dir", type=Path, help="socket/pid directory (default DATA/run)")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser (choices come from the registries they describe).

    Args:
        command: the sub-command being run; heavy sub-commands (backtest) only define
            their options when they are the one, so `forexd ctl status` stays fast.
    """
    from forexd.domain.timeframes import TIMEFRAME_SECONDS

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
    ctl.add_argument("--yes", action="store_true", help="flatten: confirm closing positions")
    ctl.add_argument("--follow", action="store_true", help="logs: keep printing new lines")
    ctl.add_argument("--symbol", help="logs: only this symbol's lines")
    ctl.add_argument("--lookback-candles", type=int, help="train: candles for this job only")
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

    add_service_commands(sub)

    bt = sub.add_parser("backtest", help="replay history through the live strategy/risk code")
    if command == "backtest":  # its options import pandas and the engine: only when used
        from forexd.backtest.cli_args import add_backtest_arguments

        add_backtest_arguments(bt)
        bt.add_argument("--config", type=Path, help="config (costs, --from-store data dir)")
        bt.add_argument("--data-dir", type=Path, help="data dir whose store --from-store reads")

    from forexd.cli_ml import add_ml_commands

    add_ml_commands(sub)

    cfg = sub.add_parser("config", help="configuration tools")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = cfg_sub.add_parser("check", help="validate a config and print effective settings")
    check.add_argument("file", type=Path, nargs="?", help="omit to see defaults + environment")
    check.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, dispatch, map errors to exit codes."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
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
    if args.command == "service":
        return dispatch_service(args)
    if args.command == "backtest":
        return _cmd_backtest(args)
    from forexd.cli_ml import dispatch_ml

    rc = dispatch_ml(args)
    if rc is not None:
        return rc
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
    from forexd.config import load_settings
    from forexd.daemon.logfile import RotatingLogFile
    from forexd.daemon.logsetup import configure_logging
    from forexd.daemon.paths import resolve_paths
    from forexd.daemon.redact import RedactSecrets
    from forexd.daemon.runner import run_daemon

    overrides = {
        "data_dir": args.data_dir,
        "runtime_dir": args.runtime_dir,
        "log_format": args.log_format,
        "feed.speed": args.speed,
    }
    settings = load_settings(args.config, **overrides)
    paths = resolve_paths(settings)
    secrets = [settings.broker.oanda.token.get_secret_value(), settings.broker.oanda.account_id]
    log_file = None
    if settings.log_file is not None:
        log_file = RotatingLogFile(
            settings.log_file, int(settings.log_file_max_mb * 2**20), settings.log_file_backups
        )
    configure_logging(
        settings.log_level,
        settings.log_format,
        extra_processors=[RedactSecrets(s for s in secrets if s)],
        log_file=log_file,
    )
    run_daemon(
        settings,
        paths,
        exit_when_done=args.exit_when_done,
        config_path=args.config,
        overrides=overrides,
    )
    return 0


def _cmd_ctl(args: argparse.Namespace) -> int:
    from forexd.daemon.control import request
    from forexd.daemon.paths import resolve_paths

    paths = resolve_paths(_settings(args))
    cmd, payload = _ctl_request(args)
    if cmd == "logs":
        return _ctl_logs(paths, payload, follow=args.follow, as_json=args.json)
    result = request(paths, cmd, payload)
    if args.json:
        print(json.dumps(result, indent=2))
    elif args.action == "status":
        from forexd.daemon.render import print_status

        print_status(result)
    elif args.action == "jobs":
        for j in result["jobs"]:  # one line per job; --json has every field
            print(
                f"{j['id']}  {j['symbol']:7} {j['kind']:8} {j['state']:9} "
                f"{j['progress']:5.0%} {j['phase']:11} {j['backend']}@{j['node']}"
                + (f"  {j['error']}" if j["error"] else "")
            )
    else:
        print(json.dumps(result))
    return 0


def _ctl_logs(paths: Any, payload: dict[str, Any], *, follow: bool, as_json: bool) -> int:
    """Print the daemon's recent log lines; with ``follow``, keep polling for new ones."""
    import time

    from forexd.daemon.control import request

    since = 0
    while True:
        result = request(paths, "logs", {**payload, "since": since})
        for line in result["lines"]:
            if as_json:
                print(json.dumps(line), flush=True)
            else:
                extra = " ".join(
                    f"{k}={v}"
                    for k, v in line.items()
                    if k not in ("timestamp", "level", "event", "component")
                )
                print(
                    f"{line.get('timestamp', '')} {line.get('level', ''):7} "
                    f"{line.get('component', '')}: {line.get('event', '')} {extra}",
                    flush=True,
                )
        since = result["last"]
        if not follow:
            return 0
        time.sleep(LOGS_POLL_S)  # a client poll interval, not a wait for an event


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
    if args.action == "train" and len(args.rest) == 1:
        return "train", {"symbol": args.rest[0], "lookback_candles": args.lookback_candles}
    if args.action == "cancel" and len(args.rest) == 1:
        return "cancel", {"job": args.rest[0]}
    if args.action in ("train", "cancel"):
        what = "SYMBOL [--lookback-candles N]" if args.action == "train" else "JOB"
        raise ConfigError(f"usage: forexd ctl {args.action} {what}")
    if args.action in ("retrain", "pause", "resume"):
        if len(args.rest) != 1:
            raise ConfigError(f"usage: forexd ctl {args.action} SYMBOL")
        return args.action, {"symbol": args.rest[0]}
    if args.action == "flatten":
        if len(args.rest) > 1:
            raise ConfigError("usage: forexd ctl flatten [SYMBOL] --yes")
        if not args.yes:
            raise ConfigError("flatten closes positions at market; add --yes to confirm")
        payload: dict[str, Any] = {"confirm": True}
        if args.rest:
            payload["symbol"] = args.rest[0]
        return "flatten", payload
    if args.action == "logs":
        return "logs", {"symbol": args.symbol.upper()} if args.symbol else {}
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


def _cmd_backtest(args: argparse.Namespace) -> int:
    from forexd.backtest import render_summary, run_backtest, run_grid, write_report
    from forexd.backtest.cli_args import request_from_args
    from forexd.daemon.budget import budget_from_config
    from forexd.daemon.hardware import detect_hardware
    from forexd.daemon.paths import resolve_paths
    from forexd.daemon.threads import ThreadLimiter

    settings = _settings(args)
    request = request_from_args(args, db_path=resolve_paths(settings).db)
    if request.grid:
        budget = budget_from_config(settings.compute, detect_hardware(), 1)
        ThreadLimiter().apply(budget.blas_threads)
        from forexd.daemon.backends import make_executor  # [compute] backend / --ray

        executor = make_executor(settings.compute, budget, ray_address=args.ray)
        try:
            result: Any = run_grid(request, workers=budget.train_workers, executor=executor)
        finally:
            executor.close()
    else:
        result = run_backtest(request)
    written = write_report(result, args.report, args.png_dir) if args.report else []
    if args.json:
        print(json.dumps(result.to_dict(trades=not request.grid), indent=2, default=str))
    else:
        from rich.console import Console

        console = Console()
        console.print(render_summary(result))
        for path in written:
            console.print(f"wrote {path}")
    return 0


def _cmd_hw(args: argparse.Namespace) -> int:
    from forexd.daemon.budget import budget_from_config
    from forexd.daemon.hardware import detect_hardware
    from forexd.daemon.hwreport import hardware_report, render_hardware_table

    settings = _settings(args)
    hw = detect_hardware(import_torch=True)
    budget = budget_from_config(settings.compute, hw, max(1, len(settings.active_symbols)))
    report = hardware_report(hw, budget)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        from rich.console import Console

        Console().print(render_hardware_table(report))
    return 0


def _cmd_data_import(args: argparse.Namespace) -> int:
    from forexd.daemon.paths import resolve_paths
    from forexd.domain import get_instrument
    from forexd.feeds.candle_import import import_candles

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
