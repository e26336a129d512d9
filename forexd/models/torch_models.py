"""Training and inference of the torch kinds (``mlp``, ``gru``).

torch is an optional extra and a heavy import, so it is imported inside functions only.
This module never calls ``torch.set_num_threads``: thread caps are process-wide and belong
to the runtime's compute budget, set once at start-up.

Training: AdamW on cross-entropy, mini-batches shuffled by a seeded generator, a fixed
epoch budget (``max_epochs``) with early stopping on the loss of a chronological validation
tail (``patience`` epochs without improvement), then the best epoch's weights are restored.
On CPU, the same data, seed and thread count give the same weights.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from forexd.domain.bars import FloatArray, IntArray
from forexd.models.errors import (
    TORCH_INSTALL_HINT,
    FitError,
    InsufficientDataError,
    TorchUnavailableError,
)
from forexd.models.spec import GruParams, MlpParams, ModelSpec
from forexd.models.trained import Backend, TrainedModel

if TYPE_CHECKING:
    import torch
    from torch import nn

PREDICT_BATCH_ROWS = 4096
MIN_TRAIN_ROWS = 32  # guessed: fewer rows cannot fit even a small network meaningfully
MIN_IMPROVEMENT = 1e-6  # a validation loss must drop by more than this to count as better


def import_torch() -> Any:
    """Import torch, or raise a typed error that says how to install it.

    Raises:
        TorchUnavailableError: torch is not installed.
    """
    try:
        import torch
    except ImportError:
        raise TorchUnavailableError(
            f"torch models (mlp, gru) need PyTorch, which is not installed; {TORCH_INSTALL_HINT}"
        ) from None
    return torch


def build_module(
    spec: ModelSpec, n_features: int, n_classes: int, generator: torch.Generator | None = None
) -> nn.Module:
    """The untrained network for ``spec`` (also used to rebuild a saved model)."""
    import_torch()
    from forexd.models import _torch_nets

    params = spec.params
    if isinstance(params, MlpParams):
        return _torch_nets.MlpNet(
            n_features, n_classes, params.hidden_sizes, params.dropout, generator
        )
    if isinstance(params, GruParams):
        return _torch_nets.GruNet(
            n_features,
            n_classes,
            params.hidden_size,
            params.num_layers,
            params.dropout,
            generator,
        )
    raise ValueError(f"{spec.kind} is not a torch model kind")


class TorchModel(TrainedModel):
    """A trained torch network; inputs are standardised inside the module."""

    backend: ClassVar[Backend] = "torch"

    def __init__(
        self,
        spec: ModelSpec,
        module: nn.Module,
        device: str,
        classes: IntArray,
        n_features: int,
        feature_names: list[str] | None,
        info: dict[str, Any],
    ) -> None:
        super().__init__(spec, classes, n_features, feature_names, info)
        self.module = module.eval()
        self.device = device

    @property
    def window(self) -> int:
        """Feature rows per prediction (1 for the MLP)."""
        params = self.spec.params
        return params.window if isinstance(params, GruParams) else 1

    @property
    def context_rows(self) -> int:
        """Earlier rows a GRU prediction needs (``window - 1``)."""
        return self.window - 1

    def _predict_proba(self, x: FloatArray) -> FloatArray:
        torch = import_torch()
        n, w = len(x), self.window
        out = np.full((n, len(self.classes)), np.nan)
        if n < w:
            return out
        rows = torch.as_tensor(x, dtype=torch.float32, device=self.device)
        targets = np.arange(w - 1, n)
        with torch.no_grad():
            for start in range(0, len(targets), PREDICT_BATCH_ROWS):
                batch = _gather(torch, rows, targets[start : start + PREDICT_BATCH_ROWS], w)
                proba = torch.softmax(self.module(batch), dim=1)
                out[w - 1 + start : w - 1 + start + len(batch)] = proba.double().cpu().numpy()
        return out


def _gather(torch: Any, rows: Any, targets: IntArray, window: int) -> Any:
    """Inputs for target rows: the rows themselves, or their trailing windows for a GRU."""
    idx = torch.as_tensor(targets, device=rows.device)
    if window == 1:
        return rows[idx]
    offsets = torch.arange(-window + 1, 1, device=rows.device)
    return rows[idx[:, None] + offsets[None, :]]


def fit_torch(
    spec: ModelSpec,
    x: FloatArray,
    y_index: IntArray,
    classes: IntArray,
    *,
    seed: int,
    device: str,
    feature_names: list[str] | None,
) -> TorchModel:
    """Train an ``mlp`` or ``gru``.

    Args:
        spec: a torch kind.
        x: finite features ``[n, F]``.
        y_index: class index per row (into ``classes``), ``-1`` where the row has no label
            (such rows still serve as GRU context).
        classes: label values.
        seed: seeds initialisation, shuffling and dropout.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        feature_names: stored with the model.

    Raises:
        TorchUnavailableError: torch is not installed.
        InsufficientDataError: too few labelled rows for training plus validation.
        FitError: the loss became NaN/inf.
    """
    torch = import_torch()
    params = spec.params
    if not isinstance(params, MlpParams | GruParams):
        raise ValueError(f"{spec.kind} is not a torch model kind")
    started = time.perf_counter()
    window = params.window if isinstance(params, GruParams) else 1
    targets = np.flatnonzero(y_index >= 0)
    targets = targets[targets >= window - 1]
    n_val = max(1, round(len(targets) * params.validation_fraction))
    if len(targets) - n_val < MIN_TRAIN_ROWS:
        need = math.ceil(MIN_TRAIN_ROWS / (1.0 - params.validation_fraction)) + 1
        raise InsufficientDataError(
            f"{spec.kind}: {len(targets)} labelled rows with a full window, need at least "
            f"{need} (training plus validation tail); lengthen the lookback or shorten the window"
        )
    train_t, val_t = targets[:-n_val], targets[-n_val:]
    train_rows = x[: train_t[-1] + 1]
    mean = train_rows.mean(axis=0)
    scale = train_rows.std(axis=0)
    scale[scale == 0] = 1.0  # a constant column carries no information; avoid 0/0

    cpu_gen = torch.Generator().manual_seed(seed)
    dev_gen = torch.Generator(device=device).manual_seed(seed)
    from forexd.models import _torch_nets

    module = build_module(spec, x.shape[1], len(classes), dev_gen)
    _torch_nets.init_parameters(module, cpu_gen)
    _torch_nets.set_standardisation(
        module,
        torch.as_tensor(mean, dtype=torch.float32),
        torch.as_tensor(scale, dtype=torch.float32),
    )
    module.to(device)

    rows = torch.as_tensor(x, dtype=torch.float32, device=device)
    labels = torch.as_tensor(y_index, dtype=torch.long, device=device)
    optimiser = torch.optim.AdamW(
        module.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay
    )
    loss_fn = torch.nn.CrossEntropyLoss()
    best_loss, best_epoch, best_state = float("inf"), -1, None
    epochs = 0
    for epoch in range(params.max_epochs):
        epochs = epoch + 1
        module.train()
        order = train_t[torch.randperm(len(train_t), generator=cpu_gen).numpy()]
        for start in range(0, len(order), params.batch_size):
            batch_t = order[start : start + params.batch_size]
            logits = module(_gather(torch, rows, batch_t, window))
            loss = loss_fn(logits, labels[torch.as_tensor(batch_t, device=device)])
            if not torch.isfinite(loss):
                raise FitError(
                    f"{spec.kind}: training diverged (loss {loss.item()} in epoch {epochs}); "
                    "lower hyperparameters.learning_rate"
                )
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        val_loss = _loss(torch, module, rows, labels, val_t, window, loss_fn)
        if not np.isfinite(val_loss):
            raise FitError(
                f"{spec.kind}: validation loss is {val_loss} in epoch {epochs}; "
                "lower hyperparameters.learning_rate"
            )
        if val_loss < best_loss - MIN_IMPROVEMENT:
            best_loss, best_epoch = val_loss, epochs
            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        elif epochs - best_epoch >= params.patience:
            break
    if best_state is not None:
        module.load_state_dict(best_state)
    info = {
        "fit_seconds": time.perf_counter() - started,
        "rows": len(train_t),
        "validation_rows": n_val,
        "epochs": epochs,
        "best_epoch": best_epoch,
        "best_validation_loss": best_loss,
        "stopped_early": epochs < params.max_epochs,
        "device": device,
    }
    return TorchModel(spec, module, device, classes, x.shape[1], feature_names, info)


def _loss(
    torch: Any, module: Any, rows: Any, labels: Any, targets: IntArray, window: int, loss_fn: Any
) -> float:
    """Mean loss over ``targets`` in eval mode."""
    module.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(targets), PREDICT_BATCH_ROWS):
            batch_t = targets[start : start + PREDICT_BATCH_ROWS]
            logits = module(_gather(torch, rows, batch_t, window))
            idx = torch.as_tensor(batch_t, device=rows.device)
            total += float(loss_fn(logits, labels[idx]).item()) * len(batch_t)
    return total / len(targets)
