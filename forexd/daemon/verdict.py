"""The verdict of a K-challenger cycle: which challenger, if any, replaces the champion.

Pure: it reads the compared outcomes (:func:`forexd.rl.compare.compare_models` over a
:class:`~forexd.rl.window_eval.WindowPlan`) and applies the one-challenger rule to the best
challenger (see :mod:`forexd.daemon.challengers`):

* the best challenger is the one with the best score among those whose evaluation ended
  ``ok`` with a finite score (lowest log loss; highest return for agents), a tie going to
  the lower seed;
* without a champion it is promoted; a champion whose own evaluation failed (timeout,
  error) is kept; one that cannot be scored on the window loses (as in the in-job rule);
  otherwise :func:`~forexd.models.promotion.promotion_decision` (log loss) or the agents'
  return gain decides, with ``promote_margin``;
* a challenger whose evaluation failed is never promoted.

Every challenger's registry row gets its own comparison: the window, its score, the
champion's, its rank and status, and why it was or was not promoted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from forexd.models.promotion import MIN_COMPARE_ROWS, Comparison, promotion_decision

if TYPE_CHECKING:
    from forexd.rl.compare import Outcome
    from forexd.rl.window_eval import WindowPlan

CHAMPION_REF = "champion"  # the champion's name among the compared models


@dataclass(frozen=True, slots=True)
class Verdict:
    """The judgement of a K-challenger cycle.

    Attributes:
        promoted: the model id to promote, or ``None`` to keep the champion.
        reason: why.
        comparisons: per challenger id, the comparison its registry row stores.
        entries: per challenger (in seed order), what the cycle's log and ``ctl status``
            show: ``model_id``, ``seed``, ``status``, ``score``, ``rank``, ``promoted``,
            ``error``.
        champion_score: the champion's score on the window (``None``: none or unscored).
        evaluation: window, score name, rows, workers, device and seconds of the judging.
    """

    promoted: str | None
    reason: str
    comparisons: dict[str, dict[str, Any]]
    entries: list[dict[str, Any]]
    champion_score: float | None
    evaluation: dict[str, Any] = field(default_factory=dict)


def entry(model_id: str | None, seed: int, status: str, **more: Any) -> dict[str, Any]:
    """One challenger as the cycle's log shows it."""
    row = {"model_id": model_id, "seed": seed, "status": status, "score": None, "rank": None}
    return row | {"promoted": False, "error": None} | more


def _fmt(plan: WindowPlan, value: float) -> str:
    return f"{value:.4f}" if plan.lower_is_better else f"{value:+.4%}"


def _rule(plan: WindowPlan, champ: float, best: float, margin: float) -> tuple[bool, str]:
    """The one-challenger rule on the best challenger's score."""
    if plan.lower_is_better:
        return promotion_decision(champ, best, margin=margin, rows=plan.rows)
    gain = best - champ  # agents: return on the account, as forexd.rl.trainer judges them
    scores = (
        f"return {best:+.4%} vs champion {champ:+.4%} over {plan.rows} bars "
        f"({plan.window_from}..): gain {gain:+.4%}"
    )
    if gain >= margin:
        return True, f"{scores} >= margin {margin:+.4%}"
    return False, f"{scores} < margin; keeping the champion"


def _score(outcome: Outcome | None) -> float | None:
    value = None if outcome is None or outcome.status != "ok" else outcome.result.get("score")
    return float(value) if value is not None and math.isfinite(value) else None


def decide(
    plan: WindowPlan,
    outcomes: Sequence[Outcome],
    challengers: Sequence[tuple[str, int]],
    champion_id: str | None,
    margin: float,
) -> Verdict:
    """The verdict (module note).

    Args:
        plan: the window every model was scored on.
        outcomes: the compared models: the challengers by id, the champion as
            :data:`CHAMPION_REF`.
        challengers: ``(model_id, seed)`` of each, in seed order.
        champion_id: the champion's id, ``None`` without one.
        margin: ``promote_margin``.
    """
    by_name = {o.name: o for o in outcomes}
    scores = {mid: _score(by_name[mid]) for mid, _ in challengers}
    sign = 1.0 if plan.lower_is_better else -1.0
    # Best first; sorted() is stable, so a tie goes to the lower seed.
    ranked = sorted((m for m, _ in challengers if scores[m] is not None),
                    key=lambda m: sign * (scores[m] or 0.0))  # fmt: skip
    best = ranked[0] if ranked else None
    champ = by_name.get(CHAMPION_REF)
    champ_score = _score(champ)
    k = len(challengers)
    if best is None:
        promote, reason = False, f"none of the {k} challengers could be scored; none promoted"
    elif champion_id is None:
        promote, reason = True, f"no champion yet; best of {k} challengers by {plan.score}"
    elif champ is None or champ.status != "ok":
        status, error = ("missing", "") if champ is None else (champ.status, f" ({champ.error})")
        promote, reason = False, f"the champion's evaluation ended {status}{error}; keeping it"
    elif champ_score is None:
        promote = True
        reason = f"the champion {champ.result.get('unscorable', 'cannot be scored')}"
    else:
        promote, reason = _rule(plan, champ_score, scores[best] or 0.0, margin)
    lower = plan.lower_is_better
    base = Comparison(
        False, "", rows=plan.rows, window_from=plan.window_from, window_to=plan.window_to,
        champion_log_loss=champ_score if lower else None, margin=margin,
        champion_accuracy=None if champ is None else champ.result.get("accuracy"),
        champion_id=champion_id,
    )  # fmt: skip
    comparisons: dict[str, dict[str, Any]] = {}
    entries = []
    for mid, seed in challengers:
        o, score = by_name[mid], scores[mid]
        rank = ranked.index(mid) + 1 if score is not None else None
        if mid == best:
            why = reason
        elif o.status != "ok":
            why = f"its evaluation ended {o.status} ({o.error}); never promoted"
        elif score is None:
            why = f"the challenger {o.result.get('unscorable', 'cannot be scored')}"
        else:
            assert best is not None
            why = (
                f"{plan.score} {_fmt(plan, score)}: not the best of {k} challengers "
                f"({best}: {_fmt(plan, scores[best] or 0.0)})"
            )
        won = promote and mid == best
        comparison = replace(
            base, promote=won, reason=why, challenger_log_loss=score if lower else None,
            challenger_accuracy=o.result.get("accuracy"),
        )  # fmt: skip
        shown = entry(mid, seed, o.status, score=score, rank=rank, promoted=won, error=o.error)
        entries.append(shown)
        comparisons[mid] = comparison.to_dict() | shown | {
            "score_name": plan.score, "champion_score": champ_score, "challengers": k,
        }  # fmt: skip
    evaluation = {"score_name": plan.score, "rows": plan.rows,
                  "window_from": plan.window_from, "window_to": plan.window_to}  # fmt: skip
    return Verdict(best if promote else None, reason, comparisons, entries, champ_score,
                   evaluation)  # fmt: skip


def too_few_rows(
    plan: WindowPlan,
    challengers: Sequence[tuple[str, int]],
    champion_id: str | None,
    margin: float,
) -> Verdict:
    """Fewer than MIN_COMPARE_ROWS bars to judge by: keep the champion; without one,
    promote the first challenger (a one-challenger cycle promotes its only one)."""
    first, first_seed = challengers[0]
    if champion_id is not None:
        promoted = None
        reason = (
            f"only {plan.rows} bars since the champion's training data (need "
            f"{MIN_COMPARE_ROWS}); keeping the champion"
        )
    else:
        promoted = first
        reason = (
            f"no champion yet; only {plan.rows} bars to rank the challengers by (need "
            f"{MIN_COMPARE_ROWS}): the first (seed {first_seed}) is promoted"
        )
    base = Comparison(False, reason, rows=plan.rows, margin=margin, champion_id=champion_id)
    entries = [entry(m, s, "not_scored", promoted=m == promoted) for m, s in challengers]
    comparisons = {
        e["model_id"]: replace(base, promote=e["promoted"]).to_dict()
        | e
        | {"score_name": plan.score, "challengers": len(challengers)}
        for e in entries
    }
    evaluation = {"score_name": plan.score, "rows": plan.rows, "workers": 0}
    return Verdict(promoted, reason, comparisons, entries, None, evaluation)
