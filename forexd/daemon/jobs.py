"""The daemon's training job queue: every retraining is a job an operator can see and cancel.

Each job shows its ``backend`` and ``node``: ``local`` and this host for the daemon's own
compute pool; ``ray`` and the cluster's address while a Ray task runs it, then the node the
task ran on (a Ray task cannot report phases or progress while it runs: its job shows
``training`` until the model is back).

A job is made when a cycle is scheduled (``retrain_every_bars``) or requested
(``ctl retrain``, ``ctl train SYMBOL [--lookback-candles N]``); the training cycle adopts the
job queued for its symbol, reports phases and walk-forward progress to it from the worker
thread, and finishes it. ``ctl jobs`` lists them, ``ctl cancel JOB`` cancels one: a queued
job never starts; a running one has its cycle's cancel scope cancelled (the worker stops at
its next fold, exactly as on a timeout), and the champion is left as it was.

The table is in memory (the daemon's view of its own work); finished jobs are kept up to
:data:`KEEP_FINISHED` so ``ctl jobs`` shows recent history. Methods are called from the
event loop and, for progress, from worker threads, hence the lock.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from forexd.errors import ForexdError

JobState = Literal["queued", "running", "done", "failed", "cancelled"]
FINISHED: tuple[str, ...] = ("done", "failed", "cancelled")
KEEP_FINISHED = 50  # finished jobs kept for ctl jobs (a guess: a day of hourly retrains)


class UnknownJobError(ForexdError):
    """No job has this id (or it finished long ago and was forgotten)."""


@dataclass(slots=True)
class TrainingJob:
    """One training job, as ``ctl jobs`` shows it (times are epoch seconds)."""

    id: str
    symbol: str
    kind: str  # "retrain" (scheduled) or "operator"
    backend: str
    node: str
    state: JobState
    progress: float  # 0..1 over walk-forward folds and the final fit
    phase: str
    submitted_at: float
    started_at: float | None
    finished_at: float | None
    timeout_s: float | None
    lookback_candles: int | None
    error: str | None = None
    outcome: str | None = None
    placed: bool = False  # node is where the work ran (else: where it was sent)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values."""
        return asdict(self)


class TrainingJobs:
    """The queue and history of one daemon's training jobs."""

    def __init__(self, backend: str = "local", node: str | None = None) -> None:
        """Jobs run on ``backend`` (the daemon trains in its own compute pool) at ``node``."""
        self.backend = backend
        self.node = node or socket.gethostname()
        self._lock = threading.Lock()
        self._jobs: dict[str, TrainingJob] = {}
        self._cancel: dict[str, Callable[[], None]] = {}
        self._adopted: set[str] = set()

    def submit(
        self, symbol: str, kind: str, *, timeout_s: float | None, lookback: int | None = None
    ) -> TrainingJob:
        """Queue a job for ``symbol``; the next cycle of that symbol adopts it."""
        job = TrainingJob(
            id=f"job-{secrets.token_hex(4)}", symbol=symbol, kind=kind, backend=self.backend,
            node=self.node, state="queued", progress=0.0, phase="queued",
            submitted_at=time.time(), started_at=None, finished_at=None, timeout_s=timeout_s,
            lookback_candles=lookback,
        )  # fmt: skip
        with self._lock:
            self._jobs[job.id] = job
            self._forget_old()
        return job

    def adopt(self, symbol: str, kind: str, *, timeout_s: float | None) -> TrainingJob | None:
        """The oldest waiting job of ``symbol`` (or a new one of ``kind``), now running.

        Returns:
            The job, or ``None`` when the oldest waiting job was cancelled before it
            started: the cycle it asked for is skipped.
        """
        with self._lock:
            waiting = [
                j
                for j in self._jobs.values()
                if j.symbol == symbol and j.id not in self._adopted and j.started_at is None
            ]
            if waiting:
                self._adopted.add(waiting[0].id)
                if waiting[0].state == "cancelled":
                    return None
        job = waiting[0] if waiting else self.submit(symbol, kind, timeout_s=timeout_s)
        with self._lock:
            self._adopted.add(job.id)
            job.state, job.phase, job.started_at = "running", "starting", time.time()
        return job

    def run_on(self, backend: str, node: str) -> None:
        """Jobs submitted from now on run on ``backend`` at ``node`` (a Ray cluster's address
        until a task reports the node it really ran on, see :meth:`placed`)."""
        with self._lock:
            self.backend, self.node = backend, node

    def placed(self, symbol: str, node: str) -> None:
        """The running job of ``symbol`` ran (part of) its work on ``node``.

        One cycle per symbol runs at a time, so the symbol names the job. A cycle whose
        tasks ran on several nodes lists each once, in order.
        """
        with self._lock:
            for job in self._jobs.values():
                if job.symbol == symbol and job.state == "running":
                    known = job.node.split(", ") if job.placed else []
                    job.node = ", ".join(dict.fromkeys([*known, node]))
                    job.placed = True

    def on_cancel(self, job_id: str, cancel: Callable[[], None]) -> None:
        """What cancels the running job (its cycle's cancel scope)."""
        with self._lock:
            self._cancel[job_id] = cancel

    def set_phase(self, job_id: str, phase: str) -> None:
        """The cycle's phase (``training``, ``evaluating``, ``registering``)."""
        with self._lock:
            self._jobs[job_id].phase = phase

    def set_progress(self, job_id: str, done: int, total: int) -> None:
        """Walk-forward progress: ``done`` of ``total`` steps (folds and the final fit)."""
        with self._lock:
            self._jobs[job_id].progress = round(done / total, 4) if total else 0.0

    def finish(self, job_id: str, *, error: str | None = None, outcome: str | None = None) -> None:
        """The job ended: done, failed (``error``), or cancelled if that was asked."""
        with self._lock:
            job = self._jobs[job_id]
            self._cancel.pop(job_id, None)
            if job.state != "cancelled":
                job.state = "failed" if error else "done"
                job.progress = 1.0 if not error else job.progress
            job.error, job.outcome = error, outcome
            job.phase, job.finished_at = job.state, time.time()

    def cancel(self, job_id: str) -> TrainingJob:
        """Cancel a queued or running job.

        Raises:
            UnknownJobError: no such job.
            ForexdError: the job has already finished.
        """
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise UnknownJobError(f"no training job {job_id!r}; list them with: ctl jobs")
            if job.state in FINISHED:
                raise ForexdError(f"job {job_id} already {job.state}; nothing to cancel")
            queued = job.state == "queued"
            job.state = "cancelled"
            if queued:
                job.phase, job.finished_at = "cancelled", time.time()
            cancel = self._cancel.get(job_id)
        if cancel is not None:
            cancel()
        return job

    def is_cancelled(self, job_id: str) -> bool:
        """Whether the job was cancelled (a queued one is skipped by its cycle)."""
        with self._lock:
            return self._jobs[job_id].state == "cancelled"

    def list(self) -> list[dict[str, Any]]:
        """Every job known, oldest first."""
        with self._lock:
            return [j.to_dict() for j in self._jobs.values()]

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.state in FINISHED]
        for job in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[job.id]
