"""Expensive per-bar predictions run in a worker thread, never on the event loop.

A scaled logistic regression predicts in a few microseconds (numpy fast path), but a random
forest's ``predict_proba`` costs milliseconds per row and a torch model's forward pass
about one; on the loop that is lag for every other symbol and the control socket. A
strategy that knows its next decision is expensive says so (``predicts_off_loop``); the
actor then calls :func:`predict_ahead` before it hands the bar to the core: the history
*including* the new bar is copied (a few arrays of warm-up length, microseconds) and the
strategy's ``predict_next`` runs on that copy in a worker thread. ``decide`` then finds
the prediction ready and only applies its thresholds on the loop. The copy is what makes
this safe: the worker never reads the ring buffer that the next bar overwrites.

Inference uses anyio's default thread limiter, not the compute pool: a prediction must
never queue behind a training job.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import anyio
import numpy as np
import numpy.typing as npt

from forexd.domain import Bar


@runtime_checkable
class PredictsOffLoop(Protocol):
    """A strategy whose next prediction is expensive enough to leave the loop."""

    @property
    def predicts_off_loop(self) -> bool:
        """True while the next ``decide`` would spend more than ~1 ms predicting."""
        ...

    def predict_next(self, history: Any) -> None:
        """Worker thread: predict for ``history`` (ending with the new bar); keep it for decide."""
        ...


class HistorySnapshot:
    """A frozen copy of a :class:`~forexd.strategies.base.BarHistory` plus one new bar.

    Offers the read methods a prediction uses (``opens(n)`` ... ``times(n)``, ``len``,
    ``last_ts``) over arrays that nothing else writes to.
    """

    __slots__ = ("_close", "_high", "_low", "_open", "_ts", "instrument", "last_ts")

    def __init__(self, history: Any, bar: Bar) -> None:
        self.instrument = history.instrument
        self.last_ts = bar.ts
        keep = history.capacity - 1  # the new bar pushes the oldest one out
        self._open = np.append(history.opens(keep), bar.open)
        self._high = np.append(history.highs(keep), bar.high)
        self._low = np.append(history.lows(keep), bar.low)
        self._close = np.append(history.closes(keep), bar.close)
        self._ts = np.append(history.times(keep), np.int64(bar.ts))

    def __len__(self) -> int:
        return len(self._ts)

    @staticmethod
    def _tail(arr: npt.NDArray[Any], n: int | None) -> npt.NDArray[Any]:
        return arr if n is None else arr[max(0, len(arr) - n) :]

    def opens(self, n: int | None = None) -> npt.NDArray[np.float64]:
        """Last ``n`` opens, oldest first."""
        return self._tail(self._open, n)

    def highs(self, n: int | None = None) -> npt.NDArray[np.float64]:
        """Last ``n`` highs, oldest first."""
        return self._tail(self._high, n)

    def lows(self, n: int | None = None) -> npt.NDArray[np.float64]:
        """Last ``n`` lows, oldest first."""
        return self._tail(self._low, n)

    def closes(self, n: int | None = None) -> npt.NDArray[np.float64]:
        """Last ``n`` closes, oldest first."""
        return self._tail(self._close, n)

    def times(self, n: int | None = None) -> npt.NDArray[np.int64]:
        """Last ``n`` bar open times (epoch ns), oldest first."""
        return self._tail(self._ts, n)


async def predict_ahead(strategy: object, history: Any, bar: Bar) -> bool:
    """Run ``strategy``'s expensive prediction for ``history + bar`` in a worker thread.

    Returns whether it did (False: the strategy predicts cheaply, or is not an ML one).
    Errors are the strategy's to record: ``decide`` predicts again on the loop and
    reports them as it always does.
    """
    if not isinstance(strategy, PredictsOffLoop) or not strategy.predicts_off_loop:
        return False
    snapshot = HistorySnapshot(history, bar)
    await anyio.to_thread.run_sync(strategy.predict_next, snapshot)
    return True
