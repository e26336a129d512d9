"""``forexd ctl ACTION``: talk to a running daemon over its control channel.

Each action is a sub-command bound to a handler; the answer is printed by
:mod:`forexd.cli.ctl_render` for people, or as the daemon's JSON with ``--json``.

To add an action: a protocol command that takes one SYMBOL goes in :data:`SYMBOL_ACTIONS`
(one line) and one without arguments in :data:`PLAIN_ACTIONS`; both use
:func:`handle_request`. Then give it a sentence in ``ctl_render._sentence``. Anything with
its own flags gets its own ``action(...)`` call in :func:`configure`, like ``flatten``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from forexd.cli.options import add_json, add_location
from forexd.cli.output import Output
from forexd.cli.parser import bind, did_you_mean
from forexd.errors import ConfigError

LOGS_POLL_S = 0.5

#: action -> help. Symbol actions take one SYMBOL; see :func:`configure` for the others.
SYMBOL_ACTIONS = {
    "pause": "stop opening trades on SYMBOL (bars, fills and risk keep running)",
    "resume": "let a paused SYMBOL trade again",
    "retrain": "queue a training cycle for an ML SYMBOL now",
    "adopt": "take the broker's position of SYMBOL as the daemon's (lifts a drift halt)",
    "restart": "start a parked (failed) SYMBOL's actor again",
}
PLAIN_ACTIONS = {
    "status": "state, budget, loop lag, risk, account and a row per symbol",
    "stop": "graceful shutdown (like SIGTERM)",
    "ping": "is the daemon alive?",
    "version": "versions of the daemon, Python and the control protocol",
    "reload": "re-read the config file (like SIGHUP); an invalid one is refused",
    "jobs": "the training job queue: queued, running (with progress) and recent jobs",
}


def configure(name: str, p: argparse.ArgumentParser) -> None:
    """Add the ``ctl`` actions, each with the location options and ``--json``."""
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(action_name: str, help: str) -> argparse.ArgumentParser:
        leaf = actions.add_parser(action_name, help=help, description=help)
        add_location(leaf)
        add_json(leaf)
        bind(leaf, handle_request)
        return leaf

    for action_name, help in PLAIN_ACTIONS.items():
        action(action_name, help)
    for action_name, help in SYMBOL_ACTIONS.items():
        action(action_name, help).add_argument("symbol", metavar="SYMBOL")
    flatten = action("flatten", "pause and close the position of SYMBOL (or all) at market")
    flatten.add_argument("symbol", metavar="SYMBOL", nargs="?")
    flatten.add_argument("--yes", action="store_true", help="confirm closing positions")
    train = action("train", "queue a training job for an ML SYMBOL (the actor runs it next)")
    train.add_argument("symbol", metavar="SYMBOL")
    train.add_argument(
        "--lookback-candles", type=int, metavar="N", help="candles for this job only"
    )
    cancel = action("cancel", "cancel a queued or running training job (see: ctl jobs)")
    cancel.add_argument("job", metavar="JOB")
    risk = action("risk", "risk limits, usage and trading states; `resume` lifts a stop")
    risk.add_argument(
        "rest",
        nargs="*",
        metavar="resume [SYMBOL]",
        help="`resume` lifts halted/reducing for the account, or SYMBOL (needs --note)",
    )
    risk.add_argument("--note", help="who and why, for the audit log")
    bind(risk, handle_risk)
    logs = action("logs", "recent log lines from the daemon's in-memory ring")
    logs.add_argument("--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("--symbol", help="only this symbol's lines")
    bind(logs, handle_logs)


def _paths(args: argparse.Namespace) -> Any:
    # Not load_settings: pydantic and numpy would be most of a ctl command's time, and
    # only the location keys matter here (see forexd.daemon.ctlclient).
    from forexd.daemon.ctlclient import locate

    return locate(args.config, args.data_dir, args.runtime_dir)


def ctl_request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The protocol command and its arguments for a parsed ``ctl`` action."""
    if args.action in SYMBOL_ACTIONS:
        return args.action, {"symbol": args.symbol.upper()}
    if args.action == "flatten":
        if not args.yes:
            raise ConfigError("flatten closes positions at market; add --yes to confirm")
        payload: dict[str, Any] = {"confirm": True}
        if args.symbol:
            payload["symbol"] = args.symbol.upper()
        return "flatten", payload
    if args.action == "train":
        lookback = args.lookback_candles
        if lookback is not None and lookback < 1:
            raise ConfigError(f"--lookback-candles must be at least 1, got {lookback}")
        return "train", {"symbol": args.symbol.upper(), "lookback_candles": lookback}
    if args.action == "cancel":
        return "cancel", {"job": args.job}
    return args.action, {}


def handle_request(args: argparse.Namespace, out: Output) -> int:
    """Send one request and print the answer (see :mod:`forexd.cli.ctl_render`)."""
    from forexd.cli import ctl_render
    from forexd.daemon.ctlclient import request

    paths = _paths(args)
    cmd, payload = ctl_request(args)
    result = request(paths, cmd, payload)
    return out.result(result, ctl_render.renderer(args.action, result))


def handle_risk(args: argparse.Namespace, out: Output) -> int:
    """``ctl risk`` (the report) or ``ctl risk resume [SYMBOL] --note TEXT``."""
    from forexd.cli import ctl_render
    from forexd.daemon.ctlclient import request

    if args.rest and (args.rest[0] != "resume" or len(args.rest) > 2):
        raise ConfigError(
            f"ctl risk {' '.join(args.rest)}: expected `forexd ctl risk` or "
            "`forexd ctl risk resume [SYMBOL] --note TEXT`" + did_you_mean(args.rest[0], ["resume"])
        )
    paths = _paths(args)
    if not args.rest:
        report = request(paths, "risk", {})
        return out.result(report, ctl_render.risk_report(report))
    if not args.note or not args.note.strip():
        raise ConfigError('ctl risk resume needs --note "who and why" for the audit log')
    symbol = args.rest[1].upper() if len(args.rest) == 2 else None
    # Resuming an active scope would only write a no-op audit record: ask first.
    stats = request(paths, "risk", {})["stats"]
    scope = symbol or "account"
    state = stats["account_state"] if symbol is None else stats["symbol_states"].get(symbol)
    if state in (None, "active"):
        noop = {"scope": scope, "state": "active", "resumed": False}
        return out.result(
            noop, f"{scope} is already active: nothing to resume, no audit record written"
        )
    result = request(paths, "risk_resume", {"symbol": symbol, "note": args.note})
    return out.result(result, ctl_render.risk_resumed(result))


def handle_logs(args: argparse.Namespace, out: Output) -> int:
    """Print the daemon's recent log lines; with ``--follow``, keep polling for new ones."""
    import time

    from forexd.daemon.ctlclient import request

    paths = _paths(args)
    payload = {"symbol": args.symbol.upper()} if args.symbol else {}
    since = 0
    while True:
        result = request(paths, "logs", {**payload, "since": since})
        for line in result["lines"]:
            if out.as_json:
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
        if not args.follow:
            return 0
        time.sleep(LOGS_POLL_S)  # a client poll interval, not a wait for an event
