"""Errors of the learning layer. Each message names the input, the problem and the fix."""

from __future__ import annotations

from forexd.errors import ForexdError


class ModelError(ForexdError):
    """A model cannot be specified, trained, evaluated, saved or loaded."""


class TorchUnavailableError(ModelError):
    """A torch model (``mlp``, ``gru``) was asked for but torch is not installed."""


class InsufficientDataError(ModelError):
    """Fewer rows than the lookback, the folds or the model need."""


class ConstantSeriesError(ModelError):
    """The price series does not move over the evaluated window: nothing to learn."""


class LabelError(ModelError):
    """The labels cannot train a classifier (one class only, none at all, misaligned)."""


class FeatureError(ModelError):
    """The feature matrix has the wrong shape or NaN/inf values after the warm-up."""


class FitError(ModelError):
    """The estimator raised, diverged or did not converge; the message names the model kind."""


class ArtifactError(ModelError):
    """A saved model is missing, truncated, corrupt, of an unknown format or untrusted."""


TORCH_INSTALL_HINT = "install the extra with: pip install 'forexd[torch]'"


class RlUnavailableError(ModelError):
    """An RL kind (``recurrent_ppo``) was asked for but the ``rl`` extra is not installed."""


RL_INSTALL_HINT = "install the extra with: pip install 'forexd[rl]'"
