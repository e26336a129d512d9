"""The feed contract: an async source of bars for a set of symbols."""

from __future__ import annotations

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
