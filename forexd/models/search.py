"""Hyperparameter search with Optuna over model and strategy parameters.

Objective: the walk-forward's pooled out-of-sample **Sharpe ratio after costs** (maximised).
Log loss cannot be the objective here because the search also changes the label (horizon,
dead band), and log losses of different labels are not comparable; the entry threshold only
shows in a trading metric. The features are computed once (the feature spec is not searched).

Parallelism within the compute budget: ``n_jobs = train_workers`` trials run at once in
Optuna's threads, and each trial's model gets ``n_jobs = blas_threads`` (never -1); the
process-wide BLAS/OpenMP caps are the caller's to set (``forexd search`` sets them once).

Persistence: the study lives in an Optuna RDB storage, a SQLite file, so a later run with
the same ``--study-dir`` and study name resumes it (its trials count towards the best one).
The study remembers the data it was run on; resuming it on other data is refused.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from forexd.errors import ConfigError, DataError, ForexdError
from forexd.extras import require_extra
from forexd.features import compute_features
from forexd.models.errors import TORCH_INSTALL_HINT, ModelError
from forexd.models.spec import MODEL_KINDS, RL_KINDS, TORCH_KINDS, build_model_spec
from forexd.models.trainconfig import Candles, DirectionLabel, TrainConfig, make_labels
from forexd.models.walkforward import walk_forward

Sampler = Literal["tpe", "cmaes"]
SAMPLERS: tuple[str, ...] = ("tpe", "cmaes")
SQLITE_TIMEOUT_S = 60  # trials in several threads write the same SQLite file
SKLEARN_KINDS = tuple(k for k in MODEL_KINDS if k not in TORCH_KINDS)


@dataclass(frozen=True, slots=True)
class SearchResult:
    """The study's best trial after this run."""

    study_name: str
    storage: str
    trials_total: int
    trials_this_run: int
    failed_this_run: int
    best_value: float
    best_params: dict[str, Any]
    best_config: dict[str, Any]
    best_metrics: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {
            "study_name": self.study_name,
            "storage": self.storage,
            "trials_total": self.trials_total,
            "trials_this_run": self.trials_this_run,
            "failed_this_run": self.failed_this_run,
            "objective": "walk-forward out-of-sample Sharpe after costs (maximised)",
            "best_value": self.best_value,
            "best_params": self.best_params,
            "best_config": self.best_config,
            "best_metrics": self.best_metrics,
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


def _fingerprint(candles: Candles, symbol: str) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "candles": len(candles),
        "first_ts": int(candles.ts[0]),
        "last_ts": int(candles.ts[-1]),
    }


def run_search(
    candles: Candles,
    base: TrainConfig,
    *,
    symbol: str,
    pip_size: float,
    n_trials: int,
    study_dir: Path,
    study_name: str,
    sampler: str = "tpe",
    kinds: tuple[str, ...] = SKLEARN_KINDS,
    train_workers: int,
    blas_threads: int,
    bars_per_year: float,
    timeout_s: float | None = None,
    on_trial: Callable[[int, float | None], None] | None = None,
) -> SearchResult:
    """Run ``n_trials`` more trials of the study and return its best trial.

    Args:
        candles: history of the symbol (the last ``base.lookback_candles`` are used).
        base: the configuration the trials vary (features, walk-forward, lookback, seed).
        symbol: instrument, recorded on the study.
        pip_size: the instrument's pip.
        n_trials: trials to run now.
        study_dir: directory of the SQLite study file (created).
        study_name: the study to create or resume.
        sampler: ``tpe`` or ``cmaes``.
        kinds: model kinds to choose from.
        train_workers: trials at once (``ComputeBudget.train_workers``).
        blas_threads: threads per trial's model (``ComputeBudget.blas_threads``).
        bars_per_year: annualises the Sharpe ratio.
        timeout_s: stop starting trials after this long (``None``: no limit).
        on_trial: ``on_trial(finished_this_run, value_or_None)`` after every trial.

    Raises:
        InsufficientDataError: fewer candles than ``base.lookback_candles``.
        TorchUnavailableError / ConfigError: a torch kind without torch; cmaes missing.
        DataError: the study was run on other data.
        ModelError: no trial of this run succeeded (the last error is named).
    """
    optuna = require_extra("optuna", "forexd search")

    from forexd.models.errors import InsufficientDataError, TorchUnavailableError

    if n_trials < 1 or train_workers < 1 or blas_threads < 1:
        raise ConfigError("trials, train_workers and blas_threads must each be at least 1")
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
    features = compute_features(data.open, data.high, data.low, data.close, data.ts, base.features)
    first = features.first_valid_index

    study_dir.mkdir(parents=True, exist_ok=True)
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
    fingerprint = _fingerprint(data, symbol)
    known = study.user_attrs.get("data")
    if known is None:
        study.set_user_attr("data", fingerprint)
    elif known != fingerprint:
        raise DataError(
            f"study {study_name!r} in {study_dir} was run on other data ({known}); this run "
            f"has {fingerprint}; choose another --study-name or --study-dir"
        )
    errors: list[str] = []
    done = [0]

    def objective(trial: Any) -> float:
        try:
            return _score(trial)
        except ForexdError as exc:  # recorded on the trial, which Optuna marks FAIL
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}")
            raise

    def _score(trial: Any) -> float:
        config = suggest_config(trial, base, kinds)
        y = make_labels(config.label, data.high, data.low, data.close, pip_size)
        end = first + int(np.flatnonzero(np.isfinite(y[first:]))[-1]) + 1
        result = walk_forward(
            config.model,
            features.matrix,
            y,
            data.close,
            pip_size=pip_size,
            config=config.walk_forward_config(end - first, bars_per_year),
            n_jobs=blas_threads,
            seed=config.seed,
            ts_ns=data.ts,
        )
        trial.set_user_attr("log_loss", result.log_loss)
        trial.set_user_attr("trading", result.trading.to_dict())
        trial.set_user_attr("config", config.model_dump(mode="json"))
        sharpe = result.trading.sharpe
        return sharpe if math.isfinite(sharpe) else 0.0

    def callback(study_: Any, trial: Any) -> None:
        done[0] += 1
        if trial.state == optuna.trial.TrialState.FAIL:
            errors.append(str(trial.user_attrs.get("fail_reason", "failed")))
        if on_trial is not None:
            on_trial(done[0], trial.value)

    study.optimize(
        objective,
        n_trials=n_trials,
        n_jobs=train_workers,
        timeout=timeout_s,
        catch=(ForexdError,),
        callbacks=[callback],
        gc_after_trial=True,
    )
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise ModelError(
            f"no trial of study {study_name!r} succeeded; last error: "
            f"{errors[-1] if errors else 'none recorded'}"
        )
    best = study.best_trial
    return SearchResult(
        study_name=study_name,
        storage=url,
        trials_total=len(study.trials),
        trials_this_run=done[0],
        failed_this_run=len(errors),
        best_value=float(best.value or 0.0),
        best_params=dict(best.params),
        best_config=dict(best.user_attrs.get("config", {})),
        best_metrics={
            "sharpe": float(best.value or 0.0),
            "log_loss": best.user_attrs.get("log_loss"),
            "trading": best.user_attrs.get("trading"),
        },
    )
