"""Champion or challenger: which model trades a symbol after a training cycle.

The score is the **out-of-sample log loss** on the latest window (lower is better): log loss
is a proper scoring rule that uses every labelled bar, so it is far less noisy than a Sharpe
ratio over a few hundred bars, and it does not depend on the entry threshold. The latest
out-of-sample window is the labelled bars *after the champion's training data* (purged by
the label horizon, so none of its training labels overlap them), capped to one walk-forward
test fold. On that window both sides are scored out of sample:

* the champion as it is (its own feature spec, the current label definition);
* the challenger's pipeline refitted on the bars before the window (minus the same purge),
  i.e. with the same information cut-off as the champion. Scoring the final challenger on
  those bars instead would let it grade bars it was trained on.

The challenger replaces the champion when ``champion_loss - challenger_loss >=
promote_margin``. With the default margin 0 a tie goes to the challenger, because in steady
state (same pipeline, same cut-off) the two are nearly the same model and the challenger has
seen fresher data; a positive margin makes the champion sticky, a negative one tolerates a
slightly worse score. Fewer than :data:`MIN_COMPARE_ROWS` labelled bars since the champion's
data keeps the champion (nothing new to judge by). No champion: the challenger wins.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from forexd.domain import ns_to_iso
from forexd.domain.bars import FloatArray, IntArray
from forexd.features import FeatureSpec, compute_features
from forexd.models.errors import ArtifactError
from forexd.models.fit import fit_model
from forexd.models.metrics import accuracy, log_loss
from forexd.models.trainconfig import Candles, TrainConfig, training_rows
from forexd.models.trained import TrainedModel

MIN_COMPARE_ROWS = 10
"""Fewest labelled bars since the champion's data for a comparison (guessed: below this a
log loss difference is noise; the champion is kept)."""


@dataclass(frozen=True, slots=True)
class Champion:
    """A loaded model with what trading and comparing it needs.

    Attributes:
        model: the trained classifier.
        features: the feature spec it was trained on (from its artifact).
        data_to_ts: open time of its last labelled training row.
        model_id: registry id (empty offline).
    """

    model: TrainedModel
    features: FeatureSpec
    data_to_ts: int
    model_id: str = ""

    @property
    def history_bars(self) -> int:
        """Bars of history one prediction reads."""
        return self.features.history_bars + self.model.context_rows

    @classmethod
    def from_model(cls, model: TrainedModel, model_id: str = "") -> Champion:
        """Rebuild from a loaded artifact's metadata (see :func:`model_metadata`).

        Raises:
            ArtifactError: the metadata lacks the feature spec or the data range.
        """
        meta = model.metadata
        try:
            features = FeatureSpec(**meta["features"])
            data_to_ts = int(meta["data_to_ts"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(
                f"model {model_id or model.spec.kind}: its metadata has no usable feature spec "
                f"or data range ({type(exc).__name__}: {exc}); retrain it"
            ) from None
        if features.names != (model.feature_names or features.names):
            raise ArtifactError(
                f"model {model_id}: its feature names do not match its feature spec; retrain it"
            )
        return cls(model, features, data_to_ts, model_id or str(meta.get("model_id", "")))


@dataclass(frozen=True, slots=True)
class Comparison:
    """The champion/challenger verdict and the figures behind it."""

    promote: bool
    reason: str
    rows: int = 0
    window_from: str | None = None
    window_to: str | None = None
    champion_log_loss: float | None = None
    challenger_log_loss: float | None = None
    champion_accuracy: float | None = None
    challenger_accuracy: float | None = None
    margin: float = 0.0
    champion_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {
            "promote": self.promote,
            "reason": self.reason,
            "rows": self.rows,
            "window_from": self.window_from,
            "window_to": self.window_to,
            "champion_log_loss": self.champion_log_loss,
            "challenger_log_loss": self.challenger_log_loss,
            "champion_accuracy": self.champion_accuracy,
            "challenger_accuracy": self.challenger_accuracy,
            "margin": self.margin,
            "champion_id": self.champion_id,
        }


def _too_few_rows(rows: int, min_rows: int) -> str:
    return (
        f"only {rows} labelled bars since the champion's training data (need {min_rows}); "
        "keeping the champion"
    )


def promotion_decision(
    champion_loss: float | None,
    challenger_loss: float,
    *,
    margin: float,
    rows: int,
    min_rows: int = MIN_COMPARE_ROWS,
) -> tuple[bool, str]:
    """Whether the challenger replaces the champion, and why (see the module note).

    Args:
        champion_loss: the champion's log loss on the window; ``None``: no champion.
        challenger_loss: the challenger's out-of-sample log loss on the same window.
        margin: how much lower the challenger's loss must be (``promote_margin``).
        rows: labelled bars in the window.
        min_rows: fewest bars to judge by.
    """
    if champion_loss is None:
        return True, "no champion yet"
    if rows < min_rows:
        return False, _too_few_rows(rows, min_rows)
    if not np.isfinite(challenger_loss):
        return False, "the challenger's log loss is not finite; keeping the champion"
    if not np.isfinite(champion_loss):
        return True, "the champion's log loss is not finite"
    gain = champion_loss - challenger_loss
    scores = (
        f"log loss {challenger_loss:.4f} vs champion {champion_loss:.4f} over {rows} bars: "
        f"gain {gain:+.4f}"
    )
    if gain >= margin:
        return True, f"{scores} >= margin {margin:+.4f}"
    return False, f"{scores} < margin {margin:+.4f}; keeping the champion"


def window_start(
    config: TrainConfig,
    ts: IntArray,
    champion_to_ts: int | None,
    *,
    first: int,
    end: int,
    test_rows: int,
) -> int:
    """First row of the latest out-of-sample window (see the module note).

    The window ends at ``end`` and holds at most ``test_rows`` rows from the first complete
    feature row ``first``; with a champion (``champion_to_ts``: its last training row's
    time) it starts after that row plus the label purge. Without one it is the last
    ``test_rows`` rows (the K-challenger cycle ranks its challengers there).
    """
    start = max(end - test_rows, first)
    if champion_to_ts is not None:
        last_seen = int(np.searchsorted(ts, champion_to_ts, side="right")) - 1
        start = max(start, last_seen + 1 + config.label.horizon)
    return start


def refit_rows(config: TrainConfig, start: int, first: int, train_rows: int) -> tuple[int, int]:
    """Rows ``[a, b)`` a challenger is refitted on to be scored on a window from ``start``:
    as many rows as the final model (``train_rows``), ending before the window minus the
    label purge and the embargo (the champion's information cut-off)."""
    cut = start - config.label.horizon - config.walk_forward.embargo_bars
    return training_rows(config, cut, first, train_rows)


def predict_window(model: TrainedModel, x: FloatArray, start: int, end: int) -> FloatArray | None:
    """Probabilities for rows ``start..end`` (with the model's context), or ``None`` if the
    feature rows it needs are not all finite (its warm-up reaches into the window)."""
    ctx = model.context_rows
    rows = x[max(0, start - ctx) : end]
    if len(rows) < end - start + ctx or not np.isfinite(rows).all():
        return None
    proba: FloatArray = model.predict_proba(rows)[-(end - start) :]
    return proba


def compare_with_champion(
    champion: Champion | None,
    config: TrainConfig,
    data: Candles,
    x: FloatArray,
    y: FloatArray,
    *,
    first: int,
    end: int,
    train_rows: int,
    test_rows: int,
    n_jobs: int,
    device: str = "cpu",
) -> Comparison:
    """Score champion and challenger on the latest out-of-sample window (module note).

    Args:
        champion: the model trading now, or ``None``.
        config: the challenger's configuration.
        data: the cycle's candles.
        x: the challenger's features over ``data``.
        y: labels over ``data`` (current definition).
        first: first complete feature row.
        end: one past the last labelled row.
        train_rows: rows the final challenger trains on (the refit uses as many).
        test_rows: the window's cap (one walk-forward test fold).
        n_jobs: threads for the refit.
        device: torch models' device.
    """
    margin = config.promote_margin
    if champion is None:
        return Comparison(True, "no champion yet", margin=margin)
    start = window_start(
        config, data.ts, champion.data_to_ts, first=first, end=end, test_rows=test_rows
    )
    known = np.isfinite(y[start:end]) if start < end else np.zeros(0, dtype=bool)
    rows = int(np.count_nonzero(known))
    verdict = Comparison(False, "", rows=rows, margin=margin, champion_id=champion.model_id)
    if rows < MIN_COMPARE_ROWS:
        return replace(verdict, reason=_too_few_rows(rows, MIN_COMPARE_ROWS))
    verdict = replace(
        verdict,
        window_from=ns_to_iso(int(data.ts[start])),
        window_to=ns_to_iso(int(data.ts[end - 1])),
    )

    a, b = refit_rows(config, start, first, train_rows)
    refit = fit_model(config.model, x[a:b], y[a:b], n_jobs=n_jobs, seed=config.seed, device=device)
    chall_proba = predict_window(refit, x, start, end)
    if chall_proba is None:  # the walk-forward validated these rows; kept for clarity
        return replace(verdict, reason="the challenger cannot predict the window")
    y_known = y[start:end][known]
    chall_loss = log_loss(y_known, chall_proba[known], refit.classes)
    verdict = replace(
        verdict,
        challenger_log_loss=chall_loss,
        challenger_accuracy=accuracy(y_known, chall_proba[known], refit.classes),
    )

    champ_x = compute_features(
        data.open, data.high, data.low, data.close, data.ts, champion.features
    ).matrix
    champ_proba = predict_window(champion.model, champ_x, start, end)
    if champ_proba is None:
        return replace(
            verdict,
            promote=True,
            reason=f"the champion cannot be scored: it needs {champion.history_bars} bars of "
            "history before the window",
        )
    champ_loss = log_loss(y_known, champ_proba[known], champion.model.classes)
    promote, reason = promotion_decision(champ_loss, chall_loss, margin=margin, rows=rows)
    return replace(
        verdict,
        promote=promote,
        reason=reason,
        champion_log_loss=champ_loss,
        champion_accuracy=accuracy(y_known, champ_proba[known], champion.model.classes),
    )
