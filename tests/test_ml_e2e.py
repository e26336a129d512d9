"""End to end: an ``ml`` symbol in ``forexd run`` trains, restores, stays within its threads."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.daemon_proc import DaemonProc, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CONFIG = """
[feed]
source = "bundled"
speed = {speed}
end = "{end}"

[[symbols]]
symbol = "EURUSD"
strategy = "ml"

[symbols.params]
lookback_candles = {lookback}
retrain_every_bars = {every}
walk_forward = {{ n_folds = {folds}, min_train_rows = 60 }}
model = {model}
"""
LOGISTIC = '{ kind = "logistic" }'

THREAD_ALLOWANCE = 2
"""Threads a cycle may add beyond its k BLAS threads: the pool's worker thread runs the job
(and is one of the k when k = 1), one more anyio worker for the cleanup/registry hand-offs,
and one spare for a library helper thread (measured: the peak stays at idle + 1 or + 2)."""


def _config(tmp: Path, name: str, *, end: str, lookback: int = 600, every: int = 500,
            folds: int = 3, model: str = LOGISTIC, speed: float = 0) -> Path:  # fmt: skip
    body = CONFIG.format(
        end=end, lookback=lookback, every=every, folds=folds, model=model, speed=speed
    )
    return write_config(tmp / f"{name}.toml", body)


def _champion(data: Path) -> tuple[str, str]:
    with sqlite3.connect(data / "forexd.db") as conn:
        row = conn.execute(
            "SELECT model_id, artifact FROM models WHERE status = 'champion'"
        ).fetchone()
    assert row is not None
    return str(row[0]), str(row[1])


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A data dir whose daemon replayed Jan-Mar 2017 and trained an EURUSD champion."""
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="fxd-ml-", dir="/tmp"))
    data = tmp / "data"
    proc = DaemonProc(data, _config(tmp, "first", end="2017-03-15"), "--exit-when-done")
    try:
        finished = proc.wait_for("training_cycle_finished", timeout=120, symbol="EURUSD")
        assert "promoted" == finished["decision"], finished
        assert finished["cycle_id"].startswith("EURUSD-")
        assert "gc" in finished["cleanup_hooks_run"], finished  # the cleanup report is logged
        assert finished["rss_after_cleanup_mb"] > 0
        # The learning stack was imported before the start-up freeze, so the first cycle
        # brought (almost) no new modules into the collector's scans and its one full
        # pass was short (docs/benchmarks.md: ~130 ms when it had to scan them).
        assert proc.wait_for("training_stack_preloaded")["modules"] > 500
        assert finished["gc_pause_ms"] < 60, finished
        assert 0 == proc.wait(timeout=120)
    finally:
        proc.kill()
    yield data
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def data_copy(trained_dir: Path, short_tmp: Path) -> Path:
    """A private copy of the trained data dir."""
    copy = short_tmp / "data"
    shutil.copytree(trained_dir, copy)
    return copy


def test_champion_trained_by_the_daemon_is_loaded_after_a_restart(
    data_copy: Path, short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """The registry survives a restart: the champion is loaded and shown in ctl status."""
    model_id, _ = _champion(data_copy)
    d = daemon_factory(data_copy, _config(short_tmp, "again", end="2017-04-01", every=10**6))
    loaded = d.wait_for("champion_loaded", symbol="EURUSD")
    assert model_id == loaded["model_id"]
    d.wait_for("feed_exhausted", symbol="EURUSD")
    training = d.status()["symbols"][0]["training"]
    assert model_id == training["champion"]["model_id"]
    assert training["last_error"] is None
    assert "idle" == training["state"]
    assert 0 == d.signal(signal.SIGTERM)


def test_corrupt_champion_at_restart_is_reported_and_the_daemon_keeps_running(
    data_copy: Path, short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """A damaged artifact: error line and status, no champion, the daemon still serves."""
    _, artifact = _champion(data_copy)
    path = data_copy / "models" / artifact
    path.write_bytes(b"not a zip" + path.read_bytes()[9:])
    d = daemon_factory(data_copy, _config(short_tmp, "again", end="2017-04-01", every=10**6))
    failed = d.wait_for("champion_load_failed", symbol="EURUSD")
    assert "corrupt" in failed["error"]
    d.wait_for("feed_exhausted", symbol="EURUSD")
    status = d.status()
    assert "running" == status["state"]
    training = status["symbols"][0]["training"]
    assert training["champion"] is None
    assert "corrupt" in training["last_error"]
    assert 0 == d.signal(signal.SIGTERM)


class _ThreadSampler:
    """Samples a process's OS thread count in the background until stopped."""

    def __init__(self, pid: int) -> None:
        self._proc = psutil.Process(pid)
        self._stop = threading.Event()
        self.peak = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.002):  # sampling period, not a wait for an event
            try:
                self.peak = max(self.peak, self._proc.num_threads())
            except psutil.NoSuchProcess:
                return

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


BLAS_ENV = {"FOREXD_COMPUTE__BLAS_THREADS": "1", "FOREXD_COMPUTE__TRAIN_WORKERS": "1"}
HGB = '{ kind = "hist_gradient_boosting", hyperparameters = { max_iter = 40 } }'
SLOW = '{ kind = "random_forest", hyperparameters = { n_estimators = 150, max_depth = 10 } }'
TRICKLE = 10_000.0
"""Replay speed (x real time: an H1 bar every 0.36 s) that keeps the feed, and so the actor
that serves ``ctl retrain``, alive for the whole test."""


@pytest.fixture(scope="module")
def stored_dir() -> Iterator[Path]:
    """A data dir holding Jan - mid-May 2017 candles (about 2,300 bars), no model."""
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="fxd-ml-", dir="/tmp"))
    data = tmp / "data"
    cfg = _config(tmp, "store", end="2017-05-15", lookback=2000, every=10**6)
    proc = DaemonProc(data, cfg, "--exit-when-done")
    try:
        assert 0 == proc.wait(timeout=120)
    finally:
        proc.kill()
    yield data
    shutil.rmtree(tmp, ignore_errors=True)


def _live(stored: Path, tmp: Path, factory: type[DaemonProc], model: str, folds: int) -> DaemonProc:
    """A daemon trickling the rest of May over the stored candles, retraining on request."""
    data = tmp / "data"
    shutil.copytree(stored, data)
    cfg = _config(tmp, "live", end="2017-06-01", lookback=2000, every=10**6, folds=folds,
                  model=model, speed=TRICKLE)  # fmt: skip
    d = factory(data, cfg, env=BLAS_ENV)
    d.wait_for("ready")
    return d


def test_training_stays_within_the_blas_thread_budget(
    stored_dir: Path, short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """With k = 1 BLAS thread, a cycle adds at most k + THREAD_ALLOWANCE OS threads."""
    d = _live(stored_dir, short_tmp, daemon_factory, HGB, folds=3)
    budget = d.status()["budget"]
    assert (1, 1) == (budget["blas_threads"], budget["train_workers"])
    idle = psutil.Process(d.proc.pid).num_threads()
    sampler = _ThreadSampler(d.proc.pid)
    assert 0 == d.ctl("retrain", "EURUSD").returncode
    finished = d.wait_for("training_cycle_finished", timeout=120, symbol="EURUSD")
    peak = sampler.stop()
    assert "error" not in finished, finished
    assert peak <= idle + 1 + THREAD_ALLOWANCE, (idle, peak)
    assert 0 == d.signal(signal.SIGTERM)


def test_shutdown_during_training_exits_promptly_and_cleanly(
    stored_dir: Path, short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """SIGTERM while a cycle trains: the cycle is cancelled and the daemon exits 0 at once."""
    d = _live(stored_dir, short_tmp, daemon_factory, SLOW, folds=8)
    assert 0 == d.ctl("retrain", "EURUSD").returncode
    d.wait_for("training_phase", symbol="EURUSD", phase="training")
    started = time.monotonic()
    assert 0 == d.signal(signal.SIGTERM, timeout=30)
    elapsed = time.monotonic() - started
    events = [line.get("event") for line in d.lines]
    assert "stopped" in events
    assert "training_cycle_finished" not in events
    assert elapsed < 10.0, elapsed  # one fold's fit at most, not the whole cycle


def test_training_in_spawned_worker_processes_promotes_a_champion(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """compute.executor = "processes": the cycle runs in a spawned process, same result."""
    cfg = _config(short_tmp, "proc", end="2017-03-15")
    d = daemon_factory(
        short_tmp / "data", cfg, "--exit-when-done", env={"FOREXD_COMPUTE__EXECUTOR": "processes"}
    )
    finished = d.wait_for("training_cycle_finished", timeout=180, symbol="EURUSD")
    assert "promoted" == finished.get("decision"), json.dumps(finished)[:2000]
    assert 0 == d.wait(timeout=120)
    model_id, artifact = _champion(short_tmp / "data")
    assert model_id.startswith("EURUSD")
    assert (short_tmp / "data" / "models").is_dir()
    assert artifact
