"""The top-level parser, and ``main``: parse, run the bound handler, map errors to exits.

Every command lives in its own module with a ``configure(parser)`` that adds its options and
binds its handler (:func:`forexd.cli.parser.bind`). Only the command being run is configured:
its options may import pandas or the engine, and ``forexd ctl status`` should not pay for
``backtest``'s. Completion and ``--help`` of a sub-command still see everything they need.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence

from forexd import __version__
from forexd.cli.output import Output
from forexd.cli.parser import Parser
from forexd.errors import ForexdError, quiet_broken_pipe

#: (command, module under forexd.cli with ``configure``, one-line help), in help order.
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("run", "run", "run the daemon in the foreground until SIGTERM/SIGINT"),
    ("ctl", "ctl", "talk to a running daemon (status, stop, pause, risk, logs...)"),
    ("backtest", "backtest", "replay history through the live strategy/risk code"),
    ("train", "ml", "walk-forward evaluation of a model, offline"),
    ("search", "ml", "Optuna search over model/strategy parameters"),
    ("models", "ml", "the model registry: list, show, promote, compare"),
    ("data", "data", "manage stored candles (import)"),
    ("risk", "risk", "inspect or repair the risk state file offline"),
    ("config", "system", "configuration tools (check)"),
    ("hw", "system", "hardware found and the compute budget derived from it"),
    ("service", "service", "install/run forexd as a systemd or Windows service"),
    ("completion", "system", "print the shell completion script (bash, zsh)"),
)

#: ``forexd ctl`` actions, for "did you mean 'ctl status'?" after ``forexd status``.
CTL_ACTIONS = ("status", "stop", "ping", "version", "reload", "pause", "resume", "retrain",
               "flatten", "logs")  # fmt: skip

EXIT_CODES = """\
exit codes:
  0    success
  1    unexpected failure (a bug: the traceback is shown)
  2    bad input or configuration, or a damaged database (the message names it and the fix)
  3    no daemon running for this data directory (forexd ctl)
  4    a daemon is already running on this data directory (also risk repair while one runs)
  5    the risk state is unusable or out of step with the database (see forexd risk show)
  6    disk full (free space, then start again)
  130  interrupted (Ctrl-C)
"""

DESCRIPTION = """\
forexd trades FX from a local daemon: live or paper, with self-retraining ML models,
and replays the same code offline for backtests, training and searches.

Each command has its own help: forexd COMMAND --help. Add --json to get the same data
(errors included) as JSON.
"""


def build_parser(command: str | None = None, *, everything: bool = False) -> Parser:
    """The argument parser.

    Args:
        command: the sub-command being run; only it gets its options (see the module note).
        everything: configure every command (shell completion needs the whole tree).
    """
    parser = Parser(
        prog="forexd",
        description=DESCRIPTION,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"forexd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module, summary in COMMANDS:
        p = sub.add_parser(
            name,
            help=summary,
            description=summary[0].upper() + summary[1:] + ".",
            epilog=EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if everything or name == command:
            importlib.import_module(f"forexd.cli.{module}").configure(name, p)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def _autocomplete() -> None:
    """Answer a shell's completion request (argcomplete sets ``_ARGCOMPLETE``) and exit."""
    import argcomplete

    argcomplete.autocomplete(build_parser(everything=True))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, run the command's handler, map errors to exit codes."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_of(argv)
    try:
        if "_ARGCOMPLETE" in os.environ:
            _autocomplete()
        Parser.json_errors = "--json" in argv
        Parser.argv = tuple(argv)
        Parser.elsewhere = {a: f"ctl {a}" for a in CTL_ACTIONS}
        args = build_parser(command).parse_args(argv)
        out = Output(bool(getattr(args, "json", False)))
        try:
            rc = int(args.handler(args, out))
            sys.stdout.flush()  # a closed pipe (`forexd config check | head`) surfaces here
            return rc
        except BrokenPipeError:
            quiet_broken_pipe()
            return 0
        except ForexdError as exc:
            return out.error(exc)
        except Exception as exc:  # a bug: the traceback goes to stderr either way
            if not out.as_json:
                raise
            traceback.print_exc()
            return out.internal_error(exc)
    except KeyboardInterrupt:
        return interrupted_exit_code(command)


def interrupted_exit_code(command: str | None) -> int:
    """130 for Ctrl-C, quietly; 0 for ``run``, whose Ctrl-C is the normal way to stop."""
    return 0 if command == "run" else 130
