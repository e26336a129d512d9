"""The feed contract: an async source of bars for a set of symbols."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from forexd.domain import Bar


class Feed(Protocol):
    """Produces bars in time order per symbol. Implementations: replay, OANDA."""

    def bars(self, symbol: str, after_ts: int | None = None) -> AsyncIterator[Bar]:
        """Yield the symbol's bars with ``ts > after_ts``; the iterator ends when the data
        is exhausted (replay) or never (live)."""
        ...
