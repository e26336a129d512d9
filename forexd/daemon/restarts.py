"""When a crashed actor is restarted, and when it is given up on.

Exponential backoff between restarts (``restart_backoff_s`` doubling up to
``restart_backoff_max_s``), and ``failed`` after ``max_crashes`` crashes within
``crash_window_s``. A life that ran at least ``healthy_run_s`` before it crashed was
healthy: the backoff starts again from ``restart_backoff_s``, so one bad hour a week ago
does not make today's first restart wait the maximum.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from forexd.config import ActorConfig


@dataclass(frozen=True, slots=True)
class RestartDecision:
    """What to do after a crash.

    Attributes:
        give_up: the crash budget is spent: park the actor as ``failed``.
        delay_s: how long to wait before the next life (0 when giving up).
        crashes_in_window: crashes counted within ``crash_window_s``, this one included.
    """

    give_up: bool
    delay_s: float
    crashes_in_window: int


class RestartPolicy:
    """The crash history of one actor; see the module note."""

    def __init__(self) -> None:
        self._crashes: deque[float] = deque()
        self._next_backoff_s: float | None = None

    def after_crash(self, cfg: ActorConfig, *, started_at: float, now: float) -> RestartDecision:
        """Record a crash of the life that started at ``started_at`` (monotonic seconds).

        ``cfg`` is passed on every call because a reload may change it.
        """
        self._crashes.append(now)
        while self._crashes and now - self._crashes[0] > cfg.crash_window_s:
            self._crashes.popleft()
        count = len(self._crashes)
        if count >= cfg.max_crashes:
            return RestartDecision(True, 0.0, count)
        healthy = now - started_at >= cfg.healthy_run_s
        if healthy or self._next_backoff_s is None:
            delay = cfg.restart_backoff_s
        else:
            delay = min(self._next_backoff_s, cfg.restart_backoff_max_s)
        self._next_backoff_s = min(delay * 2, cfg.restart_backoff_max_s)
        return RestartDecision(False, delay, count)
