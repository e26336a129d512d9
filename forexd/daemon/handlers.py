"""Control-socket commands of a running daemon (the protocol is in docs/control-protocol.md).

Each handler takes the request's ``args`` object and returns a JSON-ready result, or raises
:class:`~forexd.daemon.control.RequestError` with a machine-readable code. Handlers only
read snapshots or send the daemon's parts a request — to an actor, a message in its inbox
whose reply they await (an actor owns its state); they never block the loop.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Awaitable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TypeVar

from forexd import __version__
from forexd.daemon.control import RequestError
from forexd.daemon.logsetup import RING
from forexd.errors import ControlRefusedError, ForexdError

if TYPE_CHECKING:
    from forexd.actors.symbol import SymbolActor
    from forexd.daemon.supervisor import Daemon

LOGS_MAX_LINES = 1000
T = TypeVar("T")


def register_handlers(daemon: Daemon) -> Handlers:
    """Route every control command to its handler."""
    h = Handlers(daemon)
    for name in (
        "status",
        "stop",
        "ping",
        "version",
        "retrain",
        "risk",
        "risk_resume",
        "pause",
        "resume",
        "flatten",
        "reload",
        "logs",
        "adopt",  # oanda (issue 11)
        "restart",  # oanda (issue 11)
    ):
        daemon.control.register(name, getattr(h, name))
    jobs = JobHandlers(daemon)  # the training job queue (daemon/jobs.py)
    for name in ("jobs", "train", "cancel"):
        daemon.control.register(name, getattr(jobs, name))
    return h


def _symbol_arg(args: dict[str, Any], *, required: bool = True) -> str | None:
    value = args.get("symbol")
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise RequestError("bad_request", "args.symbol must be a symbol name such as EURUSD")
    return value.replace("_", "").upper()


class Handlers:
    """The command implementations, bound to one daemon."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon

    @staticmethod
    async def _ask(request: Awaitable[T]) -> T:
        """An actor's answer; its refusal becomes a ``not_running`` error."""
        try:
            return await request
        except ControlRefusedError as exc:
            raise RequestError("not_running", str(exc)) from None

    def _actor(self, symbol: str) -> SymbolActor:
        actor = self.d.actors.get(symbol)
        if actor is None:
            raise RequestError(
                "unknown_symbol",
                f"{symbol} is not traded by this daemon; "
                f"traded: {', '.join(self.d.actors) or 'none'}",
            )
        return actor

    async def ping(self, args: dict[str, Any]) -> dict[str, Any]:
        """Liveness."""
        return {"pong": True, "state": self.d.state}

    async def version(self, args: dict[str, Any]) -> dict[str, Any]:
        """Versions of forexd and Python, and the protocol."""
        from forexd.daemon.control import PROTOCOL_VERSION

        return {
            "version": __version__,
            "python": sys.version.split()[0],
            "protocol": PROTOCOL_VERSION,
        }

    async def stop(self, args: dict[str, Any]) -> dict[str, Any]:
        """Graceful shutdown."""
        self.d.request_stop("ctl stop")
        return {"stopping": True}

    async def retrain(self, args: dict[str, Any]) -> dict[str, Any]:
        """Queue a training cycle for an ML symbol now."""
        actor = self._actor(_symbol_arg(args) or "")
        if not actor.training.active:
            raise RequestError(
                "bad_request",
                f"{actor.symbol} trades {actor.strategy.name}, which has no model to retrain",
            )
        try:
            already = await actor.request_retrain("operator")
        except ControlRefusedError as exc:
            raise RequestError("not_running", str(exc)) from None
        return {"symbol": actor.symbol, "queued": True, "already_training": already}

    async def risk(self, args: dict[str, Any]) -> dict[str, Any]:
        """Limits, usage and trading states."""
        if self.d.risk.gate is None:
            raise RequestError("not_ready", "risk state is not loaded yet")
        return self.d.risk.report()

    async def risk_resume(self, args: dict[str, Any]) -> dict[str, Any]:
        """Lift halted/reducing for the account or one symbol (audited)."""
        symbol = _symbol_arg(args, required=False)
        if symbol is not None:
            self._actor(symbol)
        note = args.get("note")
        if not isinstance(note, str) or not note.strip():
            raise RequestError("bad_request", "a non-empty note is required (who and why)")
        if self.d.risk.gate is None:
            raise RequestError("not_ready", "risk state is not loaded yet")
        try:
            result: dict[str, Any] = await self.d.risk.resume(symbol, note)
        except ValueError as exc:
            raise RequestError("bad_request", str(exc)) from None
        return result

    async def pause(self, args: dict[str, Any]) -> dict[str, Any]:
        """Stop opening new trades on a symbol (bars, fills and risk keep running)."""
        actor = self._actor(_symbol_arg(args) or "")
        await self._ask(actor.set_paused(True))
        return {"symbol": actor.symbol, "paused": True, "position_units": actor.position.units}

    async def resume(self, args: dict[str, Any]) -> dict[str, Any]:
        """Let a paused symbol trade again."""
        actor = self._actor(_symbol_arg(args) or "")
        await self._ask(actor.set_paused(False))
        return {"symbol": actor.symbol, "paused": False}

    async def flatten(self, args: dict[str, Any]) -> dict[str, Any]:
        """Pause and close the position of one symbol, or of all (needs confirm=true)."""
        if args.get("confirm") is not True:
            raise RequestError(
                "confirm_required",
                "flatten closes positions; send confirm=true (`forexd ctl flatten --yes`)",
            )
        symbol = _symbol_arg(args, required=False)
        actors = [self._actor(symbol)] if symbol else list(self.d.actors.values())
        results: list[dict[str, Any]] = []
        for actor in actors:
            # -- oanda (issue 11): a drifted symbol closes the broker's position
            guard = self.d.guard
            if guard is not None and actor.symbol in guard.drift:
                try:
                    await guard.adopt(actor.symbol)
                except ForexdError as exc:
                    raise RequestError("broker_unavailable", str(exc)) from None
            # -- end oanda
            if symbol:
                results.append(await self._ask(actor.flatten()))
                continue
            try:
                results.append(await actor.flatten())
            except ControlRefusedError as exc:  # a parked actor must not stop the others
                results.append({"symbol": actor.symbol, "units": 0, "client_id": None,
                                "error": str(exc)})  # fmt: skip
        return {"flattened": results}

    # -- oanda (issue 11) ---------------------------------------------------------------

    async def adopt(self, args: dict[str, Any]) -> dict[str, Any]:
        """Take the broker's position of a symbol as the daemon's (lifts a drift halt)."""
        actor = self._actor(_symbol_arg(args) or "")
        if self.d.guard is None:
            raise RequestError("bad_request", "adopt needs a live broker (broker.kind = oanda)")
        try:
            result: dict[str, Any] = await self.d.guard.adopt(actor.symbol)
        except ForexdError as exc:
            raise RequestError("broker_unavailable", str(exc)) from None
        return result

    async def restart(self, args: dict[str, Any]) -> dict[str, Any]:
        """Start a parked (failed or stopped) symbol's actor again."""
        actor = self._actor(_symbol_arg(args) or "")
        if actor.state not in ("failed", "stopped", "finished"):
            raise RequestError(
                "not_parked", f"{actor.symbol} is {actor.state}; only a parked symbol restarts"
            )
        sym = next(s for s in self.d.settings.active_symbols if s.symbol == actor.symbol)
        new = await self.d.start_actor(sym)
        if actor.paused:  # an operator's pause survives the restart (through the inbox)
            await self._ask(new.set_paused(True))
        return {"symbol": new.symbol, "state": new.state, "was": actor.state}

    # -- end oanda

    async def reload(self, args: dict[str, Any]) -> dict[str, Any]:
        """Re-read the config file and apply it (the old one stays if the new is bad)."""
        try:
            return await self.d.reload("ctl")
        except ForexdError as exc:
            raise RequestError("reload_rejected", str(exc)) from None
        except Exception as exc:  # logged in full by Daemon.reload; the daemon carries on
            raise RequestError(
                "reload_failed", f"reload failed ({type(exc).__name__}: {exc}); see the log"
            ) from None

    async def logs(self, args: dict[str, Any]) -> dict[str, Any]:
        """Recent log lines from the in-memory ring (``since`` for follow mode)."""
        since = args.get("since", 0)
        limit = args.get("limit", 200)
        if not isinstance(since, int) or not isinstance(limit, int) or limit < 1:
            raise RequestError("bad_request", "since and limit must be integers (limit >= 1)")
        symbol = _symbol_arg(args, required=False)
        last, lines = RING.since(since, symbol, min(limit, LOGS_MAX_LINES))
        return {"last": last, "lines": lines}

    async def status(self, args: dict[str, Any]) -> dict[str, Any]:
        """The whole status object (see docs/control-protocol.md)."""
        d = self.d
        if d.broker is None:
            raise RequestError("not_ready", "daemon is still starting")
        acct = await d.broker.account()
        threads = d.threads.sample()
        lag = d.lag.stats()
        risk: dict[str, Any] = {}
        if d.risk.gate is not None:
            stats = d.risk.report()["stats"]
            risk = {
                k: stats[k]
                for k in (
                    "account_state",
                    "account_cause",
                    "symbol_states",
                    "denials",
                    "approvals",
                    "clipped",
                )
            }
            risk["state_changes"] = [
                {"scope": scope, "state": state, "cause": cause, "count": n}
                for (scope, state, cause), n in d.risk.state_changes.items()
            ]
        return {
            "version": __version__,
            "pid": os.getpid(),
            "uptime_s": round(time.time() - d.started_at, 3),
            "state": d.guard.daemon_state(d.state) if d.guard is not None else d.state,
            "data_dir": str(d.paths.data_dir),
            "broker": getattr(d.broker, "name", "?"),
            "budget": d.budget.to_dict(),
            "compute": asdict(d.pool.stats()),
            "threads": {"now": threads.now, "peak": threads.peak},
            "rss_mb": round(d.process.memory_info().rss / 2**20, 1),
            "torch_imported": "torch" in sys.modules,
            "gil_switch_interval_s": sys.getswitchinterval(),  # runner sets 1 ms
            "loop_lag_ms": {"p50": lag.p50, "p99": lag.p99, "max": lag.max, "samples": lag.samples},
            "storage": asdict(d.writer.stats()),
            "control": {"requests": d.control.requests, "bad_requests": d.control.bad_requests},
            "symbols": [asdict(a.stats()) for a in d.actors.values()],
            "broker_link": d.guard.status() if d.guard is not None else None,  # oanda
            "risk": risk,
            "account": {
                "balance": round(acct.balance, 2),
                "equity": round(acct.equity, 2),
                "unrealized_pnl": round(acct.unrealized_pnl, 2),
            },
        }


class JobHandlers:
    """``ctl jobs``, ``ctl train SYMBOL [--lookback-candles N]``, ``ctl cancel JOB``."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon

    async def jobs(self, args: dict[str, Any]) -> dict[str, Any]:
        """Every training job known: queued, running (with progress) and recent ones."""
        return {"jobs": self.d.jobs.list()}

    async def train(self, args: dict[str, Any]) -> dict[str, Any]:
        """Queue a training job for an ML symbol (optionally on a different lookback)."""
        symbol = _symbol_arg(args) or ""
        lookback = args.get("lookback_candles")
        if lookback is not None and (not isinstance(lookback, int) or lookback < 1):
            raise RequestError("bad_request", "args.lookback_candles must be an integer >= 1")
        actor = Handlers(self.d)._actor(symbol)
        trainer = actor.training.trainer
        if trainer is None:
            raise RequestError(
                "bad_request",
                f"{actor.symbol} trades {actor.strategy.name}, which has no model to train",
            )
        timeout = float(trainer.params.train_timeout_s)
        job = self.d.jobs.submit(actor.symbol, "operator", timeout_s=timeout, lookback=lookback)
        try:  # through the actor's inbox: the actor starts the cycle, which adopts the job
            await actor.request_retrain("operator")
        except ControlRefusedError as exc:
            self.d.jobs.cancel(job.id)
            raise RequestError("not_running", str(exc)) from None
        return {"job": job.to_dict()}

    async def cancel(self, args: dict[str, Any]) -> dict[str, Any]:
        """Cancel a queued or running job; the champion is left as it was."""
        job_id = args.get("job")
        if not isinstance(job_id, str) or not job_id:
            raise RequestError("bad_request", "args.job must be a job id (see: ctl jobs)")
        try:
            job = self.d.jobs.cancel(job_id)
        except ForexdError as exc:
            raise RequestError("bad_request", str(exc)) from None
        return {"job": job.to_dict()}
