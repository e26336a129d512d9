"""Hyperparameter search with Optuna over model and strategy parameters.

Objective: the walk-forward's pooled out-of-sample **Sharpe ratio after costs** (maximised).
Log loss cannot be the objective here because the search also changes the label (horizon,
dead band), and log losses of different labels are not comparable; the entry threshold only
shows in a trading metric. The features are computed once (the feature spec is not searched).

Parallelism within the compute budget: the driver (this process) asks Optuna for trials and
runs each as a job (:func:`forexd.models.jobs.evaluate_trial`) on a
:class:`~forexd.models.executor.JobExecutor` — threads here, or Ray tasks — never more at
once than the executor's ``slots``; each trial's model gets ``n_jobs = blas_threads``
(never -1). Only the driver writes the study.

Persistence: the study lives in an Optuna RDB storage, a SQLite file, so a later run with
the same ``--study-dir`` and study name resumes it; its plan, data identity, crash recovery
and the choice of the best are :mod:`forexd.models.study`'s.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from forexd.errors import ConfigError, DataError
from forexd.extras import require_extra
from forexd.features import compute_features
from forexd.models.errors import TORCH_INSTALL_HINT, ModelError
from forexd.models.executor import JobExecutor, JobHandle, LocalExecutor
from forexd.models.jobs import SearchData, evaluate_trial
from forexd.models.spec import MODEL_KINDS, RL_KINDS, TORCH_KINDS, build_model_spec
from forexd.models.study import (
    StudyLock,
    best_trading_trial,
    fingerprint,
    finished_count,
    recover_stale,
    set_target,
    trade_count,
)
from forexd.models.trainconfig import Candles, DirectionLabel, TrainConfig

Sampler = Literal["tpe", "cmaes"]
SAMPLERS: tuple[str, ...] = ("tpe", "cmaes")
SQLITE_TIMEOUT_S = 60  # trials in several threads write the same SQLite file
SKLEARN_KINDS = tuple(k for k in MODEL_KINDS if k not in TORCH_KINDS)


@dataclass(frozen=True, slots=True)
class SearchResult:
    """The study's best trial after this run."""

    study_name: str
    storage: str
    target_trials: int
    trials_total: int
    trials_this_run: int
    failed_this_run: int
    timed_out_this_run: int
    recovered_stale: int
    best_value: float
    best_trades: int
    best_params: dict[str, Any]
    best_config: dict[str, Any]
    best_metrics: dict[str, Any]
    backend: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {
            "study_name": self.study_name,
            "storage": self.storage,
            "target_trials": self.target_trials,
            "trials_total": self.trials_total,
            "trials_this_run": self.trials_this_run,
            "failed_this_run": self.failed_this_run,
            "timed_out_this_run": self.timed_out_this_run,
            "recovered_stale": self.recovered_stale,
            "objective": "walk-forward out-of-sample Sharpe after costs (maximised), "
            "among trials that made a trade",
            "best_value": self.best_value,
            "best_trades": self.best_trades,
            "best_params": self.best_params,
            "best_config": self.best_config,
            "best_metrics": self.best_metrics,
            "backend": self.backend,
        }


def _hyperparameters(trial: Any, kind: str) -> dict[str, Any]:
    """The searched hyperparameters of one kind (ranges are guesses for hourly FX)."""
    if kind == "logistic":
        return {"c": trial.suggest_float("logistic.c", 1e-3, 10.0, log=True)}
    if kind == "hist_gradient_boosting":
        return {
            "learning_rate": trial.suggest_float("hgb.learning_rate", 0.01, 0.3, log=True),
            "max_iter": trial.suggest_int("hgb.max_iter", 30, 300, log=True),
            "max_leaf_nodes": trial.suggest_int("hgb.max_leaf_nodes", 4, 63, log=True),
            "min_samples_leaf": trial.suggest_int("hgb.min_samples_leaf", 10, 200, log=True),
            "l2_regularization": trial.suggest_float("hgb.l2_regularization", 0.0, 1.0),
        }
    if kind == "random_forest":
        return {
            "n_estimators": trial.suggest_int("rf.n_estimators", 30, 300, log=True),
            "max_depth": trial.suggest_int("rf.max_depth", 2, 12),
            "min_samples_leaf": trial.suggest_int("rf.min_samples_leaf", 5, 200, log=True),
        }
    if kind == "mlp":
        width = trial.suggest_int("mlp.width", 8, 128, log=True)
        return {
            "hidden_sizes": [width, max(4, width // 2)],
            "learning_rate": trial.suggest_float("mlp.learning_rate", 1e-4, 1e-2, log=True),
            "dropout": trial.suggest_float("mlp.dropout", 0.0, 0.5),
            "max_epochs": 30,
        }
    return {
        "window": trial.suggest_int("gru.window", 8, 48),
        "hidden_size": trial.suggest_int("gru.hidden_size", 8, 64, log=True),
        "learning_rate": trial.suggest_float("gru.learning_rate", 1e-4, 1e-2, log=True),
        "max_epochs": 20,
    }


def suggest_config(trial: Any, base: TrainConfig, kinds: tuple[str, ...]) -> TrainConfig:
    """A trial's configuration: model kind and hyperparameters, label, entry threshold."""
    kind = trial.suggest_categorical("model", list(kinds)) if len(kinds) > 1 else kinds[0]
    label = DirectionLabel(
        horizon=trial.suggest_int("label.horizon", 2, 24),
        dead_band_pips=trial.suggest_float("label.dead_band_pips", 0.0, 10.0),
        classes=base.label.classes if isinstance(base.label, DirectionLabel) else "ternary",
    )
    return base.model_copy(
        update={
            "model": build_model_spec(
                {"kind": kind, "hyperparameters": _hyperparameters(trial, kind)}
            ),
            "label": label,
            "entry_threshold": trial.suggest_float("entry_threshold", 0.34, 0.75),
        }
    )


def _sampler(name: str, seed: int) -> Any:
    optuna = require_extra("optuna", "forexd search")
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    require_extra("cmaes", "--sampler cmaes")
    # CMA-ES samples the numeric parameters jointly; the categorical model kind and the
    # kind-specific parameters fall back to the independent sampler (Optuna warns once).
    return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)


POLL_S = 1.0  # how often the driver checks in-flight trials for their timeout


def run_search(
    candles: Candles,
    base: TrainConfig,
    *,
    symbol: str,
    pip_size: float,
    study_dir: Path,
    study_name: str,
    trials: int | None = None,
    more: int | None = None,
    sampler: str = "tpe",
    kinds: tuple[str, ...] = SKLEARN_KINDS,
    train_workers: int,
    blas_threads: int,
    bars_per_year: float,
    timeout_s: float | None = None,
    task_timeout_s: float | None = None,
    executor: JobExecutor | None = None,
    on_trial: Callable[[int, float | None], None] | None = None,
) -> SearchResult:
    """Run the study until it has its target number of finished trials; its best trial.

    Args:
        candles: history of the symbol (the last ``base.lookback_candles`` are used).
        base: the configuration the trials vary (features, walk-forward, lookback, seed).
        symbol: instrument, recorded on the study.
        pip_size: the instrument's pip.
        study_dir: directory of the SQLite study file (created).
        study_name: the study to create or resume.
        trials: the study's target total (``--trials``).
        more: raise the target to the finished trials plus this many (``--more``).
            With neither, the target recorded by an earlier run is finished.
        sampler: ``tpe`` or ``cmaes``.
        kinds: model kinds to choose from.
        train_workers: trials at once with the local executor (``ComputeBudget``).
        blas_threads: threads per trial's model (``ComputeBudget.blas_threads``).
        bars_per_year: annualises the Sharpe ratio.
        timeout_s: stop starting trials after this long (``None``: no limit).
        task_timeout_s: a trial running longer is cancelled and failed (``None``: never).
        executor: where trials run; ``None``: ``train_workers`` threads here.
        on_trial: ``on_trial(finished_this_run, value_or_None)`` after every trial.

    Raises:
        InsufficientDataError: fewer candles than ``base.lookback_candles``.
        TorchUnavailableError / ConfigError: a torch kind without torch; cmaes missing;
            no target; the study is being run by another search.
        DataError: the study was run on other data.
        ModelError: no finished trial of the study made a trade (the last error is named).
    """
    optuna = require_extra("optuna", "forexd search")

    from forexd.models.errors import InsufficientDataError, TorchUnavailableError

    if train_workers < 1 or blas_threads < 1:
        raise ConfigError("train_workers and blas_threads must each be at least 1")
    rl = [k for k in kinds if k in RL_KINDS]
    if rl:
        raise ConfigError(
            f"search does not cover RL kinds ({', '.join(rl)}) yet; evaluate them with "
            "forexd train --model recurrent_ppo --timesteps N"
        )
    if any(k in TORCH_KINDS for k in kinds) and importlib.util.find_spec("torch") is None:
        raise TorchUnavailableError(f"searching mlp/gru needs PyTorch; {TORCH_INSTALL_HINT}")
    if len(candles) < base.lookback_candles:
        raise InsufficientDataError(
            f"search needs lookback_candles = {base.lookback_candles} candles, the data has "
            f"{len(candles)}; give more data or lower --lookback-candles"
        )
    data = candles.tail(base.lookback_candles)
    study_dir.mkdir(parents=True, exist_ok=True)
    lock = StudyLock(study_dir, study_name)
    lock.acquire()
    own_executor = executor is None
    runner = executor or LocalExecutor(train_workers, blas_threads)
    try:
        url = f"sqlite:///{(study_dir / 'studies.db').absolute()}"
        storage = optuna.storages.RDBStorage(
            url, engine_kwargs={"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
        )
        study = optuna.create_study(
            study_name=study_name,
            storage=storage,
            sampler=_sampler(sampler, base.seed),
            direction="maximize",
            load_if_exists=True,
        )
        _check_data(study, fingerprint(data, symbol), study_name, study_dir)
        recovered = recover_stale(study)
        target = set_target(study, trials, more)
        features = compute_features(
            data.open, data.high, data.low, data.close, data.ts, base.features
        )
        shared = runner.put(
            SearchData(
                ts=data.ts,
                high=data.high,
                low=data.low,
                close=data.close,
                matrix=features.matrix,
                first=features.first_valid_index,
                pip_size=pip_size,
                bars_per_year=bars_per_year,
            )
        )
        run = _Driver(study, runner, shared, base, kinds, blas_threads, on_trial)
        run.drive(target, timeout_s, task_timeout_s)
        return _result(study, url, run, recovered, target, runner.describe())
    finally:
        if own_executor:
            runner.close()
        lock.release()


def _check_data(study: Any, fp: dict[str, Any], study_name: str, study_dir: Path) -> None:
    known = study.user_attrs.get("data")
    if known is None:
        study.set_user_attr("data", fp)
    elif known != fp:
        raise DataError(
            f"study {study_name!r} in {study_dir} was run on other data ({known}); this run "
            f"has {fp}; choose another --study-name or --study-dir"
        )


class _Driver:
    """Asks the study for trials, runs them on the executor, tells it the outcome."""

    def __init__(
        self,
        study: Any,
        executor: JobExecutor,
        shared: Any,
        base: TrainConfig,
        kinds: tuple[str, ...],
        blas_threads: int,
        on_trial: Callable[[int, float | None], None] | None,
    ) -> None:
        self.study, self.executor, self.shared = study, executor, shared
        self.base, self.kinds, self.blas_threads = base, kinds, blas_threads
        self.on_trial = on_trial
        self.done = 0
        self.errors: list[str] = []
        self.timed_out = 0

    def drive(self, target: int, timeout_s: float | None, task_timeout_s: float | None) -> None:
        import optuna

        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        in_flight: dict[JobHandle, Any] = {}
        remaining = target - finished_count(self.study)
        while remaining > 0 or in_flight:
            starting = deadline is None or time.monotonic() < deadline
            while starting and remaining > len(in_flight) and len(in_flight) < self.executor.slots:
                trial = self.study.ask()
                config = suggest_config(trial, self.base, self.kinds)
                trial.set_user_attr("config", config.model_dump(mode="json"))
                handle = self.executor.submit(
                    evaluate_trial, self.shared, config, self.blas_threads,
                    label=f"trial {trial.number}",
                )  # fmt: skip
                in_flight[handle] = trial
            if not in_flight:
                break  # the --timeout-s deadline passed with nothing running
            for handle in self.executor.wait(list(in_flight), POLL_S):
                trial = in_flight.pop(handle)
                remaining -= 1
                self._finish(trial, handle, optuna)
            if task_timeout_s is not None:
                now = time.monotonic()
                for handle in [h for h in in_flight if now - h.started_monotonic > task_timeout_s]:
                    trial = in_flight.pop(handle)
                    remaining -= 1
                    stopped = self.executor.cancel(handle)
                    how = "cancelled" if stopped else "abandoned (its thread cannot be stopped)"
                    self._fail(trial, f"timed out after {task_timeout_s:g} s; {how}", optuna)
                    self.timed_out += 1

    def _finish(self, trial: Any, handle: JobHandle, optuna: Any) -> None:
        try:
            out = self.executor.result(handle)
        # A ForexdError is the configuration's own fault; anything else (a task lost for good
        # after its retries, a worker crash) is recorded on the trial too, never swallowed.
        except Exception as exc:
            self._fail(trial, f"{type(exc).__name__}: {exc}", optuna)
            return
        trial.set_user_attr("log_loss", out["log_loss"])
        trial.set_user_attr("trading", out["trading"])
        self.study.tell(trial, out["sharpe"])
        self.done += 1
        if self.on_trial is not None:
            self.on_trial(self.done, out["sharpe"])

    def _fail(self, trial: Any, reason: str, optuna: Any) -> None:
        trial.set_user_attr("fail_reason", reason)
        self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        self.errors.append(reason)
        self.done += 1
        if self.on_trial is not None:
            self.on_trial(self.done, None)


def _result(
    study: Any, url: str, run: _Driver, recovered: int, target: int, backend: dict[str, Any]
) -> SearchResult:
    best = best_trading_trial(study)
    if best is None:
        complete = sum(1 for t in study.trials if t.state.name == "COMPLETE")
        raise ModelError(
            f"no trial of study {study.study_name!r} made a trade ({complete} complete); "
            f"last error: {run.errors[-1] if run.errors else 'none recorded'}; widen the "
            "search (--more N) or lower the entry threshold range"
        )
    return SearchResult(
        study_name=study.study_name,
        storage=url,
        target_trials=target,
        trials_total=finished_count(study),
        trials_this_run=run.done,
        failed_this_run=len(run.errors),
        timed_out_this_run=run.timed_out,
        recovered_stale=recovered,
        best_value=float(best.value),
        best_trades=trade_count(best),
        best_params=dict(best.params),
        best_config=dict(best.user_attrs.get("config", {})),
        best_metrics={
            "sharpe": float(best.value),
            "log_loss": best.user_attrs.get("log_loss"),
            "trading": best.user_attrs.get("trading"),
        },
        backend=backend,
    )
