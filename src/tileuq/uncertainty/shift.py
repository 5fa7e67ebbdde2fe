"""Slide-level shift alarm: test whether a slide looks like the calibration data.

Two one-sided tests of the null "the slide's tiles are exchangeable with the calibration
tiles", against the alternative "they are less trustworthy":

1. **Rejection count.**  With the primary threshold at the ``k``-th smallest of ``n`` calibration
   scores, the probability ``1 - U`` that a null tile is rejected is ``Beta(n - k + 1, k)``
   distributed (``U`` = the coverage), so the number ``X`` of rejected tiles among ``N`` is
   beta-binomial ``BetaBinom(N, n - k + 1, k)`` — exact, and it accounts for the calibration
   set's own sampling noise.  ``k`` is the number of calibration tiles the combined rule
   accepted (exact for a single coverage rule; an approximation for several rules and for
   risk rules, whose rank was chosen with the labels).
2. **Score distribution.**  One-sided Mann–Whitney U test (slide scores stochastically larger
   than the calibration scores) on the primary score, against the reference scores the
   Calibration keeps (all when ``n <= 2000``, else 2000 evenly spaced order statistics, which
   only makes the test conservative).

The two p-values are combined by Bonferroni (``min(1, 2 min(p1, p2))``), valid whatever their
dependence.

**Verdict.**  ``evidence`` says how to read a result below the alarm level: ``"too_few_tiles"``
when the rejection count could not reach ``alpha`` even if every tile were rejected (few tiles
for the expected rejection rate: e.g. 8 tiles when half of the calibration tiles are
rejected); ``"inconclusive"`` when the slide leans toward a shift (``p < 0.1`` or more
rejections than the 95th null percentile) without reaching ``alpha``; ``"none"`` otherwise;
``"shift"`` when the alarm fires.  The verdict sentence says so, so that a few tiles that are
all rejected are never reported as "no sign of a shift".

**Tiles within a slide are not independent** (neighbouring tiles share tissue, stain, focus and
artefacts), so under the null the count and the rank sum vary more than the i.i.d. formulas
say and the p-values are too small.  Treat the alarm as a screening heuristic.  The
``design_effect`` option divides the effective number of tiles by a variance-inflation factor
(e.g. ``1 + (m - 1) rho`` for clusters of ``m`` tiles with intra-cluster correlation ``rho``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from tileuq.errors import CalibrationError
from tileuq.uncertainty.calibration import Calibration

__all__ = ["ShiftReport", "shift_test"]


@dataclass(frozen=True)
class ShiftReport:
    """Result of :func:`shift_test`.

    Attributes
    ----------
    n_tiles, n_rejected
        Tiles tested and tiles the calibration rejects.
    rejected_fraction
        ``n_rejected / n_tiles``.
    expected_fraction
        Rejected fraction on the calibration set (the null expectation).
    expected_upper
        95th percentile of the null rejected fraction for this many tiles.
    p_count, p_distribution
        One-sided p-values of the count test and of the Mann–Whitney test.
    p_value
        Bonferroni combination of the two.
    alpha
        Significance level of the verdict.
    shifted
        ``p_value < alpha``.
    score
        Score whose distribution was compared.
    median_score, calibration_median
        Medians of that score on the slide and on the calibration set.
    design_effect
        Variance-inflation factor used (1 = tiles treated as independent).
    verdict
        One plain-language sentence.
    evidence
        ``"shift"``, ``"inconclusive"``, ``"too_few_tiles"`` or ``"none"`` (module docstring).
    p_best
        Combined p-value if every tile were rejected (count test); ``>= alpha`` means the
        rejection count cannot raise the alarm on a slide with this few tiles.
    """

    n_tiles: int
    n_rejected: int
    rejected_fraction: float
    expected_fraction: float
    expected_upper: float
    p_count: float
    p_distribution: float
    p_value: float
    alpha: float
    shifted: bool
    score: str
    median_score: float
    calibration_median: float
    design_effect: float
    verdict: str
    evidence: str = "none"
    p_best: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return asdict(self)

    def __str__(self) -> str:
        return self.verdict


def _p(p: float) -> str:
    return "p < 0.0001" if p < 1e-4 else f"p = {p:.2g}"


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %" if x >= 0.01 or x == 0 else f"{100 * x:.1f} %"


def shift_test(
    results: Any,
    calibration: Calibration,
    *,
    alpha: float = 0.01,
    design_effect: float = 1.0,
    tissue_min: float | None = None,
) -> ShiftReport:
    """Compare a slide's scores with the calibration set's; see the module docstring.

    Parameters
    ----------
    results
        TileResults-like object (``.table``) or DataFrame with the calibration's score columns.
    calibration
        The :class:`Calibration` whose rules and reference scores are used.
    alpha
        Significance level of the verdict (default 0.01: it screens many slides).
    design_effect
        Variance-inflation factor ``>= 1`` for correlated tiles; the effective number of tiles
        is ``N / design_effect``.
    tissue_min
        Only test tiles with ``tissue >= tissue_min`` (when the table has a ``tissue`` column).

    Returns
    -------
    ShiftReport
    """
    if not 0.0 < alpha < 1.0:
        raise CalibrationError(f"alpha: must lie strictly between 0 and 1, got {alpha}")
    if not design_effect >= 1.0:
        raise CalibrationError(f"design_effect: must be >= 1, got {design_effect}")
    table = getattr(results, "table", results)
    if tissue_min is not None and "tissue" in table.columns:
        table = table[table["tissue"].to_numpy() >= tissue_min]
    n_tiles = len(table)
    if n_tiles == 0:
        raise CalibrationError("shift test: the results hold no tiles")
    score = calibration.score
    ref = np.asarray(calibration.reference.get(score, []), dtype=np.float64)
    if ref.size == 0:
        raise CalibrationError(
            f"shift test: the calibration keeps no reference scores for {score!r} "
            f"(it was made without them); recalibrate with this version of tileuq"
        )
    rejected, _ = calibration.decide(table)
    x = int(rejected.sum())
    n, k = int(calibration.n), int(calibration.accepted)
    s = np.asarray(table[score], dtype=np.float64)
    s = s[~np.isnan(s)]
    p_count, p_mw, upper = _pvalues(x, n_tiles, s, ref, n, k, design_effect)
    p = min(1.0, 2.0 * min(p_count, p_mw))
    # what the count test would say if every tile were rejected
    p_best = min(1.0, 2.0 * _pvalues(n_tiles, n_tiles, s[:0], ref, n, k, design_effect)[0])
    shifted = p < alpha
    frac = x / n_tiles
    expected = 1.0 - k / n
    med = float(np.median(s)) if s.size else float("nan")
    ref_med = float(np.median(ref))
    counts = f"{_pct(frac)} of tiles rejected, expected about {_pct(expected)}"
    tiles = f"{n_tiles} tile{'s' if n_tiles != 1 else ''}"
    if shifted:
        evidence = "shift"
        what = f"{counts} (at most {_pct(upper)} in 95 % of slides like the calibration data)"
        if p_mw < p_count:
            what += f"; {score} scores run higher (median {med:.4g} vs {ref_med:.4g})"
        verdict = f"This slide looks unlike the calibration data: {what} ({_p(p)})."
    elif p_best >= alpha:
        evidence = "too_few_tiles"
        verdict = (
            f"Too few tiles to tell whether the slide is shifted: with {tiles} the rejection "
            f"count cannot reach the alarm level ({alpha:g}) even if every tile is rejected; "
            f"{counts} ({_p(p)})."
        )
    elif p < 0.1 or frac > upper:
        evidence = "inconclusive"
        verdict = (
            f"Not enough evidence to call a shift with {tiles}, though the slide leans that "
            f"way: {counts} ({_p(p)}; the alarm needs p < {alpha:g})."
        )
    else:
        evidence = "none"
        verdict = f"No sign of a shift: {counts} ({_p(p)})."
    if design_effect == 1.0:
        verdict += " Tiles are treated as independent; the alarm is a screening heuristic."
    return ShiftReport(
        n_tiles=n_tiles,
        n_rejected=x,
        rejected_fraction=frac,
        expected_fraction=expected,
        expected_upper=upper,
        p_count=p_count,
        p_distribution=p_mw,
        p_value=p,
        alpha=alpha,
        shifted=shifted,
        score=score,
        median_score=med,
        calibration_median=ref_med,
        design_effect=float(design_effect),
        verdict=verdict,
        evidence=evidence,
        p_best=p_best,
    )


def _pvalues(
    x: int,
    n_tiles: int,
    s: np.ndarray,
    ref: np.ndarray,
    n: int,
    k: int,
    design_effect: float,
) -> tuple[float, float, float]:
    """Count and Mann–Whitney p-values, and the null 95th-percentile rejected fraction."""
    # 1. count: BetaBinomial(N, n - k + 1, k) under exchangeability
    a, b = n - k + 1, max(k, 1)
    n_eff = max(1, round(n_tiles / design_effect))
    x_eff = min(n_eff, round(x / design_effect))
    p_count = float(stats.betabinom.sf(x_eff - 1, n_eff, a, b)) if x_eff > 0 else 1.0
    upper = float(stats.betabinom.ppf(0.95, n_eff, a, b)) / n_eff
    # 2. distribution: one-sided Mann-Whitney U on the primary score
    p_mw = 1.0
    if s.size and ref.size:
        p_mw = float(stats.mannwhitneyu(s, ref, alternative="greater").pvalue)
        if design_effect > 1.0:  # shrink the z statistic by sqrt(design effect)
            z = float(stats.norm.isf(min(max(p_mw, 1e-300), 1.0)))
            p_mw = float(stats.norm.sf(z / math.sqrt(design_effect)))
    return p_count, p_mw, upper
