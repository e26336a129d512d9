"""The training half of a symbol actor: one trainer per ML symbol, one cycle at a time.

The strategy only decides; a trainer (the daemon's :class:`~forexd.daemon.trainer.ModelTrainer`,
built by ``ActorDeps.make_trainer``) restores, trains and promotes. The trainer hands a
promoted champion back through the actor's inbox (:class:`~forexd.actors.messages.ChampionReady`),
and the actor installs it on the strategy it trades with *then* — after a reload that is the
new strategy object, so a reloaded ML symbol keeps its champion and keeps retraining.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import numpy as np
import numpy.typing as npt

from forexd.actors.messages import ChampionReady
from forexd.errors import ForexdError
from forexd.strategies.base import Strategy
from forexd.strategies.ml import MlStrategy

if TYPE_CHECKING:
    from forexd.actors.symbol import SymbolActor
    from forexd.models.champion import LiveChampion
    from forexd.strategies.ml_params import MlParams


class Trainer(Protocol):
    """What an actor needs from a model trainer."""

    @property
    def champion(self) -> LiveChampion | None:
        """The newest champion the trainer loaded or promoted."""
        ...

    @property
    def params(self) -> MlParams:
        """The parameters its next cycle trains with (``train_timeout_s`` for a job)."""
        ...

    def restore(self) -> LiveChampion | None:
        """Load the champion from the registry (blocking)."""
        ...

    def retarget(self, params: MlParams) -> None:
        """Use new parameters from the next cycle (reload)."""
        ...

    def forget_champion(self, reason: str) -> None:
        """The strategy refused the champion: train a new one at once."""
        ...

    def wants_training(self, bars_seen: int) -> bool:
        """Whether a scheduled cycle is due."""
        ...

    async def train_cycle(self, bar_times: npt.NDArray[np.int64], reason: str) -> None:
        """Run one cycle; raises nothing but cancellation."""
        ...

    def stats(self) -> dict[str, Any]:
        """Training figures for ``ctl status``."""
        ...


HandOver = Callable[["LiveChampion"], Awaitable[None]]
TrainerFactory = Callable[[str, "MlParams", HandOver], Trainer]
"""``(symbol, params, hand_over) -> Trainer``."""


class TrainingSlot:
    """An actor's trainer and its running cycle (part of the actor; see the module note)."""

    def __init__(self, actor: SymbolActor) -> None:
        self.actor = actor
        self.trainer: Trainer | None = self._trainer_for(actor.strategy)
        self.running = False
        self._pending_reason: str | None = None
        self._scope: anyio.CancelScope | None = None
        self._idle = anyio.Event()
        self._idle.set()

    @property
    def active(self) -> bool:
        """Whether this symbol has a model to train."""
        return self.trainer is not None

    def _trainer_for(self, strategy: Strategy) -> Trainer | None:
        make = self.actor.deps.make_trainer
        if not isinstance(strategy, MlStrategy) or make is None:
            return None
        return make(self.actor.symbol, strategy.params, self._hand_over)

    async def _hand_over(self, champion: LiveChampion) -> None:
        await self.actor.post(ChampionReady(champion))

    async def restore(self) -> None:
        """At the start of a life: load the champion and give it to the strategy."""
        if self.trainer is not None:
            self.install(await anyio.to_thread.run_sync(self.trainer.restore))

    def install(self, champion: LiveChampion | None) -> None:
        """Give ``champion`` to the strategy trading now (inside the actor)."""
        strategy = self.actor.strategy
        if not isinstance(strategy, MlStrategy) or self.trainer is None:
            return  # reloaded to a strategy without a model in between: nothing to do
        try:
            strategy.set_champion(champion)
        except ForexdError as exc:
            self.actor.log.error("champion_refused", error=str(exc))
            self.trainer.forget_champion(f"champion refused: {exc}")
            return
        if champion is not None:
            self.actor.log.info("champion_installed", model_id=champion.model_id)

    def maybe_start(self, reason: str | None) -> None:
        """Start a cycle for ``reason`` (an operator's) or when the schedule says so."""
        trainer = self.trainer
        if trainer is None:
            return
        if self.running:
            self._pending_reason = reason or self._pending_reason
            return
        reason = reason or self._pending_reason
        if reason is None and trainer.wants_training(self.actor.core.bars_seen):
            reason = "schedule"
        if reason is None:
            return
        # Copied now: the ring buffer moves on with the next bar, before the task runs.
        times = self.actor.core.history.times().copy()
        if len(times) == 0 or not self.actor.start_task(self._train, trainer, reason, times):
            self._pending_reason = reason
            return
        self._pending_reason = None
        self.running = True
        self._idle = anyio.Event()

    async def _train(self, trainer: Trainer, reason: str, times: npt.NDArray[np.int64]) -> None:
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                await trainer.train_cycle(times, reason)
        finally:
            self._scope = None
            self.running = False
            self._idle.set()

    async def wait_idle(self) -> None:
        """Wait for the running cycle (if any) to end."""
        await self._idle.wait()

    async def strategy_replaced(self, strategy: Strategy) -> None:
        """A reload swapped the strategy: keep the trainer and champion for an ML one."""
        if not isinstance(strategy, MlStrategy) or self.actor.deps.make_trainer is None:
            if self._scope is not None:
                self._scope.cancel()  # the model is no longer traded: stop training it
            self.trainer = None
            return
        if self.trainer is None:
            self.trainer = self._trainer_for(strategy)
            assert self.trainer is not None
            champion = await anyio.to_thread.run_sync(self.trainer.restore)
        else:
            self.trainer.retarget(strategy.params)
            champion = self.trainer.champion
        self.install(champion)

    def stats(self) -> dict[str, Any] | None:
        """The trainer's figures, with the champion the strategy really trades with."""
        strategy = self.actor.strategy
        if self.trainer is None or not isinstance(strategy, MlStrategy):
            return None
        out = self.trainer.stats()
        live = strategy.champion
        out["champion"] = live.info if live is not None else None
        if out["last_error"] is None:
            out["last_error"] = strategy.last_decide_error
        return out
