"""Test-only model loader for ``forexd.rl.compare``: a model whose prediction never ends
(and the same as a refit hook for the K-challenger cycle).

It is registered nowhere in forexd: a test names it as a ``ModelRef.loader``
(``tests._hang_model:load``) and the spawned comparison worker imports it from there.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from forexd.models.artifacts import load_model


class HangingModel:
    """A real artifact's model whose ``predict_proba`` blocks forever (a hung GPU call)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.metadata = inner.metadata
        self.spec = inner.spec
        self.classes = inner.classes
        self.backend = inner.backend
        self.context_rows = inner.context_rows

    def predict_proba(self, x: Any) -> Any:
        """Never returns."""
        threading.Event().wait()


def load(path: str, device: str) -> HangingModel:
    """Loader hook: the artifact at ``path``, made to hang in prediction."""
    return HangingModel(load_model(Path(path), device=device))


HANGING_SEED = 1


def refit_hangs_for_seed_1(config: Any, x: Any, setup: Any) -> Any:
    """Refit hook of the K-challenger cycle's evaluation (``forexd.daemon.challengers.REFIT``):
    the real refit, made to hang in prediction for the challenger with seed 1."""
    from forexd.rl.window_eval import refit

    model = refit(config, x, setup)
    return HangingModel(model) if config.seed == HANGING_SEED else model
