"""The daemon's retraining on a real Ray cluster: ``[compute] backend = "ray"`` end to end.

A two-node cluster on 127.0.0.1 (``tests/_raycluster.py``) serves the module. The daemon is
a real ``forexd run`` subprocess and the Ray driver: it reads the candles, a Ray task on one
of the nodes trains, the model comes back and the daemon writes its artifact, registers and
promotes it, and trades with it. The candles come from a first, local run that only stored
them (no model), so that the Ray run starts with a cycle due on its first bar and its feed
still has bars to trade once the champion is promoted.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from operator import itemgetter
from pathlib import Path
from typing import Any

import psutil
import pytest

from forexd.daemon.backend_ray import LOOPBACK_ENV
from forexd.daemon.jobs import TrainingJobs
from tests._raycluster import free_port, loopback_cluster, node_ids, running_tasks
from tests.daemon_proc import DaemonProc, run_cli, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(420)]

CONFIG = """
[feed]
source = "bundled"
speed = {speed}
end = "{end}"

[compute]
blas_threads = 1
train_workers = 1
{compute}

[[symbols]]
symbol = "EURUSD"
strategy = "ml"

[symbols.params]
lookback_candles = 600
retrain_every_bars = {every}
train_timeout_s = {timeout}
entry_threshold = 0.5
exit_threshold = 0.5
walk_forward = {{ n_folds = {folds}, min_train_rows = 60 }}
model = {model}
"""
LOGISTIC = '{ kind = "logistic" }'
SLOW = '{ kind = "random_forest", hyperparameters = { n_estimators = 5000, max_depth = 16 } }'
"""About 20 times the forest of a few seconds measured here: minutes per cycle on one CPU."""
TRICKLE = 10_000.0
"""Replay speed (x real time: an H1 bar every 0.36 s): the feed outlives the training cycle,
so the promoted champion still has bars to trade."""
TASK_GONE_S = 15.0  # a force-cancelled task's worker is gone well within this; SLOW is not


def _config(path: Path, *, compute: str = "", end: str = "2017-06-01", every: int = 500,
            folds: int = 3, model: str = LOGISTIC, speed: float = TRICKLE,
            timeout: float = 600) -> Path:  # fmt: skip
    body = CONFIG.format(
        compute=compute,
        end=end,
        every=every,
        folds=folds,
        model=model,
        speed=speed,
        timeout=timeout,
    )
    return write_config(path, body)


def _on_ray(address: str) -> str:
    return f'backend = "ray"\nray_address = "{address}"'


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A head and one more node on 127.0.0.1 (this process is not a driver)."""
    with loopback_cluster(2) as started:
        yield started


@pytest.fixture(scope="module")
def stored_dir() -> Iterator[Path]:
    """A data dir holding Jan - Feb 2017 EURUSD candles (about 1,000 bars) and no model."""
    tmp = Path(tempfile.mkdtemp(prefix="fxd-ray-", dir="/tmp"))
    data = tmp / "data"
    cfg = _config(tmp / "store.toml", end="2017-03-01", every=10**6, speed=0)
    proc = DaemonProc(data, cfg, "--exit-when-done")
    try:
        assert 0 == proc.wait(timeout=120)
    finally:
        proc.kill()
    yield data
    shutil.rmtree(tmp, ignore_errors=True)


def _ray_daemon(
    stored: Path, tmp: Path, factory: type[DaemonProc], cluster: Any, **config: Any
) -> DaemonProc:
    data = tmp / "data"
    shutil.copytree(stored, data)
    cfg = _config(tmp / "ray.toml", compute=_on_ray(cluster.address), **config)
    d = factory(data, cfg)
    described = d.wait_for("compute_backend", timeout=120)
    assert ("ray", cluster.address, 2) == (
        described["backend"],
        described["address"],
        described["nodes"],
    ), described
    return d


def test_job_on_ray_shows_the_cluster_then_each_node_its_tasks_ran_on() -> None:
    """A Ray job's node is the cluster's address until its tasks report their nodes."""
    jobs = TrainingJobs(node="here")
    jobs.run_on("ray", "10.0.0.5:6379")
    job = jobs.adopt("EURUSD", "retrain", timeout_s=60.0)
    assert job is not None and ("ray", "10.0.0.5:6379", False) == (
        job.backend, job.node, job.placed,
    )  # fmt: skip
    for node in ("10.0.0.6/aa", "10.0.0.7/bb", "10.0.0.6/aa"):
        jobs.placed("EURUSD", node)
    jobs.placed("GBPUSD", "10.0.0.8/cc")  # no running job of that symbol: nothing to place
    jobs.finish(job.id, outcome="promoted")
    assert ("10.0.0.6/aa, 10.0.0.7/bb", True) == itemgetter("node", "placed")(jobs.list()[0])


def _jobs(d: DaemonProc) -> list[dict[str, Any]]:
    res = d.ctl("jobs", "--json")
    assert 0 == res.returncode, res.stderr
    jobs: list[dict[str, Any]] = json.loads(res.stdout)["jobs"]
    return jobs


def test_retraining_runs_as_a_ray_task_and_its_champion_trades(
    cluster: Any,
    stored_dir: Path,
    short_tmp: Path,
    daemon_factory: type[DaemonProc],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A scheduled cycle trains on a node; the daemon registers, promotes and trades it."""
    monkeypatch.delenv(LOOPBACK_ENV, raising=False)  # the daemon keeps 127.0.0.1 by itself
    d = _ray_daemon(stored_dir, short_tmp, daemon_factory, cluster)
    done = d.wait_for("training_task_done", timeout=240, symbol="EURUSD")
    finished = d.wait_for("training_cycle_finished", timeout=60, symbol="EURUSD")
    assert "promoted" == finished.get("decision"), finished
    model_id = finished["model_id"]
    d.wait_for("champion_installed", model_id=model_id)
    filled = d.wait_for("order_filled", timeout=240, symbol="EURUSD")
    [job] = _jobs(d)
    assert ("retrain", "ray", "done", "promoted", True) == (
        job["kind"], job["backend"], job["state"], job["outcome"], job["placed"],
    )  # fmt: skip
    ip, node_id = job["node"].split("/")
    assert done["node"] == job["node"] and "127.0.0.1" == ip
    assert any(n.startswith(node_id) for n in node_ids(cluster)), (job, node_ids(cluster))
    with sqlite3.connect(short_tmp / "data" / "forexd.db") as conn:
        status, artifact, created_ns = conn.execute(
            "SELECT status, artifact, created_ns FROM models WHERE model_id = ?", (model_id,)
        ).fetchone()
        first_order_ns = conn.execute(
            "SELECT MIN(created_ns) FROM orders WHERE symbol = 'EURUSD'"
        ).fetchone()[0]
        fill = conn.execute(
            "SELECT COUNT(*) FROM fills WHERE client_id = ?", (filled["client_id"],)
        ).fetchone()[0]
    assert "champion" == status and (short_tmp / "data" / "models" / artifact).is_file()
    assert first_order_ns > created_ns and 1 == fill  # it trades with the champion only
    d.stop()
    assert "SIGTERM" not in d.stderr()  # Ray's crash-report handler stays out of the daemon


def test_cancelled_and_interrupted_ray_training_kills_its_task(
    cluster: Any, stored_dir: Path, short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """ctl cancel JOB and SIGTERM during a Ray task: the task is killed, the daemon goes on
    (cancel) or stops at once with exit 0 (SIGTERM)."""
    d = _ray_daemon(stored_dir, short_tmp, daemon_factory, cluster, model=SLOW, folds=8)
    d.wait_for("training_task_submitted", timeout=120, symbol="EURUSD")
    _wait_until(lambda: running_tasks(cluster) == 1, 120, "the training task to start")
    [job] = _jobs(d)
    assert ("running", "training", "ray", cluster.address) == (
        job["state"], job["phase"], job["backend"], job["node"],
    )  # fmt: skip
    assert 0 == d.ctl("cancel", job["id"]).returncode
    failed = d.wait_for("training_cycle_failed", symbol="EURUSD")
    assert "cancelled" in failed["error"]
    _wait_until(lambda: running_tasks(cluster) == 0, TASK_GONE_S, "the task to be killed")
    assert "cancelled" == _jobs(d)[0]["state"]
    assert 0 == d.ctl("train", "EURUSD").returncode
    d.wait_for("training_task_submitted", timeout=60, symbol="EURUSD")
    _wait_until(lambda: running_tasks(cluster) == 1, 120, "the second task to start")
    started = time.monotonic()
    d.stop(timeout=30)
    assert time.monotonic() - started < 15.0  # not the minutes the forest would take
    assert [] == [e for e in d.events("training_cycle_finished") if "error" not in e]
    _wait_until(lambda: running_tasks(cluster) == 0, TASK_GONE_S, "the task to be killed")


def test_local_ray_instance_of_the_daemon_trains_and_stops_with_it(
    stored_dir: Path, short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """ray_address = "local": the daemon's own Ray processes outlive start-up, train the
    champion, and are gone once the daemon stopped."""
    data = short_tmp / "data"
    shutil.copytree(stored_dir, data)
    d = daemon_factory(data, _config(short_tmp / "local.toml", compute=_on_ray("local")))
    assert (1, 1) == itemgetter("nodes", "cpus")(d.wait_for("compute_backend", timeout=120))
    ray_processes = psutil.Process(d.proc.pid).children(recursive=True)
    assert {"gcs_server", "raylet"} <= {p.name() for p in ray_processes}
    finished = d.wait_for("training_cycle_finished", timeout=240, symbol="EURUSD")
    assert "promoted" == finished.get("decision"), finished
    assert ("ray", "done") == itemgetter("backend", "state")(_jobs(d)[0])
    d.stop()
    _, alive = psutil.wait_procs(ray_processes, timeout=30)
    assert [] == alive


def test_ray_task_past_train_timeout_is_killed_and_the_job_fails(
    cluster: Any, stored_dir: Path, short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """train_timeout_s on Ray: the cycle fails naming the timeout; the task is killed."""
    d = _ray_daemon(stored_dir, short_tmp, daemon_factory, cluster, model=SLOW, timeout=5)
    failed = d.wait_for("training_cycle_failed", timeout=120, symbol="EURUSD")
    assert f"task on {cluster.address} ran past 5 s; cancelled" in failed["error"], failed
    _wait_until(lambda: running_tasks(cluster) == 0, TASK_GONE_S, "the task to be killed")
    [job] = _jobs(d)
    assert ("failed", "ray") == (job["state"], job["backend"]) and "ran past" in job["error"]
    d.stop()


def _wait_until(condition: Any, timeout_s: float, what: str) -> None:
    """Wait for ``condition()`` (a process table read: no event to wait on across Ray)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s} s for {what}")
        time.sleep(0.05)


def test_unreachable_cluster_stops_the_daemon_with_exit_2_naming_the_address(
    short_tmp: Path,
) -> None:
    """ray_fallback = "error": one message naming the address, exit 2, no traceback."""
    address = f"127.0.0.1:{free_port()}"
    cfg = _config(short_tmp / "c.toml", compute=_on_ray(address), end="2017-01-10", speed=0)
    res = run_cli("run", "--data-dir", str(short_tmp / "d"), "--config", str(cfg), timeout=120)
    assert 2 == res.returncode, res.stderr
    assert f"Ray cluster at {address} is unreachable" in res.stderr
    assert "Traceback" not in res.stderr


def test_unreachable_cluster_with_local_fallback_warns_and_trains_locally(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """ray_fallback = "local": a warning naming the address; the daemon runs on its own pool."""
    address = f"127.0.0.1:{free_port()}"
    compute = _on_ray(address) + '\nray_fallback = "local"'
    cfg = _config(short_tmp / "c.toml", compute=compute, end="2017-01-20", speed=0, every=10**6)
    d = daemon_factory(short_tmp / "d", cfg, "--exit-when-done")
    warned = d.wait_for("ray_unreachable")
    assert address in warned["detail"] and "running locally" in warned["detail"]
    assert "local" == d.wait_for("compute_backend")["backend"]
    assert 0 == d.wait(timeout=60)
    assert d.events("stopped")
