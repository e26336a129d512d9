"""The stored Optuna study of ``forexd search``: data identity, its plan, crash recovery, best.

- **Data identity.** A study remembers a fingerprint of the data it searched, including a
  SHA-256 of the candle arrays, so resuming it on other prices (another symbol's file with
  the same row count and dates) is refused instead of silently mixing results.
- **The plan.** A study records its target number of trials; ``--trials N`` sets it,
  ``--more N`` raises it by N, and a run stops when the study has that many finished trials,
  so re-running the command after a kill finishes the plan rather than starting it again.
- **Crash recovery.** One driver runs a study at a time (a lock file next to the storage);
  the driver that takes the lock therefore knows that every trial still RUNNING was left so
  by a driver that died. Those are marked FAIL (reason recorded) and their parameters are
  queued again, so the next run retries them. Optuna's heartbeat does the same through a
  grace period, which would make every restart wait for it; the lock makes it immediate.
- **The best.** A configuration that made no trade has a Sharpe of 0, which can beat every
  losing configuration; it is never reported as the best, and the trade count is shown.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from forexd.errors import ConfigError
from forexd.models.trainconfig import Candles

TARGET_ATTR = "target_trials"
STALE_ATTR = "stale"


class StudyBusyError(ConfigError):
    """Another ``forexd search`` is running the same study."""


def fingerprint(candles: Candles, symbol: str) -> dict[str, Any]:
    """What identifies the data of a study: symbol, size, time span and a content hash."""
    digest = hashlib.sha256()
    for column in (candles.ts, candles.open, candles.high, candles.low, candles.close):
        digest.update(np.ascontiguousarray(column).tobytes())
    return {
        "symbol": symbol,
        "candles": len(candles),
        "first_ts": int(candles.ts[0]),
        "last_ts": int(candles.ts[-1]),
        "sha256": digest.hexdigest(),
    }


class StudyLock:
    """An exclusive, non-blocking lock on one study (released when the process dies)."""

    def __init__(self, study_dir: Path, study_name: str) -> None:
        """Name the lock file ``<study_dir>/<study_name>.lock`` (sanitised)."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in study_name)
        self.path = study_dir / f"{safe}.lock"
        self._file: Any = None

    def acquire(self) -> None:
        """Take the lock.

        Raises:
            StudyBusyError: another process holds it.
        """
        import portalocker

        handle = self.path.open("a+")
        try:
            portalocker.lock(handle, portalocker.LOCK_EX | portalocker.LOCK_NB)
        except portalocker.exceptions.LockException:
            handle.close()
            raise StudyBusyError(
                f"study lock {self.path} is held: another forexd search is running this "
                "study; wait for it to finish or choose another --study-name"
            ) from None
        self._file = handle

    def release(self) -> None:
        """Release the lock (idempotent)."""
        if self._file is not None:
            import portalocker

            portalocker.unlock(self._file)
            self._file.close()
            self._file = None


def recover_stale(study: Any) -> int:
    """Fail the trials a dead driver left RUNNING and queue their parameters again.

    Call only while holding the :class:`StudyLock` (no live driver owns a RUNNING trial).

    Returns:
        How many trials were recovered.
    """
    import optuna

    states = (optuna.trial.TrialState.RUNNING,)
    stale = study.get_trials(deepcopy=False, states=states)
    storage = study._storage  # Optuna's public API cannot fail another process's trial
    for trial in stale:
        storage.set_trial_user_attr(trial._trial_id, STALE_ATTR, True)
        storage.set_trial_user_attr(
            trial._trial_id,
            "fail_reason",
            "left RUNNING by a search that stopped (killed or crashed); retried",
        )
        storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
    return len(stale)


def finished_count(study: Any) -> int:
    """Trials that count towards the plan: complete, pruned, or failed for their own reason."""
    import optuna

    state = optuna.trial.TrialState
    return sum(
        1
        for t in study.get_trials(deepcopy=False)
        if t.state in (state.COMPLETE, state.PRUNED)
        or (t.state == state.FAIL and not t.user_attrs.get(STALE_ATTR))
    )


def set_target(study: Any, trials: int | None, more: int | None) -> int:
    """The study's target total after this command's ``--trials``/``--more``.

    Raises:
        ConfigError: neither is given and the study has no recorded target, or one is < 1.
    """
    for flag, value in (("--trials", trials), ("--more", more)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    recorded = study.user_attrs.get(TARGET_ATTR)
    if trials is not None:
        target = trials
    elif more is not None:
        target = finished_count(study) + more
    elif isinstance(recorded, int):
        target = recorded
    else:
        raise ConfigError(
            f"study {study.study_name!r} has no plan yet: give --trials N (the target total)"
        )
    study.set_user_attr(TARGET_ATTR, target)
    return target


def trade_count(trial: Any) -> int:
    """Trades the trial's configuration made out of sample (0 if it recorded none)."""
    trading = trial.user_attrs.get("trading") or {}
    return int(trading.get("trades", 0))


def best_trading_trial(study: Any) -> Any | None:
    """The complete trial with the highest value among those that made at least one trade."""
    import optuna

    candidates = [
        t
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if t.value is not None and trade_count(t) > 0
    ]
    return max(candidates, key=lambda t: (t.value, -t.number), default=None)
