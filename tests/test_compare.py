"""N-model comparison in spawned workers: parallel, bounded waits, a hang killed and reported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from forexd.brokers.ledger import CostModel
from forexd.models.artifacts import save_model
from forexd.models.device import device_key
from forexd.models.errors import ModelError
from forexd.rl.compare import compare_models
from forexd.rl.compare_worker import ModelRef, WorkerSetup, evaluate
from forexd.rl.trainer import train_cycle
from forexd.strategies.ml_params import MlParams
from tests._mlsupport import SMALL_WF, bundled_candles

HANG_TIMEOUT_S = 15.0  # the hanging model is killed after this; others finish in ~1 s
COSTS = CostModel(spread_pips=0.8)
DATA = bundled_candles(1500)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Eight small logistic models (different thresholds and label horizons) as artifacts."""
    out = []
    root = tmp_path_factory.mktemp("models")
    train = bundled_candles(1500, end=-1500)
    for i in range(8):
        params = MlParams(
            lookback_candles=800,
            walk_forward=SMALL_WF,
            entry_threshold=0.36 + 0.02 * i,
            exit_threshold=0.34,
            label={"horizon": 3 + i},
        )
        result = train_cycle(train, params, symbol="EURUSD", pip_size=0.0001, n_jobs=1)
        path = root / f"m{i}.fxm"
        save_model(result.model, path)
        out.append(path)
    return out


def _refs(paths: list[Path], n: int, hang: int) -> list[ModelRef]:
    refs = [ModelRef(f"m{i}", str(p)) for i, p in enumerate(paths[:n])]
    refs[hang] = ModelRef(f"m{hang}-hangs", str(paths[hang]), "tests._hang_model:load")
    return refs


def test_cuda_and_cuda_0_share_one_device_key() -> None:
    """cuda and cuda:0 normalise to one semaphore key; bad names are refused."""
    assert device_key("cuda") == device_key("cuda:0") == device_key(" CUDA:00 ") == "cuda:0"
    assert device_key("cuda:1") == "cuda:1"
    assert device_key("cpu") == "cpu"
    with pytest.raises(ModelError, match="not one of"):
        device_key("gpu")


@pytest.mark.slow
@pytest.mark.parametrize("n", [1, 2, 3, 8])
def test_one_hanging_model_is_killed_at_its_timeout_and_the_others_are_ranked(
    artifacts: list[Path], n: int
) -> None:
    """With N models in parallel and one hanging, it ends at its timeout; the rest report."""
    hang = n // 2
    result = compare_models(
        _refs(artifacts, n, hang), DATA, symbol="EURUSD", workers=2,
        timeout_s=HANG_TIMEOUT_S, costs=COSTS,
    )  # fmt: skip
    by_name = {o.name: o for o in result.outcomes}
    hung = by_name[f"m{hang}-hangs"]
    assert hung.status == "timeout"
    assert "exceeded its timeout" in (hung.error or "")
    assert hung.seconds >= HANG_TIMEOUT_S
    others = [o for o in result.outcomes if o is not hung]
    assert [o.status for o in others] == ["ok"] * (n - 1)
    assert [o.rank for o in others] == list(range(1, n))
    pnls = [o.result["pnl"] for o in others]
    assert pnls == sorted(pnls, reverse=True)
    assert result.seconds < HANG_TIMEOUT_S + 120  # ends at the timeout, not "never"


@pytest.mark.slow
def test_a_killed_workers_device_slot_is_released_for_the_next_model(
    artifacts: list[Path],
) -> None:
    """One slot, two workers: the model waiting behind a hang gets the slot once it dies."""
    refs = _refs(artifacts, 3, 0)
    result = compare_models(
        refs, DATA, symbol="EURUSD", workers=2, slots=1, timeout_s=HANG_TIMEOUT_S,
        acquire_timeout_s=HANG_TIMEOUT_S * 4, costs=COSTS,
    )  # fmt: skip
    statuses = {o.name: o.status for o in result.outcomes}
    assert statuses == {"m0-hangs": "timeout", "m1": "ok", "m2": "ok"}


@pytest.mark.slow
def test_a_model_waiting_too_long_for_its_device_is_reported_not_left_waiting(
    artifacts: list[Path],
) -> None:
    """A device wait longer than acquire_timeout_s ends as device_timeout, never blocks."""
    refs = [ModelRef(f"h{i}", str(artifacts[i]), "tests._hang_model:load") for i in range(2)]
    result = compare_models(
        refs, DATA, symbol="EURUSD", workers=2, slots=1, timeout_s=HANG_TIMEOUT_S,
        acquire_timeout_s=1.0, costs=COSTS,
    )  # fmt: skip
    assert sorted(o.status for o in result.outcomes) == ["device_timeout", "timeout"]


def test_worker_result_equals_an_in_process_evaluation(artifacts: list[Path]) -> None:
    """The spawned worker reports exactly what evaluating the model here gives."""
    result = compare_models([ModelRef("m1", str(artifacts[1]))], DATA, symbol="EURUSD",
                            costs=COSTS)  # fmt: skip
    setup = WorkerSetup(DATA, "EURUSD", COSTS, 10_000, 100_000.0, 6240.0, "cpu", 1, 10.0)
    here = evaluate(ModelRef("m1", str(artifacts[1])), setup)
    (outcome,) = result.outcomes
    assert outcome.result["pnl"] == here["pnl"]
    assert outcome.result["metrics"] == here["metrics"]
    assert outcome.result["in_sample_bars"] == 0


def _register(data_dir: Path, result: Any, params: MlParams, symbol: str) -> str:
    from forexd.daemon.trainjob import make_record
    from forexd.storage.db import now_ns
    from forexd.storage.model_registry import ModelRegistry, new_model_id

    registry = ModelRegistry(data_dir / "forexd.db", data_dir / "models")
    created = now_ns()
    model_id = new_model_id(symbol, created)
    save_model(result.model, registry.artifact_path(symbol, model_id))
    registry.register(
        make_record(
            params,
            result,
            registry,
            symbol=symbol,
            model_id=model_id,
            created_ns=created,
            cycle_id=None,
        )
    )
    return model_id


@pytest.mark.slow
@pytest.mark.needs_shared
def test_cli_ranks_three_models_of_different_kinds_on_real_h1_data(
    shared_fx_dir: Path, tmp_path: Path
) -> None:
    """forexd models compare ranks a logistic, a boosting and a recurrent_ppo model."""
    pytest.importorskip("sb3_contrib", reason="the rl extra (sb3-contrib) is not installed")
    from forexd.daemon.paths import DaemonPaths
    from forexd.feeds.loaders import load_candles
    from forexd.models.trainconfig import Candles
    from forexd.storage.db import open_sync
    from tests._fxdata import one_thread

    data = shared_fx_dir / "lean_oanda" / "hour" / "eurusd.csv.gz"
    candles = Candles.from_frame(load_candles(data, "oanda-lean"))
    train = candles.tail(len(candles))
    train = Candles(*(a[-4000:-2000] for a in (train.ts, train.open, train.high, train.low,
                                                train.close)))  # fmt: skip
    paths = DaemonPaths(tmp_path, tmp_path / "run")
    open_sync(paths.db).close()  # creates the schema
    tiny_ppo = {"kind": "recurrent_ppo", "hyperparameters": {
        "timesteps": 256, "n_steps": 64, "batch_size": 32, "n_epochs": 2, "episode_bars": 96,
        "hidden_sizes": [8], "lstm_hidden_size": 8, "context_bars": 12}}  # fmt: skip
    models = [
        {"kind": "logistic"},
        {"kind": "hist_gradient_boosting", "hyperparameters": {"max_iter": 30}},
        tiny_ppo,
    ]
    ids = []
    for model in models:
        params = MlParams(model=model, lookback_candles=1500, walk_forward=SMALL_WF)
        with one_thread():
            result = train_cycle(train, params, symbol="EURUSD", pip_size=0.0001, n_jobs=1)
        ids.append(_register(tmp_path, result, params, "EURUSD"))
    proc = subprocess.run(
        [sys.executable, "-m", "forexd", "models", "compare", *ids, "--data", str(data),
         "--data-dir", str(tmp_path), "--json", "--timeout-s", "300"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    ranked = out["models"]
    assert sorted(m["kind"] for m in ranked) == [
        "hist_gradient_boosting", "logistic", "recurrent_ppo"
    ]  # fmt: skip
    assert [m["status"] for m in ranked] == ["ok"] * 3
    assert [m["rank"] for m in ranked] == [1, 2, 3]
    assert ranked[0]["pnl"] >= ranked[1]["pnl"] >= ranked[2]["pnl"]
    assert all(m["in_sample_bars"] > 0 and m["bars"] > 10_000 for m in ranked)


def test_bench_gpu_without_a_gpu_says_so_and_exits_0() -> None:
    """benchmarks/bench_gpu.py on a machine without CUDA prints why and exits 0."""
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the benchmark would run for real")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "no CUDA GPU" in proc.stdout
