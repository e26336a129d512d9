"""The daemon's training job queue: the table itself, and ``ctl jobs/train/cancel`` end to end."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from forexd.cli.app import build_parser
from forexd.cli.ctl import ctl_request
from forexd.cli.ctl_render import renderer
from forexd.daemon.jobs import KEEP_FINISHED, TrainingJobs, UnknownJobError
from forexd.errors import ConfigError, ForexdError
from tests.daemon_proc import DaemonProc
from tests.test_ml_e2e import HGB, SLOW, _live, stored_dir  # noqa: F401 - the fixture


def test_operator_job_is_adopted_by_the_next_cycle_and_reports_progress() -> None:
    """ctl train queues a job; the cycle adopts it, reports folds, and finishes it done."""
    jobs = TrainingJobs(node="here")
    queued = jobs.submit("EURUSD", "operator", timeout_s=60.0, lookback=1500)
    job = jobs.adopt("EURUSD", "retrain", timeout_s=60.0)
    assert job is not None and queued.id == job.id and "running" == job.state
    jobs.set_phase(job.id, "training")
    jobs.set_progress(job.id, 2, 4)
    assert (0.5, "training") == (jobs.list()[0]["progress"], jobs.list()[0]["phase"])
    jobs.finish(job.id, outcome="promoted")
    row = jobs.list()[0]
    assert ("done", 1.0, "promoted", 1500, "local@here") == (
        row["state"], row["progress"], row["outcome"], row["lookback_candles"],
        f"{row['backend']}@{row['node']}",
    )  # fmt: skip


def test_scheduled_cycle_without_a_queued_job_gets_its_own() -> None:
    """A retrain due by the schedule is a job of kind retrain."""
    jobs = TrainingJobs()
    job = jobs.adopt("EURUSD", "retrain", timeout_s=None)
    assert job is not None and ("retrain", "running") == (job.kind, job.state)


def test_job_cancelled_while_queued_is_skipped_by_its_cycle() -> None:
    """Cancelling a queued job means its cycle never starts."""
    jobs = TrainingJobs()
    queued = jobs.submit("EURUSD", "operator", timeout_s=None)
    jobs.cancel(queued.id)
    assert jobs.adopt("EURUSD", "operator", timeout_s=None) is None
    assert "cancelled" == jobs.list()[0]["state"]


def test_cancelling_a_running_job_calls_its_cycle_cancel_and_stays_cancelled() -> None:
    """A running job's cancel hook is called; finishing it later keeps it cancelled."""
    jobs = TrainingJobs()
    job = jobs.adopt("EURUSD", "operator", timeout_s=None)
    assert job is not None
    called: list[bool] = []
    jobs.on_cancel(job.id, lambda: called.append(True))
    jobs.cancel(job.id)
    jobs.finish(job.id, error="cancelled (ctl cancel)")
    assert [True] == called and "cancelled" == jobs.list()[0]["state"]


def test_unknown_or_finished_job_cannot_be_cancelled() -> None:
    """An unknown id names ctl jobs; a finished job says it already finished."""
    jobs = TrainingJobs()
    with pytest.raises(UnknownJobError, match="ctl jobs"):
        jobs.cancel("job-nope")
    job = jobs.adopt("EURUSD", "retrain", timeout_s=None)
    assert job is not None
    jobs.finish(job.id)
    with pytest.raises(ForexdError, match="already done"):
        jobs.cancel(job.id)


def test_history_keeps_only_the_recent_finished_jobs() -> None:
    """The table does not grow without bound: old finished jobs are forgotten."""
    jobs = TrainingJobs()
    for _ in range(KEEP_FINISHED + 10):
        job = jobs.adopt("EURUSD", "retrain", timeout_s=None)
        assert job is not None
        jobs.finish(job.id)
    jobs.submit("EURUSD", "operator", timeout_s=None)
    assert KEEP_FINISHED + 1 == len(jobs.list())


def _drawn(action: str, result: dict[str, Any]) -> str:
    from rich.console import Console

    console = Console(record=True, width=160)
    renderer(action, result)(console)
    return console.export_text()


def test_ctl_train_and_cancel_parse_into_their_protocol_requests() -> None:
    """ctl train SYMBOL --lookback-candles N / ctl cancel JOB: the request the daemon gets."""
    parser = build_parser("ctl")
    args = parser.parse_args(["ctl", "train", "eurusd", "--lookback-candles", "1500"])
    assert ("train", {"symbol": "EURUSD", "lookback_candles": 1500}) == ctl_request(args)
    args = parser.parse_args(["ctl", "cancel", "job-7"])
    assert ("cancel", {"job": "job-7"}) == ctl_request(args)
    with pytest.raises(ConfigError, match="--lookback-candles must be at least 1"):
        ctl_request(parser.parse_args(["ctl", "train", "EURUSD", "--lookback-candles", "0"]))


def test_ctl_jobs_train_and_cancel_are_drawn_for_people() -> None:
    """Human output: a row per job with state, progress and error; a sentence for train/cancel."""
    jobs = TrainingJobs()
    queued = jobs.submit("EURUSD", "operator", timeout_s=60.0, lookback=1500)
    running = jobs.adopt("EURUSD", "operator", timeout_s=60.0)
    assert running is not None and running.id == queued.id
    jobs.set_progress(running.id, 1, 4)
    failed = jobs.submit("GBPUSD", "operator", timeout_s=60.0)
    jobs.cancel(failed.id)
    table = _drawn("jobs", {"jobs": jobs.list()})
    row = next(line for line in table.splitlines() if queued.id in line)
    assert "EURUSD" in row and "running" in row and "25%" in row and "local@" in row
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime(running.started_at or 0))
    assert started[:10] in row  # the start time, in UTC
    assert any(failed.id in line and "cancelled" in line for line in table.splitlines())
    assert "no training jobs yet" in _drawn("jobs", {"jobs": []})
    said = _drawn("train", {"job": queued.to_dict()})
    assert f"job {queued.id} queued: EURUSD trains on the latest 1500 candles" in said
    assert f"forexd ctl cancel {queued.id}" in said
    said = _drawn("cancel", {"job": jobs.list()[-1]})
    assert f"job {failed.id} (GBPUSD) cancelled" in said


def _jobs(d: DaemonProc) -> list[dict[str, Any]]:
    res = d.ctl("jobs", "--json")
    assert 0 == res.returncode, res.stderr
    listed: list[dict[str, Any]] = json.loads(res.stdout)["jobs"]
    return listed


@pytest.mark.e2e
@pytest.mark.slow
def test_ctl_train_is_a_job_with_progress_that_ends_done(
    stored_dir: Path,  # noqa: F811 - the fixture imported above
    short_tmp: Path,
    daemon_factory: type[DaemonProc],
) -> None:
    """ctl train SYMBOL --lookback-candles N: ctl jobs shows it run and end done at 100 %."""
    d = _live(stored_dir, short_tmp, daemon_factory, HGB, folds=3)
    res = d.ctl("train", "EURUSD", "--lookback-candles", "1500", "--json")
    assert 0 == res.returncode, res.stderr
    job_id = json.loads(res.stdout)["job"]["id"]
    finished = d.wait_for("training_cycle_finished", timeout=120, symbol="EURUSD")
    assert "error" not in finished, finished
    (job,) = [j for j in _jobs(d) if j["id"] == job_id]
    assert ("operator", "done", 1.0, 1500, "local") == (
        job["kind"], job["state"], job["progress"], job["lookback_candles"], job["backend"]
    )  # fmt: skip
    assert job["started_at"] is not None and job["timeout_s"] > 0
    human = d.ctl("jobs")  # the same job as a table row for people
    assert 0 == human.returncode and job_id in human.stdout and "done" in human.stdout
    assert 0 == d.signal(signal.SIGTERM)


@pytest.mark.e2e
@pytest.mark.slow
def test_ctl_cancel_stops_a_running_job_and_registers_no_model(
    stored_dir: Path,  # noqa: F811 - the fixture imported above
    short_tmp: Path,
    daemon_factory: type[DaemonProc],
) -> None:
    """ctl cancel JOB while it trains: cancelled, no model registered, the daemon runs on."""
    d = _live(stored_dir, short_tmp, daemon_factory, SLOW, folds=8)
    res = d.ctl("train", "EURUSD", "--json")
    assert 0 == res.returncode, res.stderr
    job_id = json.loads(res.stdout)["job"]["id"]
    d.wait_for("training_phase", symbol="EURUSD", phase="training")
    assert "running" == next(j for j in _jobs(d) if j["id"] == job_id)["state"]
    assert 0 == d.ctl("cancel", job_id).returncode
    finished = d.wait_for("training_cycle_finished", timeout=60, symbol="EURUSD")
    assert "cancelled" in finished["error"]
    assert "cancelled" == next(j for j in _jobs(d) if j["id"] == job_id)["state"]
    with sqlite3.connect(d.data_dir / "forexd.db") as conn:
        assert 0 == conn.execute("SELECT COUNT(*) FROM models").fetchone()[0]
    unknown = d.ctl("cancel", "job-nope")
    assert 0 != unknown.returncode and "ctl jobs" in unknown.stderr
    assert 0 == d.ctl("ping").returncode
    assert 0 == d.signal(signal.SIGTERM)
