"""The Ray backend against a real two-node Ray cluster on 127.0.0.1 started by this module.

One cluster (a head and a second node, one CPU each, small object stores:
``tests/_raycluster.py``) serves the whole module; the node-kill test adds and kills a third
node of its own. Every address is loopback (see ``tests/_raycluster.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from forexd.config import ComputeConfig
from forexd.daemon.backend_ray import LOOPBACK_ENV, ClusterUnreachableError, RayExecutor
from forexd.daemon.backends import make_executor
from forexd.daemon.budget import compute_budget
from forexd.feeds.loaders import bundled_sample_path
from forexd.models.errors import ModelError
from forexd.models.executor import LocalExecutor
from forexd.models.search import run_search
from forexd.strategies.ml_params import MlParams
from tests._fxdata import LEAN_H1_EURUSD
from tests._mlsupport import SMALL_WF, bundled_candles
from tests._raycluster import NODE, free_port, loopback_cluster
from tests.daemon_proc import forexd_cmd, run_cli

pytestmark = pytest.mark.timeout(300)
BASE = MlParams(lookback_candles=900, walk_forward=SMALL_WF)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A head and one more node on 127.0.0.1, and this process connected as the driver."""
    with loopback_cluster(2) as started:
        import ray

        ray.init(address=started.address, include_dashboard=False, log_to_driver=False)
        try:
            yield started
        finally:
            ray.shutdown()


def _executor(cluster: Any, blas_threads: int = 1) -> RayExecutor:
    return RayExecutor(cluster.address, blas_threads=blas_threads, local_cpus=1)


def test_address_stays_on_loopback_and_both_nodes_take_tasks(cluster: Any) -> None:
    """Nodes and driver are on 127.0.0.1; tasks of one CPU each land on both nodes."""
    import ray

    from forexd.daemon.backend_ray import probe_threads

    executor = _executor(cluster)
    assert cluster.address.startswith("127.0.0.1:")
    assert {"127.0.0.1"} == {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}
    assert (2, 2) == (executor.describe()["nodes"], executor.slots)
    handles = [executor.submit(probe_threads) for _ in range(4)]
    nodes = {executor.result(h)["node"] for h in handles}
    assert {n["NodeID"] for n in ray.nodes() if n["Alive"]} == nodes


def test_ray_worker_runs_with_the_budgets_thread_caps(cluster: Any) -> None:
    """Inside a Ray task: thread env vars and every BLAS/OpenMP pool are at blas_threads."""
    from forexd.daemon.backend_ray import probe_threads

    executor = _executor(cluster, blas_threads=1)
    handle = executor.submit(probe_threads)
    assert [handle] == executor.wait([handle], 120)
    seen = executor.result(handle)
    assert os.getpid() != seen["pid"]
    assert {"1"} == set(seen["env"].values())
    assert seen["libraries"] and {1} == set(seen["libraries"].values())


class _Counting(RayExecutor):
    puts = 0

    def put(self, value: Any) -> Any:
        self.puts += 1
        return super().put(value)


def test_search_on_the_cluster_reaches_its_target_with_data_sent_once(
    cluster: Any, tmp_path: Path
) -> None:
    """A search on Ray: trials as tasks, the study in the driver, the target met."""
    executor = _Counting(cluster.address, blas_threads=1, local_cpus=1)
    result = run_search(
        bundled_candles(1200), BASE, symbol="EURUSD", pip_size=0.0001,
        study_dir=tmp_path,
        study_name="on-ray", trials=4, kinds=("logistic",), train_workers=1,
        blas_threads=1, bars_per_year=6000.0, executor=executor,
    )  # fmt: skip
    assert (4, 4, "ray", 1) == (
        result.trials_total,
        result.trials_this_run,
        result.backend["backend"],
        executor.puts,
    )
    assert result.best_trades > 0


def _slow_trial(data: Any, config: Any, blas_threads: int) -> dict[str, Any]:
    time.sleep(600)  # stands for a trial that hangs; it is cancelled long before
    raise AssertionError("not cancelled")


def test_task_past_its_timeout_is_cancelled_and_reported(
    cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trials longer than task_timeout_s are killed (ray.cancel force) and named as such."""
    import forexd.models.search

    executor = _executor(cluster)
    slow = executor.submit(time.sleep, 600)
    assert executor.cancel(slow)
    assert [slow] == executor.wait([slow], 60)  # a killed task finishes at once
    import ray

    with pytest.raises((ray.exceptions.TaskCancelledError, ray.exceptions.WorkerCrashedError)):
        executor.result(slow)
    monkeypatch.setattr(forexd.models.search, "evaluate_trial", _slow_trial)
    started = time.monotonic()
    with pytest.raises(ModelError, match="timed out after 2 s; cancelled"):
        run_search(
            bundled_candles(1200), BASE, symbol="EURUSD", pip_size=0.0001,
            study_dir=tmp_path, study_name="t", trials=2, kinds=("logistic",),
            train_workers=1, blas_threads=1, bars_per_year=6000.0, executor=executor,
            task_timeout_s=2.0,
        )  # fmt: skip
    assert time.monotonic() - started < 120  # not the 600 s the trials would have slept


def test_cli_search_and_train_run_on_the_cluster_on_real_data(cluster: Any, tmp_path: Path) -> None:
    """`forexd search --ray 127.0.0.1:PORT` and `forexd train --ray ...` on real EURUSD H1."""
    if not LEAN_H1_EURUSD.exists():
        pytest.skip(f"real FX data not found at {LEAN_H1_EURUSD}")
    config = tmp_path / "forexd.toml"
    config.write_text("[compute]\nblas_threads = 1\n", encoding="utf-8")
    common = (
        "--symbol", "EURUSD", "--data", str(LEAN_H1_EURUSD), "--format", "oanda-lean",
        "--lookback-candles", "2000", "--model", "logistic", "--ray", cluster.address,
        "--config", str(config), "--data-dir", str(tmp_path / "d"), "--json",
    )  # fmt: skip
    # The CLI process sets the loopback switch itself: run it without the fixture's.
    env = {k: v for k, v in os.environ.items() if k != LOOPBACK_ENV}
    search = _cli(env, "search", *common, "--trials", "2")
    assert 0 == search.returncode, search.stderr
    out = json.loads(search.stdout)
    assert (2, "ray", 2) == (
        out["trials_total"],
        out["backend"]["backend"],
        out["backend"]["nodes"],
    )
    train = _cli(env, "train", *common)
    assert 0 == train.returncode, train.stderr
    trained = json.loads(train.stdout)
    assert "ray" == trained["backend"]["backend"] and trained["walk_forward"]["folds"]


def test_cli_search_on_a_local_ray_instance_reaches_its_target(tmp_path: Path) -> None:
    """`forexd search --ray local` on real EURUSD H1: its own Ray instance runs the trials."""
    if not LEAN_H1_EURUSD.exists():
        pytest.skip(f"real FX data not found at {LEAN_H1_EURUSD} (../shared is absent)")
    config = tmp_path / "forexd.toml"
    config.write_text("[compute]\nblas_threads = 1\ntrain_workers = 2\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != LOOPBACK_ENV}  # as a user runs it
    search = _cli(
        env, "search", "--symbol", "EURUSD", "--data", str(LEAN_H1_EURUSD), "--format",
        "oanda-lean", "--lookback-candles", "2000", "--model", "logistic", "--trials", "3",
        "--ray", "local", "--config", str(config), "--data-dir", str(tmp_path / "d"), "--json",
    )  # fmt: skip
    assert 0 == search.returncode, search.stderr
    out = json.loads(search.stdout)
    assert (3, 3, 0) == (out["trials_total"], out["trials_this_run"], out["failed_this_run"])
    assert ("ray", "local", 2) == (
        out["backend"]["backend"],
        out["backend"]["address"],
        out["backend"]["cpus"],
    ), out["backend"]


def test_backtest_grid_on_the_cluster_ranks_like_the_local_sweep(cluster: Any) -> None:
    """`backtest --grid` points as Ray tasks give the same ranking as local threads."""
    from forexd.backtest import BacktestRequest, run_grid
    from tests._mlsupport import bundled_frame

    request = BacktestRequest(grid={"fast": (5, 10), "slow": (20, 30)})
    frames = {"EURUSD": bundled_frame().tail(3000)}
    local = run_grid(request, frames=frames, workers=2, detail_best=False)
    on_ray = run_grid(request, frames=frames, executor=_executor(cluster), detail_best=False)
    assert [(r.params, r.metrics.sharpe) for r in local.rows] == [
        (r.params, r.metrics.sharpe) for r in on_ray.rows
    ]
    assert 2 == on_ray.workers


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        forexd_cmd(*args), capture_output=True, text=True, env=env, timeout=300, check=False
    )


def _running_task_on(node: Any) -> bool:
    """Whether a worker of ``node``'s raylet is executing a job (its title is set by Ray)."""
    import psutil

    raylet = psutil.Process(node.all_processes["raylet"][0].process.pid)
    for child in raylet.children(recursive=True):
        try:
            if "ray::run_capped" in " ".join(child.cmdline()):
                return True
        except psutil.Error:  # a worker that exited meanwhile
            continue
    return False


def test_node_killed_mid_search_tasks_are_retried_and_the_search_completes(
    cluster: Any, tmp_path: Path
) -> None:
    """A third node dies while a trial runs on it; the trial re-runs elsewhere; plan met."""
    extra = cluster.add_node(**NODE)
    cluster.wait_for_nodes()  # its CPU is in the cluster's resources before slots are read
    executor = _executor(cluster)
    assert 3 == executor.slots
    killed = threading.Event()

    def kill_when_busy() -> None:
        deadline = time.monotonic() + 180
        # Wait on the event itself: a worker of the extra node executing a trial.
        while not _running_task_on(extra) and time.monotonic() < deadline:
            time.sleep(0.05)
        if time.monotonic() < deadline:
            cluster.remove_node(extra, allow_graceful=False)
            killed.set()

    killer = threading.Thread(target=kill_when_busy, daemon=True)
    killer.start()
    result = run_search(
        bundled_candles(1500), BASE, symbol="EURUSD", pip_size=0.0001, study_dir=tmp_path,
        study_name="kill", trials=6, kinds=("hist_gradient_boosting",), train_workers=1,
        blas_threads=1, bars_per_year=6000.0, executor=executor,
    )  # fmt: skip
    killer.join(timeout=5)
    assert killed.is_set(), "no trial ever ran on the extra node"
    assert (6, 6, 0) == (result.trials_total, result.trials_this_run, result.failed_this_run)


def test_unreachable_cluster_is_exit_2_naming_the_address(tmp_path: Path) -> None:
    """Nothing listens at --ray ADDRESS: one line naming it, exit 2, no traceback."""
    address = f"127.0.0.1:{free_port()}"
    done = run_cli(
        "train", "--symbol", "EURUSD", "--data", str(bundled_sample_path()), "--ray", address,
        "--data-dir", str(tmp_path), timeout=120,
    )  # fmt: skip
    assert 2 == done.returncode
    assert address in done.stderr and "Traceback" not in done.stderr


def test_unreachable_cluster_falls_back_to_local_with_a_warning_when_configured() -> None:
    """ray_fallback = "local": a warning naming the address, then the local executor."""
    address = f"127.0.0.1:{free_port()}"
    budget = compute_budget(2)
    warnings: list[str] = []
    fallback = ComputeConfig(backend="ray", ray_address=address, ray_fallback="local")
    executor = make_executor(fallback, budget, warn=warnings.append)
    assert isinstance(executor, LocalExecutor) and address in warnings[0]
    executor.close()
    with pytest.raises(ClusterUnreachableError, match=address):
        make_executor(ComputeConfig(backend="ray", ray_address=address), budget)
