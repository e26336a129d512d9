"""The monitoring examples (alert rules, Grafana dashboard) match the metrics forexd exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from forexd.daemon.looplag import LoopLagMonitor
from forexd.daemon.metrics import MetricsState, build_registry

pytest.importorskip("prometheus_client")

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "examples" / "prometheus" / "forexd-alerts.yml"
RULE_TESTS = REPO / "examples" / "prometheus" / "forexd-alerts.test.yml"
DASHBOARD = REPO / "examples" / "grafana" / "forexd-dashboard.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian/Ubuntu: apt-get install prometheus)"
)
METRIC = re.compile(r"\b((?:forexd|process)_[a-z_]+)")
# Names Prometheus derives from a family (histogram series, info, counters).
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_info", "_created")


def _full_status() -> dict[str, Any]:
    """A status snapshot with every optional part present (training, risk, storage)."""
    return {
        "threads": {"now": 5},
        "account": {"equity": 100_000.0, "balance": 99_000.0},
        "symbols": [
            {
                "symbol": "EURUSD",
                "state": "running",
                "bars_seen": 10,
                "orders_sent": 2,
                "orders_rejected": 0,
                "fills": 2,
                "restarts": 0,
                "position_units": 1000,
                "last_bar_time": "2017-01-02T10:00:00Z",
                "training": {
                    "cycles": 1,
                    "last_cycle": {"duration_s": 3.5},
                    "champion": {"trained_at": "2017-01-02T09:00:00Z"},
                },
            }
        ],
        "risk": {
            "account_state": "active",
            "symbol_states": {"EURUSD": "reducing"},
            "denials": {"reducing_only": 1},
            "state_changes": [
                {"scope": "EURUSD", "state": "reducing", "cause": "operator", "count": 1}
            ],
        },
        "storage": {"statements": 9, "transactions": 3, "queued": 0, "errors": 0},
    }


def _exported() -> set[str]:
    """Every family and sample name the daemon's registry exports for a full snapshot."""
    state = MetricsState(started_at=0.0)
    state.update(_full_status(), LoopLagMonitor().histogram(), now=1.0)
    names: set[str] = set()
    for family in build_registry(state).collect():
        names.add(family.name)
        names.update(s.name for s in family.samples)
    return names


def _base(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _rules() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    doc: dict[str, Any] = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return doc


def test_alert_rules_parse_and_cover_the_on_call_cases() -> None:
    """The rules file is YAML with an alert for each case on-call must hear about."""
    alerts = {r["alert"]: r for g in _rules()["groups"] for r in g["rules"]}
    for name in (
        "ForexdActorFailed",
        "ForexdRiskHalted",
        "ForexdLoopLagHigh",
        "ForexdFeedStale",
        "ForexdPositionDrift",
        "ForexdBrokerDown",
    ):
        assert {"expr", "labels", "annotations"} <= set(alerts[name])


def test_alert_rules_and_dashboard_only_use_exported_metrics() -> None:
    """Every forexd_/process_ metric the examples query is one the daemon exports."""
    exported = _exported()
    rules = [r["expr"] for g in _rules()["groups"] for r in g["rules"]]
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for text in [*rules, *queries] for m in METRIC.findall(text)}
    assert used, "no metric found in the examples"
    assert set() == used - exported


def test_every_exported_metric_is_documented() -> None:
    """docs/service.md names each forexd_ metric family the daemon exports."""
    docs = (REPO / "docs" / "service.md").read_text(encoding="utf-8")
    families = {_base(n) for n in _exported() if n.startswith("forexd_")}
    missing = {f for f in families if not re.search(rf"`{f}(_[a-z]+)?`", docs)}
    assert set() == missing


@needs_promtool
def test_promtool_accepts_the_alert_rules() -> None:
    """`promtool check rules` accepts the shipped rules file."""
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(RULES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert 0 == result.returncode, result.stdout + result.stderr


@needs_promtool
def test_alerts_fire_on_the_series_that_should_trigger_them() -> None:
    """`promtool test rules`: each alert fires on its input series, at the right time."""
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "test", "rules", RULE_TESTS.name],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=RULE_TESTS.parent,
    )
    assert 0 == result.returncode, result.stdout + result.stderr
