"""Logging: structlog configured once, at the entry point.

JSON lines (one object per line) when stdout is not a terminal — journald, files, log
shippers — and a readable console renderer on one, in colour unless ``NO_COLOR`` is set
to a non-empty value (https://no-color.org). Every line carries ``timestamp``
(UTC ISO 8601), ``level``, ``event`` and ``component``; ``symbol`` where one applies.
A ring buffer keeps the last lines in memory for ``forexd ctl logs``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections import deque
from collections.abc import MutableMapping
from typing import Any, Literal, TextIO, cast

import structlog

LOG_RING_LINES = 2000

EventDict = MutableMapping[str, Any]


class RingBuffer:
    """A structlog processor that remembers the last events (before rendering)."""

    def __init__(self, size: int = LOG_RING_LINES) -> None:
        self.lines: deque[tuple[int, dict[str, Any]]] = deque(maxlen=size)
        self.seq = 0

    def __call__(self, logger: Any, method: str, event_dict: EventDict) -> EventDict:
        """Copy the event into the ring and pass it on unchanged."""
        self.seq += 1
        self.lines.append((self.seq, dict(event_dict)))
        return event_dict

    def since(
        self, seq: int, symbol: str | None = None, limit: int = 200
    ) -> tuple[int, list[dict[str, Any]]]:
        """Lines after ``seq`` (optionally of one symbol), at most ``limit``, and the last seq."""
        out = [
            ev for n, ev in self.lines if n > seq and (symbol is None or ev.get("symbol") == symbol)
        ]
        return self.seq, out[-limit:]


RING = RingBuffer()
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _default_component(logger: Any, method: str, event_dict: EventDict) -> EventDict:
    event_dict.setdefault("component", "forexd")
    return event_dict


class Tee:
    """Writes every line to stdout and to a (rotating) log file."""

    def __init__(self, *streams: Any) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        """Write to each stream."""
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        """Flush each stream."""
        for stream in self.streams:
            stream.flush()

    def isatty(self) -> bool:
        """Never a terminal (files get JSON)."""
        return False


def use_colour() -> bool:
    """Colour on a terminal, unless ``NO_COLOR`` is set and not empty."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def configure_logging(
    level: str = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
    extra_processors: list[Any] | None = None,
    log_file: Any = None,
) -> None:
    """Configure structlog for the whole process (call once, from ``cli.py``).

    Args:
        level: minimum level name.
        fmt: ``json``, ``console``, or ``auto`` (console only on a terminal).
        extra_processors: run before rendering (secret redaction goes here).
    """
    # A log file always gets JSON: files are read by programs, not people.
    json_out = fmt == "json" or log_file is not None or (fmt == "auto" and not sys.stdout.isatty())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _default_component,
        *(extra_processors or []),
        structlog.processors.format_exc_info,
        RING,
    ]
    renderer: Any
    if json_out:
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=use_colour())
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level.lower()]),
        logger_factory=structlog.PrintLoggerFactory(
            sys.stdout if log_file is None else cast(TextIO, Tee(sys.stdout, log_file))
        ),
        cache_logger_on_first_use=True,
    )


def get_logger(component: str, **bound: Any) -> Any:
    """A logger bound with ``component`` (and e.g. ``symbol``)."""
    return structlog.get_logger().bind(component=component, **bound)
