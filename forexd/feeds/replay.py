"""Replay feed: plays stored or file candles through the live path.

``speed = 0`` emits bars as fast as the actors take them (back-pressure comes from the
actor's inbox); ``speed = N`` sleeps the bar-to-bar gap divided by N, capped at
``max_sleep_s`` so a weekend does not stall a demo. The iterator ends when the data does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import anyio
import numpy as np
import pandas as pd
import structlog
from anyio.lowlevel import checkpoint

from forexd.domain import NS_PER_S, Bar

# Lazy: resolved at first use, after the entry point configured structlog.
_log = structlog.get_logger(component="feed")
CHECKPOINT_EVERY_BARS = 256  # yield to the loop at least this often at speed 0
CHUNK_BARS = 256  # bars per inbox message at speed 0


@dataclass(slots=True)
class ReplayFeed:
    """Bars from in-memory frames (columns ts, open, high, low, close, volume)."""

    frames: dict[str, pd.DataFrame]
    speed: float = 0.0
    max_sleep_s: float = 5.0
    exhausted: set[str] = field(default_factory=set)
    clock: Callable[[], float] = field(default=anyio.current_time)

    async def bars(self, symbol: str, after_ts: int | None = None) -> AsyncIterator[Bar]:
        """Yield the symbol's bars with ``ts > after_ts`` in time order."""
        frame = self.frames[symbol]
        ts = frame["ts"].to_numpy(dtype=np.int64)
        start = 0 if after_ts is None else int(np.searchsorted(ts, after_ts, side="right"))
        cols = [
            frame[c].to_numpy(dtype=np.float64)[start:].tolist()
            for c in ("open", "high", "low", "close", "volume")
        ]
        prev_ts: int | None = None
        for n, (t, o, h, lo, c, v) in enumerate(zip(ts[start:].tolist(), *cols, strict=True)):
            if self.speed > 0 and prev_ts is not None:
                await anyio.sleep(min((t - prev_ts) / NS_PER_S / self.speed, self.max_sleep_s))
            elif n % CHECKPOINT_EVERY_BARS == 0:
                await checkpoint()
            prev_ts = t
            yield Bar(symbol, t, o, h, lo, c, v)
        self.exhausted.add(symbol)

    async def chunks(self, symbol: str, after_ts: int | None = None) -> AsyncIterator[list[Bar]]:
        """Like :meth:`bars`, grouped: up to CHUNK_BARS per list at speed 0, one otherwise.

        At full speed a message per bar would spend more time in stream hand-offs than in
        the strategy; paced replay keeps one bar per message so each arrives on time.
        """
        size = CHUNK_BARS if self.speed == 0 else 1
        chunk: list[Bar] = []
        async for bar in self.bars(symbol, after_ts):
            chunk.append(bar)
            if len(chunk) >= size:
                _log.debug("feed_bars", symbol=symbol, bars=len(chunk), last_ts=chunk[-1].ts)
                yield chunk
                chunk = []
        if chunk:
            _log.debug("feed_bars", symbol=symbol, bars=len(chunk), last_ts=chunk[-1].ts)
            yield chunk

    def remaining(self, symbol: str, after_ts: int | None) -> int:
        """Bars left to replay after ``after_ts``."""
        ts = self.frames[symbol]["ts"].to_numpy(dtype=np.int64)
        return len(ts) - (0 if after_ts is None else int(np.searchsorted(ts, after_ts, "right")))
