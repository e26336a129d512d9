"""The K-challenger verdict: the best challenger against the champion by the usual rule."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from forexd.daemon.verdict import CHAMPION_REF, decide, too_few_rows
from forexd.rl.compare import Outcome
from forexd.rl.window_eval import ScoreName, WindowPlan

IDS = [("a", 0), ("b", 1), ("c", 2)]


def _plan(score: ScoreName = "log_loss", rows: int = 50) -> WindowPlan:
    labels = np.zeros(100) if score == "log_loss" else None
    return WindowPlan(score, 40, 90, rows, 0, 38, labels, 0.55, "2017-03-01", "2017-03-03")


def _ok(name: str, score: float | None, **more: Any) -> Outcome:
    return Outcome(name, "ok", 1.0, {"score": score, **more})


def _failed(name: str, status: str) -> Outcome:
    return Outcome(name, status, 15.0, error=f"evaluation {status}")


def test_lowest_log_loss_is_promoted_when_it_beats_the_champion_by_the_margin() -> None:
    """The best challenger's gain over the champion is compared with promote_margin."""
    outcomes = [_ok("a", 0.95), _ok("b", 0.90), _ok("c", 0.99), _ok(CHAMPION_REF, 1.0)]
    verdict = decide(_plan(), outcomes, IDS, "champ", margin=0.05)
    assert "b" == verdict.promoted
    assert [2, 1, 3] == [e["rank"] for e in verdict.entries]
    assert [False, True, False] == [e["promoted"] for e in verdict.entries]
    assert verdict.comparisons["b"]["promote"] and not verdict.comparisons["a"]["promote"]
    assert 1.0 == verdict.comparisons["a"]["champion_log_loss"]
    kept = decide(_plan(), outcomes, IDS, "champ", margin=0.2)
    assert kept.promoted is None
    assert "keeping the champion" in kept.reason


def test_agents_are_judged_by_the_highest_return() -> None:
    """For agents a higher return is better; the gain is a fraction of the account."""
    outcomes = [_ok("a", 0.01), _ok("b", 0.03), _ok("c", -0.02), _ok(CHAMPION_REF, 0.02)]
    verdict = decide(_plan("return"), outcomes, IDS, "champ", margin=0.005)
    assert "b" == verdict.promoted
    assert "return +3.0000% vs champion +2.0000%" in verdict.reason
    assert verdict.comparisons["b"]["challenger_log_loss"] is None
    assert decide(_plan("return"), outcomes, IDS, "champ", margin=0.02).promoted is None


def test_a_failed_challenger_is_never_promoted_and_the_others_are_judged() -> None:
    """Timeout and error are reported, unranked; the best of the rest wins."""
    outcomes = [_failed("a", "timeout"), _ok("b", 0.97), _failed("c", "error"),
                _ok(CHAMPION_REF, 1.0)]  # fmt: skip
    verdict = decide(_plan(), outcomes, IDS, "champ", margin=0.0)
    assert "b" == verdict.promoted
    assert ["timeout", "ok", "error"] == [e["status"] for e in verdict.entries]
    assert [None, 1, None] == [e["rank"] for e in verdict.entries]
    assert "never promoted" in verdict.comparisons["a"]["reason"]
    none_left = [_failed("a", "timeout"), _failed("b", "timeout"), _failed("c", "error")]
    assert decide(_plan(), none_left, IDS, None, margin=0.0).promoted is None


def test_a_champion_whose_evaluation_failed_is_kept() -> None:
    """Nothing showed the champion worse: its timeout keeps it."""
    outcomes = [_ok("a", 0.5), _ok("b", 0.6), _ok("c", 0.7), _failed(CHAMPION_REF, "timeout")]
    verdict = decide(_plan(), outcomes, IDS, "champ", margin=0.0)
    assert verdict.promoted is None
    assert "champion's evaluation ended timeout" in verdict.reason


def test_a_champion_that_cannot_be_scored_loses_and_no_champion_means_the_best_wins() -> None:
    """As in the one-challenger rule: unscorable champion or none, the best is promoted."""
    unscorable = _ok(CHAMPION_REF, None, unscorable="it cannot be scored on the window")
    outcomes = [_ok("a", 0.8), _ok("b", 0.8), _ok("c", 0.9), unscorable]
    assert "a" == decide(_plan(), outcomes, IDS, "champ", margin=0.0).promoted  # tie: seed 0
    first = decide(_plan(), outcomes[:3], IDS, None, margin=0.0)
    assert "a" == first.promoted
    assert "no champion yet" in first.reason


@pytest.mark.parametrize("champion", ["champ", None])
def test_too_few_rows_keep_the_champion_or_promote_the_first(champion: str | None) -> None:
    """A window under MIN_COMPARE_ROWS scores nothing."""
    verdict = too_few_rows(_plan(rows=3), IDS, champion, margin=0.0)
    assert (None if champion else "a") == verdict.promoted
    assert {"not_scored"} == {e["status"] for e in verdict.entries}
    assert 0 == verdict.evaluation["workers"]
