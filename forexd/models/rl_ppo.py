"""The ``recurrent_ppo`` kind: sb3-contrib's RecurrentPPO trained in the backtest env.

Options weighed for what a trained agent *is*: sb3's own ``model.save`` zip holds pickled
objects (``data``, optimiser and custom objects are unpickled by ``RecurrentPPO.load``), and
a models directory must never execute code on load. So an agent is stored like the torch
kinds: the policy's ``state_dict`` (plus the observation standardisation) as a plain tensor
dict, loaded with ``torch.load(weights_only=True)`` into a policy rebuilt from the spec's
constructor arguments (:func:`build_policy`). Nothing of sb3's zip format is ever read.

As a :class:`~forexd.models.trained.TrainedModel` an agent is a "classifier" over the
classes ``[-1, 0, 1]`` (short, flat, long): ``predict_proba`` is the policy's action
distribution, computed in **one batched LSTM pass** over the given rows from a zero state,
whose first ``context_rows`` (``context_bars``) outputs are NaN (the burn-in that builds
the recurrent state). ``predict`` is the deterministic action (the distribution's mode).
Live trading steps the same LSTM one bar at a time with the state carried between bars
(:meth:`RlModel.step`); after a restart the state is rebuilt by the same burn-in over the
last ``context_bars`` bars of history.

Threads and seeds: nothing here calls ``torch.set_num_threads`` (the runtime caps threads
once). sb3 seeds torch's *global* generator (``set_random_seed``), so two RL fits running
at once in one process would disturb each other's streams: fits of this kind are
deterministic per process (same seed, data, thread count → same weights on CPU), which is
how the daemon's process executor and ``forexd models compare`` run them.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from forexd.brokers.ledger import CostModel
from forexd.models.errors import (
    RL_INSTALL_HINT,
    ArtifactError,
    FitError,
    InsufficientDataError,
    RlUnavailableError,
)
from forexd.models.spec import ModelSpec, RecurrentPpoParams
from forexd.models.trainconfig import Candles
from forexd.models.trained import Backend, TrainedModel
from forexd.strategies.base import FloatArray

RL_CLASSES = np.array([-1, 0, 1], dtype=np.int64)
PAYLOAD_NAME = "policy.pt"
MAX_TIMESTEPS_PER_THREAD = 250_000
"""Cap on one fit's timesteps per thread of the compute budget (guessed: ~4-8 minutes of a
tiny LSTM policy on one 2020s core); ``timesteps`` above it are cut and the cut recorded."""


def import_rl() -> Any:
    """Import sb3-contrib's RecurrentPPO, or raise a typed error with the install hint.

    Raises:
        RlUnavailableError: torch, stable-baselines3, sb3-contrib or gymnasium is missing.
    """
    try:
        from sb3_contrib import RecurrentPPO
    except ImportError as exc:
        raise RlUnavailableError(
            f"model kind recurrent_ppo needs stable-baselines3, sb3-contrib and gymnasium "
            f"({exc.name or exc} is missing); {RL_INSTALL_HINT}"
        ) from None
    return RecurrentPPO


def max_timesteps(blas_threads: int) -> int:
    """The most timesteps one fit may run under a budget of ``blas_threads`` threads."""
    return MAX_TIMESTEPS_PER_THREAD * max(1, blas_threads)


def rl_params(spec: ModelSpec) -> RecurrentPpoParams:
    """The typed hyperparameters of an RL spec.

    Raises:
        ValueError: ``spec`` is not an RL kind.
    """
    params = spec.params
    if not isinstance(params, RecurrentPpoParams):
        raise ValueError(f"{spec.kind} is not an RL model kind")
    return params


def policy_kwargs(params: RecurrentPpoParams) -> dict[str, Any]:
    """The policy's constructor arguments (besides the spaces), derived from the spec."""
    return {
        "net_arch": list(params.hidden_sizes),
        "lstm_hidden_size": params.lstm_hidden_size,
        "n_lstm_layers": 1,
        "enable_critic_lstm": True,
    }


def build_policy(spec: ModelSpec, n_features: int) -> Any:
    """An untrained ``RecurrentActorCriticPolicy`` for ``spec`` (to load weights into)."""
    import_rl()
    from gymnasium import spaces
    from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy

    obs_space = spaces.Box(-np.inf, np.inf, shape=(n_features,), dtype=np.float32)
    action_space = spaces.Discrete(len(RL_CLASSES))
    return RecurrentActorCriticPolicy(
        obs_space, action_space, lambda _: 0.0, **policy_kwargs(rl_params(spec))
    )


class RlModel(TrainedModel):
    """A trained recurrent policy (see the module note for its probabilities and state)."""

    backend: ClassVar[Backend] = "rl"

    def __init__(
        self,
        spec: ModelSpec,
        policy: Any,
        obs_mean: FloatArray,
        obs_scale: FloatArray,
        device: str,
        n_features: int,
        feature_names: list[str] | None,
        info: dict[str, Any],
    ) -> None:
        super().__init__(spec, RL_CLASSES, n_features, feature_names, info)
        self.policy = policy
        policy.set_training_mode(False)
        self.obs_mean = np.asarray(obs_mean, dtype=np.float64)
        self.obs_scale = np.asarray(obs_scale, dtype=np.float64)
        self.device = device

    @property
    def context_rows(self) -> int:
        """Burn-in rows whose outputs are NaN (they build the recurrent state)."""
        return rl_params(self.spec).context_bars

    def initial_state(self) -> tuple[Any, Any]:
        """A zero LSTM state ``(h, c)`` of the actor."""
        import torch

        shape = (1, 1, rl_params(self.spec).lstm_hidden_size)
        zeros = torch.zeros(shape, device=self.device)
        return zeros, zeros.clone()

    def run(self, x: FloatArray, state: tuple[Any, Any] | None = None) -> tuple[Any, Any]:
        """Action probabilities for consecutive rows from ``state`` (zero if ``None``).

        One LSTM call over all rows (batched inference); returns ``(proba [n, 3], state)``.
        """
        import torch

        obs = (np.asarray(x, dtype=np.float64) - self.obs_mean) / self.obs_scale
        tensor = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        starts = torch.zeros(len(obs), device=self.device)
        with torch.no_grad():
            dist, new_state = self.policy.get_distribution(
                tensor, state if state is not None else self.initial_state(), starts
            )
            proba = dist.distribution.probs.double().cpu().numpy()
        return proba, (new_state[0], new_state[1])

    def step(self, row: FloatArray, state: tuple[Any, Any]) -> tuple[FloatArray, Any]:
        """Probabilities for one new row, carrying ``state`` (live trading)."""
        proba, new_state = self.run(np.asarray(row, dtype=np.float64)[np.newaxis, :], state)
        out: FloatArray = proba[0]
        return out, new_state

    def _predict_proba(self, x: FloatArray) -> FloatArray:
        out = np.full((len(x), len(RL_CLASSES)), np.nan)
        if len(x) == 0:
            return out
        proba, _ = self.run(x)
        out[self.context_rows :] = proba[self.context_rows :]
        return out

    def payload(self) -> bytes:
        """The artifact payload: tensors only (policy state dict and standardisation)."""
        import torch

        state = {k: v.detach().cpu() for k, v in self.policy.state_dict().items()}
        blob = {
            "policy": state,
            "obs_mean": torch.as_tensor(self.obs_mean, dtype=torch.float64),
            "obs_scale": torch.as_tensor(self.obs_scale, dtype=torch.float64),
        }
        buf = io.BytesIO()
        torch.save(blob, buf)
        return buf.getvalue()


def load_rl(
    path: Any, payload: bytes, spec: ModelSpec, n_features: int, device: str
) -> tuple[Any, FloatArray, FloatArray]:
    """Rebuild ``(policy, obs_mean, obs_scale)`` from a payload, never unpickling objects.

    Raises:
        ArtifactError: the payload is not a plain tensor dict fitting the spec.
    """
    import torch

    policy = build_policy(spec, n_features)
    try:
        blob = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        policy.load_state_dict(blob["policy"])
        mean = blob["obs_mean"].numpy().astype(np.float64)
        scale = blob["obs_scale"].numpy().astype(np.float64)
    except Exception as exc:  # unpickling refused, missing keys, shapes: not our payload
        raise ArtifactError(
            f"model artifact {path}: the policy weights do not load into a {spec.kind} "
            f"({type(exc).__name__}: {exc})"
        ) from None
    if mean.shape != (n_features,) or scale.shape != (n_features,):
        raise ArtifactError(f"model artifact {path}: standardisation does not fit {n_features}")
    return policy.to(device), mean, scale


def fit_rl(
    spec: ModelSpec,
    symbol: str,
    candles: Candles,
    x: FloatArray,
    first: int,
    end: int,
    *,
    costs: CostModel,
    units: int,
    seed: int,
    device: str = "cpu",
    blas_threads: int = 1,
    stop: Callable[[], None] | None = None,
    feature_names: list[str] | None = None,
) -> RlModel:
    """Train an agent on bars ``first..end - 1`` (the last step's fill is at ``end - 1``).

    Args:
        spec: a ``recurrent_ppo`` spec.
        symbol: the instrument (pip size, USD conversion).
        candles: the bars; ``x`` is aligned with them.
        x: the feature matrix (finite over ``first..end``).
        first: first training bar.
        end: one past the last bar a training step may read.
        costs: the backtest's costs.
        units: position size of an action.
        seed: seeds the policy, the rollouts and the episode starts.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        blas_threads: the compute budget's threads; caps ``timesteps``.
        stop: raises to abandon the fit (checked after every rollout).
        feature_names: stored with the model.

    Raises:
        RlUnavailableError: the ``rl`` extra is missing.
        InsufficientDataError: fewer bars than one rollout needs.
        FitError: the training raised or produced non-finite weights.
    """
    recurrent_ppo = import_rl()
    from stable_baselines3.common.callbacks import BaseCallback

    from forexd.models.rl_env import TradingEnv
    from forexd.models.rl_sim import BarSim

    params = rl_params(spec)
    started = time.perf_counter()
    if end - first < max(params.n_steps // 4, 16):
        raise InsufficientDataError(
            f"recurrent_ppo: {end - first} training bars, need at least "
            f"{max(params.n_steps // 4, 16)}; lengthen the lookback"
        )
    rows = x[first:end]
    mean = rows.mean(axis=0)
    scale = rows.std(axis=0)
    scale[scale == 0] = 1.0  # a constant column carries no information; avoid 0/0
    obs = (x - mean) / scale
    sim = BarSim(symbol, candles, costs=costs, units=units)
    pip_usd = sim.instrument.to_account(
        units * sim.instrument.pip_size, float(candles.close[end - 1])
    )
    env = TradingEnv(
        sim,
        obs,
        first=first,
        last=end - 1,
        episode_bars=params.episode_bars,
        reward_scale=1.0 / pip_usd,  # rewards in pips of the position: O(1) for PPO
    )
    total = min(params.timesteps, max_timesteps(blas_threads))

    class _Stop(BaseCallback):
        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            if stop is not None:
                stop()

    try:
        agent = recurrent_ppo(
            "MlpLstmPolicy",
            env,
            n_steps=params.n_steps,
            batch_size=params.batch_size,
            n_epochs=params.n_epochs,
            learning_rate=params.learning_rate,
            gamma=params.gamma,
            gae_lambda=params.gae_lambda,
            clip_range=params.clip_range,
            ent_coef=params.ent_coef,
            policy_kwargs=policy_kwargs(params),
            seed=seed,
            device=device,
            verbose=0,
        )
        agent.learn(total_timesteps=total, callback=_Stop())
    except Exception as exc:
        if stop is not None:
            stop()  # an abandoned fit raises its own error, not a FitError
        raise FitError(f"recurrent_ppo: training failed: {type(exc).__name__}: {exc}") from exc
    state = {k: v.detach().cpu().clone() for k, v in agent.policy.state_dict().items()}
    if not all(bool(v.isfinite().all()) for v in state.values() if v.is_floating_point()):
        raise FitError("recurrent_ppo: training produced NaN/inf weights; lower learning_rate")
    # The trading policy is rebuilt from the spec and the state dict, exactly as a load
    # would: what trades after training is what an artifact restores.
    policy = build_policy(spec, x.shape[1])
    policy.load_state_dict(state)
    info = {
        "fit_seconds": time.perf_counter() - started,
        "rows": end - first,
        "timesteps": int(agent.num_timesteps),
        "timesteps_requested": params.timesteps,
        "timesteps_capped": total < params.timesteps,
        "device": device,
        "torch_threads": int(__import__("torch").get_num_threads()),
    }
    return RlModel(spec, policy.to(device), mean, scale, device, x.shape[1], feature_names, info)


def timesteps_override(model: Any, timesteps: int) -> dict[str, Any]:
    """A model spec (raw config mapping) with ``timesteps`` set (``--timesteps``).

    Raises:
        ConfigError: the model is not an RL kind, or ``timesteps`` is out of range.
    """
    from pydantic import ValidationError

    from forexd.errors import ConfigError

    raw = dict(model or {"kind": "logistic"})
    if raw.get("kind") not in ("recurrent_ppo",):
        raise ConfigError(
            f"--timesteps applies to RL kinds only (recurrent_ppo), not {raw.get('kind')}; "
            "pass --model recurrent_ppo"
        )
    raw["hyperparameters"] = {**dict(raw.get("hyperparameters") or {}), "timesteps": timesteps}
    try:
        return ModelSpec(**raw).model_dump(mode="json")
    except ValidationError as exc:
        raise ConfigError(f"--timesteps {timesteps}: {exc.errors()[0]['msg']}") from None
