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
from typing import Any, ClassVar

import numpy as np

from forexd.domain.bars import FloatArray
from forexd.models.errors import (
    RL_INSTALL_HINT,
    ArtifactError,
    RlUnavailableError,
)
from forexd.models.spec import ModelSpec, RecurrentPpoParams
from forexd.models.trained import Backend, TrainedModel

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
