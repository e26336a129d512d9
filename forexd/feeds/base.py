"""The feed contract: an async source of bars for a set of symbols."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from forexd.domain import Bar


class Feed(Protocol):
    """Produces bars in time order per symbol. Implementations: replay, OANDA."""

    def bars(self, symbol: str, after_ts: int | None = None) -> AsyncIterator[Bar]:
        """Yield the symbol's bars with ``ts > after_ts``; the iterator ends when the data
        is exhausted (replay) or never (live)."""
        ...


@runtime_checkable
class ChunkedFeed(Feed, Protocol):
    """A feed that can hand over several bars per message (replay at full speed)."""

    def chunks(self, symbol: str, after_ts: int | None = None) -> AsyncIterator[list[Bar]]:
        """Yield lists of consecutive bars with ``ts > after_ts``."""
        ...


def is_replay(feed: object) -> bool:
    """Whether ``feed`` is a :class:`~forexd.feeds.replay.ReplayFeed`, without importing it.

    That module loads pandas (~0.3 s): a live daemon never needs it, and no instance of
    a class can exist before its module was imported.
    """
    replay = sys.modules.get("forexd.feeds.replay")
    return replay is not None and isinstance(feed, replay.ReplayFeed)
