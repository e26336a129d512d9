"""RL agents and the bar simulator they train and are compared in.

:mod:`forexd.rl.sim` drives the backtest's own objects (the symbol core with its order gate
and sizer, the ledger with its costs) one bar at a time, so an agent's reward, and every
model's score in ``forexd models compare``, is the P&L the backtest would book. That makes
this package a consumer of ``actors`` and ``brokers``, which the pure ``models`` layer may
not import: the pure parts of an agent (its policy, artifact format and live runner) stay in
``forexd.models.rl_ppo`` / ``forexd.models.rl_live``; training (:mod:`forexd.rl.fit`,
:mod:`forexd.rl.trainer`) and comparison (:mod:`forexd.rl.compare`) live here.

Modules:
    sim: the bar-by-bar simulation over the backtest's objects.
    env: the gymnasium environment around it (imports gymnasium at import time).
    fit: one agent's training.
    trainer: a walk-forward training cycle of an RL kind, and :func:`train_cycle`, which
        picks the supervised or the RL cycle for a config.
    compare: N models ranked in parallel spawned workers, deadlock-free.
"""
