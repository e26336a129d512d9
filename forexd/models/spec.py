"""Model specifications: a kind and its hyperparameters, validated per kind.

``MODEL_KINDS`` is the one list of kinds; the config and the CLI derive their choices from
it. Hyperparameters are checked against the kind's own pydantic model (unknown keys are
rejected), and the spec stores them with every default filled in, so a saved artifact
records exactly what was trained even if a default changes later.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from forexd.errors import ConfigError

ModelKind = Literal[
    "logistic", "hist_gradient_boosting", "random_forest", "mlp", "gru", "recurrent_ppo"
]
MODEL_KINDS: tuple[str, ...] = get_args(ModelKind)
TORCH_KINDS = frozenset({"mlp", "gru", "recurrent_ppo"})
RL_KINDS = frozenset({"recurrent_ppo"})


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LogisticParams(_Params):
    """L2-regularised logistic regression on standardised features (lbfgs)."""

    c: float = Field(1.0, gt=0, description="inverse regularisation strength (sklearn's C)")
    max_iter: int = Field(1000, ge=10, le=100_000)
    class_weight: Literal["balanced"] | None = None


class HistGradientBoostingParams(_Params):
    """scikit-learn's histogram gradient boosting (OpenMP threads; see fit.py)."""

    learning_rate: float = Field(0.05, gt=0, le=1)
    max_iter: int = Field(200, ge=1, le=10_000, description="boosting rounds")
    max_leaf_nodes: int | None = Field(31, ge=2, le=65_536)
    max_depth: int | None = Field(None, ge=1, le=1_000)
    min_samples_leaf: int = Field(20, ge=1)
    l2_regularization: float = Field(0.0, ge=0)
    early_stopping: bool = True
    validation_fraction: float = Field(0.1, gt=0, lt=0.5, description="chronological tail")
    n_iter_no_change: int = Field(10, ge=1)
    class_weight: Literal["balanced"] | None = None


class RandomForestParams(_Params):
    """scikit-learn's random forest; ``n_jobs`` comes from the caller, never from here."""

    n_estimators: int = Field(200, ge=1, le=5_000)
    max_depth: int | None = Field(8, ge=1, le=1_000)
    min_samples_leaf: int = Field(20, ge=1)
    max_features: Literal["sqrt", "log2"] | float = Field("sqrt")
    class_weight: Literal["balanced", "balanced_subsample"] | None = None

    @model_validator(mode="after")
    def _fraction(self) -> RandomForestParams:
        if isinstance(self.max_features, float) and not 0 < self.max_features <= 1:
            raise ValueError(
                f"max_features as a fraction must be in (0, 1], got {self.max_features}"
            )
        return self


class TorchTrainParams(_Params):
    """Training loop shared by the torch models: AdamW, fixed epoch budget, early stopping.

    The validation set is the chronological tail of the training rows (never a random
    sample: neighbouring bars are correlated, so a random split would flatter the loss).
    """

    learning_rate: float = Field(1e-3, gt=0, le=1)
    weight_decay: float = Field(1e-4, ge=0, le=1)
    batch_size: int = Field(256, ge=1, le=65_536)
    max_epochs: int = Field(50, ge=1, le=10_000, description="epoch budget")
    patience: int = Field(5, ge=1, le=10_000, description="epochs without improvement")
    validation_fraction: float = Field(0.15, gt=0, lt=0.5)
    dropout: float = Field(0.1, ge=0, lt=1)


class MlpParams(TorchTrainParams):
    """Feed-forward network over one feature row."""

    hidden_sizes: tuple[int, ...] = Field((64, 32), min_length=1, max_length=8)

    @model_validator(mode="after")
    def _sizes(self) -> MlpParams:
        if any(not 1 <= h <= 65_536 for h in self.hidden_sizes):
            raise ValueError(f"hidden_sizes must be between 1 and 65536, got {self.hidden_sizes}")
        return self


class GruParams(TorchTrainParams):
    """GRU over a window of consecutive feature rows; predicts from the last hidden state."""

    window: int = Field(24, ge=2, le=10_000, description="feature rows per sequence")
    hidden_size: int = Field(32, ge=1, le=65_536)
    num_layers: int = Field(1, ge=1, le=8)


class RecurrentPpoParams(_Params):
    """RecurrentPPO (sb3-contrib, LSTM policy) trading short/flat/long; see models/rl_ppo.py.

    ``timesteps`` is the training budget per fit (environment steps); the trainer caps it
    by the compute budget (``rl_ppo.max_timesteps``). ``context_bars`` feature rows before
    the first traded bar build the recurrent state (evaluation and live restarts alike).
    """

    timesteps: int = Field(8192, ge=64, le=50_000_000, description="env steps per fit")
    n_steps: int = Field(256, ge=8, le=65_536, description="rollout length")
    batch_size: int = Field(64, ge=2, le=65_536)
    n_epochs: int = Field(4, ge=1, le=100)
    learning_rate: float = Field(3e-4, gt=0, le=1)
    gamma: float = Field(0.99, gt=0, le=1)
    gae_lambda: float = Field(0.95, gt=0, le=1)
    clip_range: float = Field(0.2, gt=0, le=1)
    ent_coef: float = Field(0.01, ge=0, le=1)
    hidden_sizes: tuple[int, ...] = Field((32,), max_length=8)
    lstm_hidden_size: int = Field(32, ge=1, le=4096)
    episode_bars: int = Field(512, ge=8, le=1_000_000, description="bars per training episode")
    context_bars: int = Field(48, ge=0, le=100_000, description="burn-in rows for the state")


HyperParams = (
    LogisticParams
    | HistGradientBoostingParams
    | RandomForestParams
    | MlpParams
    | GruParams
    | RecurrentPpoParams
)
PARAMS: dict[str, type[_Params]] = {
    "logistic": LogisticParams,
    "hist_gradient_boosting": HistGradientBoostingParams,
    "random_forest": RandomForestParams,
    "mlp": MlpParams,
    "gru": GruParams,
    "recurrent_ppo": RecurrentPpoParams,
}


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(all)'}: {e['msg']}" for e in exc.errors()
    )


class ModelSpec(BaseModel):
    """What to train: ``kind`` and its ``hyperparameters`` (defaults filled in on validation).

    Example: ``ModelSpec(kind="random_forest", hyperparameters={"n_estimators": 300})``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ModelKind
    hyperparameters: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _validate_hyperparameters(self) -> ModelSpec:
        try:
            params = PARAMS[self.kind](**self.hyperparameters)
        except ValidationError as exc:
            raise ValueError(f"hyperparameters for {self.kind}: {_problems(exc)}") from None
        # The model is frozen; this runs once, during construction, to store the completed,
        # JSON-ready hyperparameters (tuples become lists and validate back into tuples).
        object.__setattr__(self, "hyperparameters", params.model_dump(mode="json"))
        return self

    @property
    def params(self) -> HyperParams:
        """The hyperparameters as the kind's typed model."""
        parsed: HyperParams = PARAMS[self.kind](**self.hyperparameters)  # type: ignore[assignment]
        return parsed

    @property
    def uses_torch(self) -> bool:
        """Whether this kind needs the ``torch`` extra."""
        return self.kind in TORCH_KINDS

    @property
    def is_rl(self) -> bool:
        """Whether this kind is a reinforcement-learning agent (needs the ``rl`` extra)."""
        return self.kind in RL_KINDS


def build_model_spec(raw: Mapping[str, Any], where: str = "model") -> ModelSpec:
    """Validate a raw mapping (from TOML or the CLI) into a :class:`ModelSpec`.

    Args:
        raw: ``{"kind": ..., "hyperparameters": {...}}``.
        where: what to call the input in an error message (a config key, a CLI flag).

    Raises:
        ConfigError: unknown kind, unknown hyperparameter or a value out of range.
    """
    try:
        return ModelSpec(**dict(raw))
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_problems(exc)} (kinds: {', '.join(MODEL_KINDS)})") from None
