"""The typed messages of a symbol actor's inbox, and the reply a caller may wait on.

Everything that changes an actor's state reaches it as one of these messages, in order
with its bars: the feed pump sends :class:`Bars` and :class:`FeedEnded`; the control
handlers and reload send :class:`SetPaused`, :class:`Flatten`, :class:`Retrain` and
:class:`ReplaceStrategy`; the broker guard sends :class:`AdoptFill`; the trainer sends
:class:`ChampionReady`. A caller that needs an answer passes a :class:`Reply` and waits
on it; the actor sets it after it handled the message (or with the error it raised).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from forexd.domain import Bar, Fill
from forexd.errors import ControlRefusedError
from forexd.strategies.base import Strategy

if TYPE_CHECKING:
    from forexd.models.champion import LiveChampion

REPLY_TIMEOUT_S = 30.0
"""Longest a caller waits for an actor's answer (guessed: covers a restart's backoff and
restore on a loaded box; an actor that needs longer is reported, not waited for)."""


class Reply:
    """A one-shot answer from the actor: a result or the exception it raised."""

    def __init__(self) -> None:
        self._done = anyio.Event()
        self._result: Any = None
        self._error: BaseException | None = None

    def set(self, result: Any) -> None:
        """The message was handled; ``result`` is the answer."""
        self._result = result
        self._done.set()

    def fail(self, error: BaseException) -> None:
        """Handling the message raised ``error``; the caller gets it."""
        self._error = error
        self._done.set()

    async def wait(self, symbol: str, what: str, timeout_s: float = REPLY_TIMEOUT_S) -> Any:
        """The answer; re-raises the actor's error.

        Raises:
            ControlRefusedError: no answer within ``timeout_s`` (the actor is stuck or
                was restarted in between; nothing was lost: the caller may ask again).
        """
        with anyio.move_on_after(timeout_s):
            await self._done.wait()
        if not self._done.is_set():
            raise ControlRefusedError(
                f"{symbol} did not handle {what} within {timeout_s:.0f} s; "
                "check `forexd ctl status` and try again"
            )
        if self._error is not None:
            raise self._error
        return self._result


@dataclass(frozen=True, slots=True)
class Bars:
    """Consecutive bars from the feed (one, or a chunk at full replay speed)."""

    bars: list[Bar]


@dataclass(frozen=True, slots=True)
class FeedEnded:
    """The feed has no more bars for this symbol (a replay reached its end)."""


@dataclass(frozen=True, slots=True)
class SetPaused:
    """Pause (no new decisions) or resume; answered with ``None``."""

    paused: bool
    reply: Reply = field(default_factory=Reply)


@dataclass(frozen=True, slots=True)
class Flatten:
    """Pause and close the position; answered with the closing order's summary."""

    reply: Reply = field(default_factory=Reply)


@dataclass(frozen=True, slots=True)
class Retrain:
    """Start a training cycle now; answered with whether one was already running."""

    reason: str
    reply: Reply = field(default_factory=Reply)


@dataclass(frozen=True, slots=True)
class ReplaceStrategy:
    """Trade with ``strategy`` from the next bar (reload); the bars and position stay."""

    strategy: Strategy
    params: dict[str, Any]
    reply: Reply = field(default_factory=Reply)


@dataclass(frozen=True, slots=True)
class ChampionReady:
    """The trainer promoted ``champion``: the strategy trades with it from the next bar."""

    champion: LiveChampion


@dataclass(frozen=True, slots=True)
class AdoptFill:
    """Take a position difference found at the broker into the book (``ctl adopt``)."""

    fill: Fill
    reply: Reply = field(default_factory=Reply)


Command = SetPaused | Flatten | Retrain | ReplaceStrategy | AdoptFill | ChampionReady
"""Messages that do not come from the feed (they survive an actor's restart)."""

Message = Bars | FeedEnded | Command
