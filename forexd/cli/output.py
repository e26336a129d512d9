"""The one output layer of every ``forexd`` command.

A handler builds its result as plain data (what ``--json`` prints) and, for people, a
renderer that draws the same data as sentences and rich tables. Errors take the same road:
``--json`` prints ``{"error": {"code", "message", "hint"}}`` on stdout, a person gets one
line on stderr (plus the hint); both exit with the error's documented exit code.

Width: on a terminal rich measures it; piped output honours ``COLUMNS`` and otherwise gets
:data:`PIPE_WIDTH` so a log file or a ``less`` pager does not squash tables to 80 columns.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Callable
from typing import Any

from forexd.errors import ForexdError

INTERNAL_EXIT_CODE = 1  # an unexpected failure: a bug
PIPE_WIDTH = 160  # a guess at a wide pager; COLUMNS overrides it
JSON_FLOAT_DIGITS = 10  # drops binary noise (125.99999999999945 -> 126.0), keeps every pip

#: What to do next, for errors whose message says what went wrong but not the fix.
DEFAULT_HINTS: dict[str, str] = {
    "already_running": "stop it first with `forexd ctl stop` (same --data-dir)",
    "risk_state": "see `forexd risk show` and docs/risk.md (repair: `forexd risk repair`)",
}

Renderer = Callable[[Any], None]  # draws on a rich Console


def error_code(exc: BaseException) -> str:
    """A stable snake_case code: ``DaemonNotRunningError`` -> ``daemon_not_running``."""
    name = type(exc).__name__.removesuffix("Error") or "forexd"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def clean_floats(value: Any, digits: int = JSON_FLOAT_DIGITS) -> Any:
    """``value`` with every float rounded to ``digits`` places (non-finite ones become null)."""
    if isinstance(value, float):
        return round(value, digits) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: clean_floats(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_floats(v, digits) for v in value]
    return value


def money(value: float | None) -> str:
    """USD with thousands separators and cents, or an em dash."""
    return "—" if value is None else f"{value:,.2f}"


def num(value: Any, digits: int = 4) -> str:
    """A number with ``digits`` decimals; ``None``/NaN/inf become an em dash."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}f}"


def console_width() -> int | None:
    """The width to draw at: the terminal's, else ``COLUMNS``, else :data:`PIPE_WIDTH`."""
    if sys.stdout.isatty():
        return None  # rich measures the terminal (and follows resizes)
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else PIPE_WIDTH


def make_console(*, stderr: bool = False, width: int | None = None) -> Any:
    """A rich console for human output (imported lazily: ``--json`` never loads rich)."""
    from rich.console import Console

    console = Console(stderr=stderr, width=width or console_width(), highlight=False)
    # rich turns a closed pipe (`forexd config check | head`) into SystemExit(1); a reader
    # that stopped reading is not a failure, so let it surface as BrokenPipeError, which
    # ``cli.app.main`` ends quietly with exit 0.
    console.on_broken_pipe = _raise_broken_pipe  # type: ignore[method-assign]
    return console


def _raise_broken_pipe() -> None:
    raise BrokenPipeError


class Output:
    """Where a command's result goes: JSON on stdout, or a renderer for people.

    Args:
        as_json: the command's ``--json`` flag.
    """

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self._console: Any = None

    @property
    def console(self) -> Any:
        """The stdout console (created on first use)."""
        if self._console is None:
            self._console = make_console()
        return self._console

    def result(self, data: Any, render: Renderer | str | None = None) -> int:
        """Print ``data`` as JSON, or draw it with ``render`` (a sentence or a function).

        Returns:
            0, the exit code of a successful command.
        """
        if self.as_json:
            print(json.dumps(clean_floats(data), indent=2, default=str), flush=True)
        elif isinstance(render, str):
            self.console.print(render, markup=False, soft_wrap=True)  # the terminal wraps
        elif render is not None:
            render(self.console)
        return 0

    def line(self, text: str) -> None:
        """One more line for people (nothing in JSON mode: the data says it already)."""
        if not self.as_json:
            self.console.print(text, markup=False, soft_wrap=True)

    def error(self, exc: ForexdError) -> int:
        """Report a user-facing error and return its exit code."""
        code = getattr(exc, "code", None) or error_code(exc)
        hint = getattr(exc, "hint", None) or DEFAULT_HINTS.get(code)
        if self.as_json:
            body = {"code": code, "message": str(exc), "hint": hint, "exit_code": exc.exit_code}
            print(json.dumps({"error": body}, indent=2), flush=True)
        else:
            print(f"forexd: error: {exc}", file=sys.stderr)
            if hint:
                print(f"  hint: {hint}", file=sys.stderr)
        return exc.exit_code

    def internal_error(self, exc: BaseException) -> int:
        """A bug, for ``--json`` readers: exit 1, with where to report it."""
        body = {
            "code": "internal",
            "message": f"{type(exc).__name__}: {exc}",
            "hint": "a bug in forexd: please report it with the traceback printed on stderr",
            "exit_code": INTERNAL_EXIT_CODE,
        }
        print(json.dumps({"error": body}, indent=2), flush=True)
        return INTERNAL_EXIT_CODE


class Spinner:
    """A transient "working…" line on stderr for steps that take seconds.

    Drawn only for people at a terminal (never with ``--json`` or into a pipe), so
    scripted output stays clean. ``update`` changes the text between steps.
    """

    def __init__(self, out: Output, text: str) -> None:
        self._text = text
        self._status: Any = None
        if not out.as_json and sys.stderr.isatty():
            self._status = make_console(stderr=True).status(text)

    def __enter__(self) -> Spinner:
        if self._status is not None:
            self._status.__enter__()
        return self

    def update(self, text: str) -> None:
        """Show ``text`` instead (the next step)."""
        if self._status is not None:
            self._status.update(text)

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.__exit__(*exc)
