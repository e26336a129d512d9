"""``forexd search``: the plan survives a kill, crashed trials are retried, the data is checked."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest

from forexd.errors import ConfigError, DataError
from forexd.models.errors import ModelError
from forexd.models.search import _result, run_search
from forexd.models.study import (
    StudyBusyError,
    StudyLock,
    best_trading_trial,
    fingerprint,
    set_target,
)
from forexd.models.trainconfig import Candles
from forexd.strategies.ml_params import MlParams
from tests._fxdata import LEAN_H1_EURUSD
from tests._mlsupport import SMALL_WF, bundled_candles
from tests.daemon_proc import forexd_cmd

KILL_WAIT_S = 240.0  # upper bound for the first trial to finish under a loaded 2-core CI
BASE = MlParams(lookback_candles=700, walk_forward=SMALL_WF)
PIP = 0.0001


def _search(candles: Candles, tmp_path: Path, **kw: object) -> object:
    args: dict[str, object] = {
        "symbol": "EURUSD", "pip_size": PIP, "study_dir": tmp_path / "studies",
        "study_name": "s", "kinds": ("logistic",), "train_workers": 1, "blas_threads": 1,
        "bars_per_year": 6000.0,
    } | kw  # fmt: skip
    return run_search(candles, BASE, **args)  # type: ignore[arg-type]


def _states(db: Path) -> list[str]:
    if not db.exists():
        return []
    with sqlite3.connect(db, timeout=30) as conn:
        try:
            return [row[0] for row in conn.execute("SELECT state FROM trials")]
        except sqlite3.OperationalError:  # the schema is not created yet
            return []


def test_killed_search_is_finished_to_its_original_target_by_the_same_command(
    tmp_path: Path,
) -> None:
    """kill -9 mid-run, then the same command: the stale trial is retried, the plan is met."""
    if not LEAN_H1_EURUSD.exists():
        pytest.skip(f"real FX data not found at {LEAN_H1_EURUSD}")
    config = tmp_path / "forexd.toml"
    config.write_text("[compute]\ntrain_workers = 1\nblas_threads = 1\n", encoding="utf-8")
    study_dir = tmp_path / "studies"
    argv = forexd_cmd(
        "search", "--symbol", "EURUSD", "--data", str(LEAN_H1_EURUSD), "--format",
        "oanda-lean", "--lookback-candles", "3000", "--model", "logistic", "--trials", "5",
        "--study-dir", str(study_dir), "--config", str(config), "--data-dir",
        str(tmp_path / "data"), "--json",
    )  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + KILL_WAIT_S
    states: list[str] = []
    # Wait on the event itself: a finished trial and its successor RUNNING in the study file.
    while not ("COMPLETE" in states and "RUNNING" in states):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"no trial finished in {KILL_WAIT_S} s: {states}"
        time.sleep(0.2)
        states = _states(study_dir / "studies.db")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _states(study_dir / "studies.db")
    finished = sum(s in ("COMPLETE", "FAIL") for s in before)
    running = before.count("RUNNING")
    assert running >= 1 and finished < 5

    again = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert 0 == again.returncode, again.stderr
    out = json.loads(again.stdout)
    assert (5, 5) == (out["target_trials"], out["trials_total"])
    assert running == out["recovered_stale"]
    assert 5 - finished == out["trials_this_run"]
    after = _states(study_dir / "studies.db")
    assert "RUNNING" not in after and running == after.count("FAIL")


def test_trial_left_running_is_failed_and_its_parameters_retried(tmp_path: Path) -> None:
    """A RUNNING trial of a dead driver is marked FAIL and re-run with the same parameters."""
    candles = bundled_candles(900)
    _search(candles, tmp_path, trials=1)
    storage = f"sqlite:///{tmp_path / 'studies' / 'studies.db'}"
    study = optuna.load_study(study_name="s", storage=storage)
    orphan = study.ask({"entry_threshold": optuna.distributions.FloatDistribution(0.34, 0.75)})
    result = _search(candles, tmp_path, trials=2)
    assert 1 == result.recovered_stale  # type: ignore[attr-defined]
    trials = optuna.load_study(study_name="s", storage=storage).trials
    assert optuna.trial.TrialState.FAIL == trials[orphan.number].state
    retry = [t for t in trials if t.user_attrs.get("retry_of") == orphan.number]
    assert (
        1 == len(retry) and retry[0].params["entry_threshold"] == orphan.params["entry_threshold"]
    )


def test_trials_is_a_target_total_and_more_adds_to_it(tmp_path: Path) -> None:
    """Re-running --trials N on a complete study runs nothing; --more N runs N more."""
    candles = bundled_candles(900)
    first = _search(candles, tmp_path, trials=2)
    again = _search(candles, tmp_path, trials=2)
    more = _search(candles, tmp_path, more=1)
    assert (2, 0, 3) == (
        first.trials_total,  # type: ignore[attr-defined]
        again.trials_this_run,  # type: ignore[attr-defined]
        more.trials_total,  # type: ignore[attr-defined]
    )


def test_study_without_a_plan_needs_trials() -> None:
    """A new study with neither --trials nor --more is refused, naming --trials."""
    study = optuna.create_study()
    with pytest.raises(ConfigError, match="--trials"):
        set_target(study, None, None)


def test_study_refuses_other_prices_with_the_same_rows_and_dates(tmp_path: Path) -> None:
    """Same length and timestamps but other prices (another symbol's file): DataError."""
    candles = bundled_candles(900)
    other = Candles(
        candles.ts, candles.open * 1.3, candles.high * 1.3, candles.low * 1.3, candles.close * 1.3
    )
    assert fingerprint(candles, "EURUSD") != fingerprint(other, "EURUSD")
    _search(candles, tmp_path, trials=1)
    with pytest.raises(DataError, match="other data"):
        _search(other, tmp_path, trials=1)


def _trial(value: float, trades: int) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(
        value=value,
        params={"x": value},
        distributions={"x": optuna.distributions.FloatDistribution(-10, 10)},
        user_attrs={"trading": {"trades": trades}},
    )


def test_best_is_never_a_configuration_that_made_no_trade() -> None:
    """A Sharpe of 0 from no trades does not beat a losing configuration that traded."""
    study = optuna.create_study(direction="maximize")
    study.add_trials([_trial(0.0, 0), _trial(-1.5, 40), _trial(-0.5, 12)])
    best = best_trading_trial(study)
    assert best is not None and (-0.5, 12) == (best.value, best.user_attrs["trading"]["trades"])


def test_study_where_no_trial_traded_is_an_error_not_a_best() -> None:
    """Only no-trade trials: the search says so (ModelError) instead of reporting a best."""
    study = optuna.create_study(direction="maximize")
    study.add_trials([_trial(0.0, 0), _trial(0.0, 0)])
    run = SimpleNamespace(errors=[], done=2, timed_out=0)
    with pytest.raises(ModelError, match="made a trade"):
        _result(study, "sqlite://", run, 0, 2, {"backend": "local"})  # type: ignore[arg-type]


def test_second_driver_on_the_same_study_is_refused(tmp_path: Path) -> None:
    """Only one search runs a study: the second lock holder gets a clear error."""
    first = StudyLock(tmp_path, "EURUSD-H1")
    first.acquire()
    try:
        with pytest.raises(StudyBusyError, match="another forexd search"):
            StudyLock(tmp_path, "EURUSD-H1").acquire()
    finally:
        first.release()
