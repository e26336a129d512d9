"""torch modules for the ``mlp`` and ``gru`` kinds. Imported only when such a model is used.

Randomness is drawn from explicit ``torch.Generator`` objects (weight initialisation,
dropout masks), never from torch's global generator: training runs in a thread pool, and a
global seed set by one job would silently change another job's stream. Dropout is therefore
our own small module instead of ``nn.Dropout``, and ``nn.GRU``'s inter-layer dropout (which
draws from the global generator) is not used.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# torch is typed, but CI without the extra type-checks this file with torch as ``Any``;
# the ignore covers that case and is itself allowed to be unused.


class SeededDropout(nn.Module):  # type: ignore[misc, unused-ignore]
    """Inverted dropout whose masks come from a given generator (identity in eval mode)."""

    def __init__(self, p: float, generator: torch.Generator | None) -> None:
        super().__init__()
        self.p = p
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Zero each value with probability ``p`` while training; scale the rest up."""
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand(x.shape, generator=self.generator, device=x.device) >= self.p
        return x * keep.to(x.dtype) / (1.0 - self.p)


class Standardise(nn.Module):  # type: ignore[misc, unused-ignore]
    """``(x - mean) / scale`` with the training statistics kept in the state dict."""

    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Standardise the last axis."""
        return (x - self.mean) / self.scale


class MlpNet(nn.Module):  # type: ignore[misc, unused-ignore]
    """Feature row ``[B, F]`` to class logits ``[B, C]``."""

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        hidden_sizes: tuple[int, ...],
        dropout: float,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.standardise = Standardise(n_features)
        layers: list[nn.Module] = []
        width = n_features
        for h in hidden_sizes:
            layers += [nn.Linear(width, h), nn.ReLU(), SeededDropout(dropout, generator)]
            width = h
        layers.append(nn.Linear(width, n_classes))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for each row."""
        out: torch.Tensor = self.body(self.standardise(x))
        return out


class GruNet(nn.Module):  # type: ignore[misc, unused-ignore]
    """Window of feature rows ``[B, W, F]`` to class logits ``[B, C]`` (last hidden state)."""

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        hidden_size: int,
        num_layers: int,
        dropout: float,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.standardise = Standardise(n_features)
        self.gru = nn.GRU(n_features, hidden_size, num_layers=num_layers, batch_first=True)
        self.dropout = SeededDropout(dropout, generator)
        self.head = nn.Linear(hidden_size, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits from the hidden state after the newest row of each window."""
        seq, _ = self.gru(self.standardise(x))
        out: torch.Tensor = self.head(self.dropout(seq[:, -1, :]))
        return out


def init_parameters(module: nn.Module, generator: torch.Generator) -> None:
    """Initialise every parameter from ``generator`` (PyTorch's default ranges)."""
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, nn.Linear):
                bound = 1.0 / math.sqrt(sub.in_features)
                nn.init.uniform_(sub.weight, -bound, bound, generator=generator)
                nn.init.uniform_(sub.bias, -bound, bound, generator=generator)
            elif isinstance(sub, nn.GRU):
                bound = 1.0 / math.sqrt(sub.hidden_size)
                for param in sub.parameters():
                    nn.init.uniform_(param, -bound, bound, generator=generator)


def set_standardisation(module: nn.Module, mean: torch.Tensor, scale: torch.Tensor) -> None:
    """Store the training mean and scale in the network's :class:`Standardise` layer."""
    for sub in module.modules():
        if isinstance(sub, Standardise):
            with torch.no_grad():
                sub.mean.copy_(mean)
                sub.scale.copy_(scale)
