"""argparse with typo suggestions, errors in JSON when asked, and one way to bind handlers.

argparse itself says "invalid choice" and, for a misspelled flag, prints the *top-level*
usage ("unrecognized arguments: --dta") because the sub-command parser hands unknown
strings back up. :class:`Parser` asks :mod:`difflib` for the closest valid name and reports
the error from the sub-command that was being parsed, with its own usage line.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

USAGE_EXIT_CODE = 2

Handler = Callable[..., int]


def suggest(word: str, valid: Iterable[str]) -> str | None:
    """The valid name closest to ``word``, if one is close enough to be a typo."""
    matches = difflib.get_close_matches(word, list(valid), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(word: str, valid: Iterable[str]) -> str:
    """``"; did you mean 'x'?"``, or nothing when no valid name is close."""
    close = suggest(word, valid)
    return f"; did you mean {close!r}?" if close else ""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors suggest the closest valid command or flag."""

    #: Set by ``main`` when ``--json`` is on the command line: usage errors print JSON too.
    json_errors = False
    #: The command line being parsed, so a "required" error can also point at a typo.
    argv: tuple[str, ...] = ()
    #: Words that are not choices here but name one elsewhere (``status`` -> ``ctl status``).
    elsewhere: dict[str, str] = {}  # noqa: RUF012 - set once per process by ``main``

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        choices = action.choices
        if choices is not None and value not in choices:
            names = [str(c) for c in choices]
            hint = did_you_mean(str(value), names)
            if not hint and action.dest == "command":
                close = suggest(str(value), self.elsewhere)
                hint = f"; did you mean {self.elsewhere[close]!r}?" if close else ""
            raise argparse.ArgumentError(
                action, f"invalid choice: {value!r} (choose from {', '.join(names)})" + hint
            )

    def parse_args(  # type: ignore[override]
        self, args: list[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        """Parse like argparse, but report leftovers from the sub-command that got them."""
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            leaf: Parser = getattr(ns, "cli_parser", None) or self
            leaf.error(leaf.unrecognized(extras))
        return ns

    def unrecognized(self, extras: list[str]) -> str:
        """The message for arguments this parser does not take, with suggestions."""
        flags = [s for a in self._actions for s in a.option_strings]
        parts = []
        for extra in extras:
            if extra.split("=")[0] in flags:  # known here, but typed before the sub-command
                parts.append(f"{extra} goes after the sub-command: `{self.prog} ... {extra}`")
            elif extra.startswith("-"):
                parts.append(f"unknown option {extra}" + did_you_mean(extra.split("=")[0], flags))
            else:
                parts.append(f"unexpected argument {extra!r}")
        hint = f"; see `{self.prog} --help`"
        return "; ".join(parts) + hint

    def error(self, message: str) -> NoReturn:
        """Print the usage error (as JSON with ``--json``) and exit 2."""
        if message.startswith("the following arguments are required"):
            flags = {s for a in self._actions for s in a.option_strings}
            typos = [a for a in self.argv if a.startswith("--") and a.split("=")[0] not in flags]
            if typos:
                message += "; " + self.unrecognized(typos).rsplit("; see", 1)[0]
        if Parser.json_errors:
            body = {
                "code": "usage",
                "message": f"{self.prog}: {message}",
                "hint": f"see `{self.prog} --help`",
                "exit_code": USAGE_EXIT_CODE,
            }
            print(json.dumps({"error": body}, indent=2))
            sys.exit(USAGE_EXIT_CODE)
        if self._missing_subcommand(message):
            self.print_help(sys.stderr)  # the list of sub-commands is what is missing
        else:
            self.print_usage(sys.stderr)
        self.exit(USAGE_EXIT_CODE, f"{self.prog}: error: {message}\n")

    def _missing_subcommand(self, message: str) -> bool:
        required = "the following arguments are required: "
        subs = [a for a in self._actions if isinstance(a, argparse._SubParsersAction)]
        return message.startswith(required) and any(
            a.metavar and a.metavar in message[len(required) :].split(", ") for a in subs
        )


def bind(parser: argparse.ArgumentParser, handler: Handler) -> None:
    """Make ``handler(args, out)`` the one that runs when ``parser`` is the command parsed."""
    parser.set_defaults(handler=handler, cli_parser=parser)


def check_param_names(where: str, owner: str, model: Any, given: Iterable[str]) -> None:
    """Refuse parameter names ``model`` does not have, suggesting the closest valid one.

    Args:
        where: the flag or key the names came from (``--param``), for the message.
        owner: what the parameters belong to (``sma_cross``).
        model: the pydantic parameter model.
        given: the names the user passed.

    Raises:
        ConfigError: a name is unknown; the message lists every valid one and its default.
    """
    from forexd.domain.strategy_registry import params_help
    from forexd.errors import ConfigError

    valid = list(model.model_fields)
    for name in given:
        if name not in valid:
            raise ConfigError(
                f"{where} {name}: {owner} has no parameter {name!r}{did_you_mean(name, valid)}"
                f" ({owner}'s parameters and defaults: {params_help(model)})"
            )
