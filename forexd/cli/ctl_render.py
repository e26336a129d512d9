"""``forexd ctl`` for people: the status table, the risk report and one sentence per action."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from forexd.cli.output import money
from forexd.cli.tables import Col, compact_time, fit_table

Render = Callable[[Any], None]

STATUS_COLUMNS = (
    Col("symbol", "left"),
    Col("state", "left"),
    Col("risk", "left", keep=7),
    Col("last bar (UTC)", "left", keep=5),
    Col("bars", keep=2),
    Col("position"),
    Col("stop / target", keep=2),
    Col("realized", keep=6),
    Col("unrealized", keep=3),
    Col("orders", keep=4),
    Col("restarts", keep=1),
)

JOB_COLUMNS = (
    Col("job", "left"),
    Col("symbol", "left"),
    Col("kind", "left", keep=3),
    Col("state", "left"),
    Col("progress", keep=5),
    Col("phase", "left", keep=4),
    Col("backend", "left", keep=1),
    Col("started (UTC)", "left", keep=2),
    Col("error", "left", keep=6),
)


def print_status(status: dict[str, Any], console: Any) -> None:
    """Print the status object as a summary, a per-symbol table (fitted) and notes."""
    b, lag, acct = status["budget"], status["loop_lag_ms"], status["account"]
    say = console.print
    say(
        f"[bold]forexd {status['version']}[/] pid {status['pid']} · {status['state']} · "
        f"up {status['uptime_s']:.0f} s · broker {status['broker']}"
    )
    say(
        f"budget: {b['usable_cpus']} CPUs usable, {b['cpu_slots']} slots = "
        f"{b['train_workers']} workers × {b['blas_threads']} BLAS threads, "
        f"{b['max_concurrent_symbols']} symbol(s) in the heavy phase"
    )
    say(
        f"threads {status['threads']['now']} (peak {status['threads']['peak']}) · "
        f"RSS {status['rss_mb']} MB · loop lag p50 {lag['p50']} ms, p99 {lag['p99']} ms, "
        f"max {lag['max']} ms"
    )
    say(f"account: balance {money(acct['balance'])} · equity {money(acct['equity'])} USD")
    risk = status.get("risk") or {}
    if risk:
        say(_risk_line(risk))
    symbol_states = risk.get("symbol_states") or {}
    rows = [
        [
            s["symbol"],
            s["state"],
            str(symbol_states.get(s["symbol"], "active")) if risk else "-",
            compact_time(s["last_bar_time"]),
            str(s["bars_seen"]),
            str(s["position_units"]),
            _stops(s.get("protection")),
            money(s["realized_pnl"]),
            money(s["unrealized_pnl"]),
            str(s["orders_sent"]),
            str(s["restarts"]),
        ]
        for s in status["symbols"]
    ]
    console.print(fit_table(STATUS_COLUMNS, rows, width=console.width))
    for s in status["symbols"]:
        if s["last_error"]:
            console.print(f"[red]{s['symbol']} last error:[/] {s['last_error']}", markup=True)
        _print_training(console, s["symbol"], s.get("training"))


def _stops(p: dict[str, Any] | None) -> str:
    """``1.09820 / 1.10310`` (``~`` marks a trailing stop, ``-`` no target or no stop)."""
    if not p:
        return "-"
    mark = "~" if p.get("stop_kind") == "trailing" else ""
    tp = p.get("take_profit")
    return f"{mark}{p['stop']} / {'-' if tp is None else tp}"


def _risk_line(risk: dict[str, Any]) -> str:
    cause = risk.get("account_cause")
    state = risk.get("account_state", "?")
    why = f" ({cause})" if cause and cause != "none" else ""
    denials = risk.get("denials") or {}
    denied = ", ".join(f"{k} {v}" for k, v in sorted(denials.items())) or "none"
    return (
        f"risk: account {state}{why} · approved {risk.get('approvals', 0)} "
        f"(clipped {risk.get('clipped', 0)}) · denied {denied}"
    )


def _print_training(console: Any, symbol: str, training: dict[str, Any] | None) -> None:
    """One line per ML symbol: champion, training state, last cycle."""
    if not training:
        return
    champ = training.get("champion") or {}
    last = training.get("last_cycle") or {}
    console.print(
        f"{symbol} model: {champ.get('model_id', 'no champion yet')}"
        f" ({champ.get('kind', training.get('model', '?'))}, trained "
        f"{champ.get('trained_at', '-')}) · training {training.get('state')} · "
        f"cycles {training.get('cycles', 0)} · last cycle {last.get('duration_s', '-')} s, "
        f"RSS {last.get('rss_before_cleanup_mb', '-')}→{last.get('rss_after_cleanup_mb', '-')} MB",
        markup=False,
    )
    if training.get("last_error"):
        console.print(f"[red]{symbol} training error:[/] {training['last_error']}")


# --------------------------------------------------------------------------- one-liners


def _sentence(action: str, r: dict[str, Any]) -> str:
    if action == "stop":
        return "forexd is stopping: open work is saved, then it exits (ctl ping fails once gone)"
    if action == "ping":
        return f"forexd is alive ({r.get('state', '?')})"
    if action == "version":
        from forexd import __version__

        return (
            f"daemon forexd {r['version']} (Python {r['python']}, control protocol "
            f"{r['protocol']}); this client forexd {__version__}"
        )
    if action == "pause":
        units = r.get("position_units", 0)
        keep = (
            f"; its position of {units} units stays open "
            f"(close it: forexd ctl flatten {r['symbol']} --yes)"
            if units
            else ""
        )
        return f"{r['symbol']} paused: no new trades{keep}"
    if action == "resume":
        return f"{r['symbol']} trades again"
    if action == "retrain":
        if r.get("already_training"):
            return f"{r['symbol']} is training already; another cycle is queued after it"
        return f"{r['symbol']}: a training cycle is queued"
    if action == "train":
        j = r["job"]
        lookback = j.get("lookback_candles")
        on = f" on the latest {lookback} candles" if lookback else ""
        return (
            f"job {j['id']} queued: {j['symbol']} trains{on} on its next cycle "
            f"(follow it: forexd ctl jobs; stop it: forexd ctl cancel {j['id']})"
        )
    if action == "cancel":
        j = r["job"]
        return f"job {j['id']} ({j['symbol']}) cancelled; the champion stays as it was"
    if action == "adopt":
        return (
            f"{r['symbol']}: adopted the broker's position of {r['broker_units']} units "
            f"(the daemon had {r['daemon_units_before']}); it trades again"
        )
    if action == "restart":
        return f"{r['symbol']} restarted (was {r['was']}, now {r['state']})"
    if action == "reload":
        changed = [
            f"{k.replace('_', ' ')}: {', '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in r.items()
            if v not in (None, [], {}, False)
        ]
        return "config reloaded" + (f" ({'; '.join(changed)})" if changed else ", nothing changed")
    return ", ".join(f"{k} {v}" for k, v in r.items())


def _flatten_lines(r: dict[str, Any]) -> list[str]:
    lines = []
    for f in r.get("flattened", []):
        if f.get("client_id"):
            lines.append(
                f"{f['symbol']} paused; closing order {f['client_id']} for {f['units']} units sent"
            )
        else:
            lines.append(f"{f['symbol']} paused; it held no position, nothing to close")
    return lines or ["no symbols to flatten"]


def renderer(action: str, result: dict[str, Any]) -> Render:
    """How ``ctl ACTION``'s answer is drawn for people."""
    if action == "status":
        return lambda console: print_status(result, console)
    if action == "jobs":
        return lambda console: print_jobs(result["jobs"], console)
    lines = _flatten_lines(result) if action == "flatten" else [_sentence(action, result)]

    def draw(console: Any) -> None:
        for line in lines:
            console.print(line, markup=False, soft_wrap=True)

    return draw


def print_jobs(jobs: list[dict[str, Any]], console: Any) -> None:
    """``ctl jobs``: one row per training job, oldest first (``--json`` has every field)."""
    if not jobs:
        console.print("no training jobs yet (ctl train SYMBOL queues one)", markup=False)
        return
    rows = [
        [
            j["id"],
            j["symbol"],
            j["kind"],
            j["state"] + (f" ({j['outcome']})" if j.get("outcome") else ""),
            f"{j['progress']:.0%}",
            j["phase"] or "-",
            f"{j['backend']}@{j['node']}",
            _epoch(j["started_at"]),
            j["error"] or "",
        ]
        for j in jobs
    ]
    console.print(fit_table(JOB_COLUMNS, rows, width=console.width))


def _epoch(ts: float | None) -> str:
    """Epoch seconds as UTC, stdlib only (ctl stays light: no numpy through forexd.domain)."""
    import datetime as dt

    if ts is None:
        return "-"
    when = dt.datetime.fromtimestamp(ts, dt.timezone.utc)
    return compact_time(when.strftime("%Y-%m-%dT%H:%M:%SZ"))


def risk_report(report: dict[str, Any]) -> Render:
    """``ctl risk``: states, limits and usage, the last days' P&L and audit records."""
    return lambda console: print_risk(report["stats"], report, console)


def print_risk(stats: dict[str, Any], report: dict[str, Any], console: Any) -> None:
    """Draw a risk report (from the daemon, or built offline from the state file)."""
    from rich.table import Table

    say = console.print
    say(f"risk state of account {report.get('account_id', '?')} ({report.get('file', '')})")
    say(_risk_line(stats), markup=False)
    symbols = stats.get("symbol_states") or {}
    if symbols:
        say("symbols: " + ", ".join(f"{s} {v}" for s, v in sorted(symbols.items())))
    say(
        f"equity: last {money(stats.get('last_equity'))} · peak {money(stats.get('equity_peak'))}"
        f" · day start {money(stats.get('day_start_equity'))} ({stats.get('fx_day') or '-'}) USD"
    )
    limits = report.get("limits") or {}
    if limits:
        say("limits: " + ", ".join(f"{k} {_plain(v)}" for k, v in limits.items()), markup=False)
    days = report.get("realized_pnl_by_day") or {}
    if days:
        say("realized P&L by FX day: " + ", ".join(f"{d} {money(v)}" for d, v in days.items()))
    audit = report.get("audit") or []
    if audit:
        table = Table(title="recent state changes (audit)")
        for name in ("when", "scope", "change", "by", "note"):
            table.add_column(name, no_wrap=name != "note")
        for a in audit[-10:]:
            table.add_row(
                _iso(a["ts_ns"]),
                a["scope"],
                f"{a['old_state']}→{a['new_state']}",
                a["actor"],
                a["note"],
            )
        console.print(table)


def risk_resumed(record: dict[str, Any]) -> Render:
    """``ctl risk resume``: the audit record, as a sentence."""
    text = (
        f"{record['scope']}: {record['old_state']} → {record['new_state']} "
        f"(audited as {record['actor']}: {record['note']})"
    )
    return lambda console: console.print(text, markup=False)


def _plain(value: Any) -> str:
    """``2,000,000`` rather than ``2e+06``; fractions as they are (``0.2``)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return f"{int(value):,}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _iso(ts_ns: int) -> str:
    from forexd.domain import ns_to_iso

    return ns_to_iso(ts_ns)
