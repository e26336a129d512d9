"""An in-process daemon for anyio tests: the real supervisor, a feed the test drives.

``ScriptedFeed`` hands each symbol's bars to its actor only when the test pushes them, so
a test knows exactly which bars an actor has seen before it reloads, pauses or retrains.
It plays recorded bars (``recorded = True``): its present is the bar it plays, as for the
replay feed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pandas as pd
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from forexd.config import load_settings
from forexd.daemon.paths import resolve_paths
from forexd.daemon.supervisor import Daemon
from forexd.domain import Bar

WAIT_S = 60.0  # every wait on the daemon has this ceiling (a loaded 2-core CI box)


class ScriptedFeed:
    """Bars per symbol, delivered when :meth:`push` is called."""

    recorded = True

    def __init__(self, symbols: list[str]) -> None:
        self._streams: dict[
            str, tuple[MemoryObjectSendStream[Bar], MemoryObjectReceiveStream[Bar]]
        ] = {s: anyio.create_memory_object_stream[Bar](100_000) for s in symbols}

    def push(self, symbol: str, frame: pd.DataFrame) -> None:
        """Queue the frame's bars for ``symbol``'s actor."""
        send = self._streams[symbol][0]
        for r in frame.itertuples(index=False):
            send.send_nowait(Bar(symbol, int(r.ts), r.open, r.high, r.low, r.close, r.volume))

    async def bars(self, symbol: str, after_ts: int | None = None) -> AsyncIterator[Bar]:
        """Yield pushed bars newer than ``after_ts``, forever."""
        recv = self._streams[symbol][1]
        async for bar in recv:
            if after_ts is None or bar.ts > after_ts:
                yield bar


class InProcessDaemon(Daemon):
    """The real :class:`Daemon` with a :class:`ScriptedFeed`."""

    async def _make_feed(self, tg: Any) -> Any:
        return ScriptedFeed([s.symbol for s in self.settings.active_symbols])


def write_daemon_config(tmp: Path, body: str) -> Path:
    """A config file whose data and runtime dirs live under ``tmp``."""
    path = tmp / "forexd.toml"
    head = f'data_dir = "{tmp / "data"}"\nruntime_dir = "{tmp / "run"}"\n'
    path.write_text(head + body, encoding="utf-8")
    return path


def make_daemon(config: Path, cls: type[InProcessDaemon] = InProcessDaemon) -> InProcessDaemon:
    """Build (not start) an in-process daemon from a config file, as ``forexd run`` does."""
    settings = load_settings(config)
    return cls(settings, resolve_paths(settings), config_path=config)


async def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Wait (on loop turns, not a fixed sleep) until ``condition()`` holds."""
    with anyio.fail_after(timeout_s):
        while not condition():  # noqa: ASYNC110 - see below
            # The daemon's state has no event per change (bars seen, a position): poll it
            # on a short interval under a deadline, never sleep for a guessed duration.
            await anyio.sleep(0.005)
    assert condition(), what


async def call(daemon: Daemon, cmd: str, **args: Any) -> Any:
    """Run a control command through the same handler ``forexd ctl`` reaches."""
    handler: Callable[[dict[str, Any]], Awaitable[Any]] = daemon.control.handlers[cmd]
    return await handler(args)
