"""Single-score threshold selection with finite-sample guarantees.

Two functions, both on one score per calibration tile (larger = less trustworthy; a tile is
accepted when ``score <= threshold``):

* :func:`coverage_threshold` — accept at least a fraction ``q`` of new exchangeable tiles.
* :func:`risk_threshold` — the largest coverage whose selective error rate is ``<= alpha``
  with probability ``>= 1 - delta``.

They return plain result objects; :func:`tileuq.uncertainty.calibrate_scores` turns them into a
:class:`~tileuq.uncertainty.Calibration` and raises :class:`~tileuq.errors.CalibrationError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tileuq.uncertainty.bounds import (
    binomial_pvalue,
    clopper_pearson_upper,
    coverage_rank,
    min_n_coverage,
    min_n_risk,
)

__all__ = ["CoverageSelection", "RiskSelection", "coverage_threshold", "risk_threshold"]


@dataclass(frozen=True)
class CoverageSelection:
    """Result of :func:`coverage_threshold`.

    ``threshold`` is ``None`` when the set is too small; ``needed_n`` is then the minimum size.
    """

    threshold: float | None
    rank: int | None
    n: int
    needed_n: int


@dataclass(frozen=True)
class RiskSelection:
    """Result of :func:`risk_threshold`.

    Attributes
    ----------
    threshold
        Accept ``score <= threshold``; ``None`` when nothing could be certified.
    accepted, errors
        Calibration tiles accepted by the threshold and the errors among them.
    pvalue
        p-value of the null "selective risk > alpha" at the chosen threshold.
    upper_bound
        One-sided ``1 - delta`` Clopper–Pearson bound on the selective risk at the chosen
        threshold (pointwise; informative only — the guarantee comes from the procedure).
    best_bound
        The smallest pointwise bound over all candidate thresholds (helps explain a failure).
    min_accepted
        Accepted tiles before the first test (``"ltt"``: the first start count; at least the
        number for which zero errors certify ``alpha`` at the per-test level).
    needed_n
        Minimum calibration-set size for which the procedure can certify anything.
    method
        ``"ltt"`` or ``"bonferroni"``.
    message
        Why nothing was certified (empty on success).
    """

    threshold: float | None
    accepted: int
    errors: int
    pvalue: float
    upper_bound: float
    best_bound: float
    min_accepted: int
    needed_n: int
    n: int
    method: str
    message: str = ""


def _prepare(scores: ArrayLike, what: str = "scores") -> NDArray[np.float64]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    if np.isnan(s).any():
        raise ValueError(f"{what}: {int(np.isnan(s).sum())} NaN value(s)")
    return s


def coverage_threshold(
    scores: ArrayLike, q: float, delta: float = 0.05, *, guarantee: str = "pac"
) -> CoverageSelection:
    """Threshold accepting at least a fraction ``q`` of new exchangeable tiles.

    The threshold is the order statistic ``s_(k)`` with the rank ``k`` of
    :func:`~tileuq.uncertainty.bounds.coverage_rank`:

    * ``guarantee="pac"`` (default): ``P(coverage >= q) >= 1 - delta`` over calibration draws,
      where coverage is the probability that a *new* tile from the same distribution is
      accepted (training-conditional guarantee; the realized coverage of this one threshold).
    * ``guarantee="marginal"``: ``E[coverage] >= q`` averaged over calibration draws (the usual
      split-conformal rank ``ceil((n + 1) q)``); says nothing about one particular calibration.

    Ties only increase the coverage (every tile tied with ``s_(k)`` is accepted).
    """
    s = np.sort(_prepare(scores))
    n = int(s.size)
    needed = min_n_coverage(q, delta, guarantee=guarantee)
    k = coverage_rank(n, q, delta, guarantee=guarantee)
    if k is None:
        return CoverageSelection(None, None, n, needed)
    return CoverageSelection(float(s[k - 1]), k, n, needed)


def risk_threshold(
    scores: ArrayLike,
    wrong: ArrayLike,
    alpha: float,
    delta: float = 0.05,
    *,
    method: str = "ltt",
    starts: tuple[float, ...] = (0.0, 0.1, 0.3),
    grid: int = 20,
) -> RiskSelection:
    r"""Largest-coverage threshold whose selective risk is ``<= alpha`` w.p. ``>= 1 - delta``.

    Selective risk of a threshold ``t`` is ``R(t) = P(wrong | S <= t)`` for a new tile drawn
    from the calibration distribution.  The guarantee is over calibration draws:
    ``P(R(t_hat) > alpha) <= delta``, assuming the calibration tiles and the new tiles are
    exchangeable (i.i.d.) and the labels are right.

    Methods
    -------
    ``"ltt"`` (default): Learn-then-Test with fixed-sequence testing (Angelopoulos et al.,
    2021).  Candidate thresholds are the distinct calibration scores in increasing order
    (most confident first).  For each, the null ``H_t: R(t) > alpha`` is tested with the exact
    binomial (Clopper–Pearson) p-value ``P(Binomial(m_t, alpha) <= e_t)`` on the ``m_t``
    accepted calibration tiles and their ``e_t`` errors (valid because, given ``m_t``, the
    accepted tiles are an i.i.d. sample of the tiles with ``S <= t``).  A sequence starts at the
    first candidate accepting at least ``c`` tiles and moves up while ``p <= delta / len(starts)``;
    the last candidate passed is its result.  Several sequences start at fixed counts
    ``c = max(m_min, ceil(f n))`` for ``f`` in ``starts`` (``m_min``: the least count at which zero
    errors can reject), each at level ``delta / len(starts)`` (Bonferroni; a single sequence at
    level ``delta`` when the starts coincide for a small ``n``), and the largest certified
    threshold wins; the later starts make the procedure robust to a few
    confidently-wrong tiles (label noise) among the most confident ones, which would stop a
    single sequence at once.

    Why it controls the error: for one sequence, let ``t*`` be the smallest threshold with
    ``R(t*) > alpha`` (a fixed population quantity; ``R`` is right-continuous so
    ``R(t*) >= alpha``).  If the sequence starts at or below ``t*``, returning a threshold
    ``>= t*`` requires having rejected ``H_{t*}`` itself, which has probability ``<= level``.  If it
    starts above ``t*`` the same holds when ``R`` is non-decreasing (every candidate above
    ``t*`` then tests a true null whose p-value is valid).  So the guarantee
    ``P(R(t_hat) > alpha) <= delta`` holds exactly when the selective risk is non-decreasing in
    the threshold from the first start onwards, or when it first exceeds ``alpha`` above
    the first start; it can fail only for a score whose risk exceeds ``alpha`` on its most
    confident tiles, falls below ``alpha`` and rises above it again.  ``"bonferroni"`` needs
    no such condition.

    ``"bonferroni"``: union bound over ``grid`` fixed ranks ``m_i = floor(i n / grid)``.
    Candidate ``i`` accepts the tiles *strictly below* ``s_(m_i + 1)``; conditional on that
    order statistic those tiles are i.i.d. from ``S < s_(m_i + 1)``, so each test at level
    ``delta / grid`` is exact, with no assumption on the shape of ``R``.  The threshold is the
    largest float below ``s_(m_i + 1)`` (``inf`` when every tile is accepted).  More
    conservative than ``"ltt"`` (in simulations about 5-10 points of coverage lower).

    Parameters
    ----------
    scores
        One score per calibration tile.
    wrong
        Boolean, ``True`` where the model's prediction was wrong.
    alpha
        Target selective risk (error rate among accepted tiles).
    delta
        Allowed probability that the returned threshold's risk exceeds ``alpha``.
    method
        ``"ltt"`` or ``"bonferroni"``.
    starts
        ``"ltt"`` only: fractions of ``n`` at which the sequences start (fixed in advance,
        never chosen after looking at the data).  ``(0.0,)`` is plain fixed-sequence testing.
    grid
        ``"bonferroni"`` only: number of candidate ranks.
    """
    s = _prepare(scores)
    w = np.asarray(wrong).astype(bool).ravel()
    if w.size != s.size:
        raise ValueError(f"wrong: expected {s.size} values, got {w.size}")
    n = int(s.size)
    order = np.argsort(s, kind="stable")
    s, w = s[order], w[order]
    cum_err = np.cumsum(w)

    if method == "ltt":
        fracs = tuple(float(f) for f in starts)
        if not fracs or any(not 0.0 <= f < 1.0 for f in fracs):
            raise ValueError(f"starts: expected fractions in [0, 1), got {starts!r}")
        # the start counts depend on n only (never on the data), so the split is fixed
        j_single = min_n_risk(alpha, delta)
        j_split = min_n_risk(alpha, delta / len(fracs))
        counts = sorted({max(j_split, math.ceil(f * n)) for f in fracs})
        if len(counts) == 1:  # small n: the starts coincide, one sequence at the full level
            counts = [max(j_single, min(math.ceil(f * n) for f in fracs))]
        level = delta / len(counts)
        j0 = counts[0]
        needed = j_single
        # tie-closed candidates: last index of each run of equal scores
        ends = np.nonzero(np.append(s[1:] != s[:-1], True))[0]
        m = ends + 1
        e = cum_err[ends]
        p = binomial_pvalue(e, m, alpha)
        cand_t = s[ends]
        chosen = -1
        first_start = -1
        for c in counts:
            active = np.nonzero(m >= c)[0]
            if not active.size:
                continue
            start = int(active[0])
            first_start = start if first_start < 0 else first_start
            fails = np.nonzero(p[start:] > level)[0]
            last = start + (int(fails[0]) if fails.size else len(p) - start) - 1
            if last >= start:
                chosen = max(chosen, last)
        start = first_start
        delta_eff = level
    elif method == "bonferroni":
        if grid < 1:
            raise ValueError(f"grid: must be >= 1, got {grid}")
        level = delta / grid
        j0 = min_n_risk(alpha, level)
        needed = j0  # the largest candidate (every tile) must hold j0 tiles
        ranks = np.unique(np.floor(np.arange(1, grid + 1) * n / grid).astype(np.int64))
        ranks = ranks[ranks >= 1]
        # strictly below s_(m+1): count and errors of scores < s[m] (0-based s[m] = s_(m+1))
        nxt = np.where(ranks < n, s[np.minimum(ranks, n - 1)], np.inf)
        m = np.searchsorted(s, nxt, side="left")
        e = np.where(m > 0, cum_err[np.maximum(m - 1, 0)], 0)
        p = binomial_pvalue(e, m, alpha)
        cand_t = np.where(np.isinf(nxt), np.inf, np.nextafter(nxt, -np.inf))
        ok = np.nonzero(p <= level)[0]
        chosen = int(ok[-1]) if ok.size else -1
        start = 0
        delta_eff = level
    else:
        raise ValueError(f"method: expected 'ltt' or 'bonferroni', got {method!r}")

    bounds = clopper_pearson_upper(e, m, delta_eff)
    best = float(bounds.min()) if bounds.size else 1.0
    if chosen < 0:
        if n < needed:
            msg = (
                f"{n} calibration tiles cannot certify a selective risk <= {alpha:g} at "
                f"delta={delta:g}: at least {needed} are needed (even with zero errors)"
            )
        elif method == "ltt" and start >= 0:
            msg = (
                f"the {int(m[start])} most confident calibration tiles already contain "
                f"{int(e[start])} error(s) (p = {float(p[start]):.3g}), so "
                f"no threshold certifies a selective risk <= {alpha:g}; the lowest risk bound "
                f"reachable on this set is {best:.3g} (raise target_risk or add calibration "
                f"tiles)"
            )
        else:
            msg = (
                f"no threshold certifies a selective risk <= {alpha:g} at delta={delta:g}; the "
                f"lowest risk bound reachable on this set is {best:.3g}"
            )
        return RiskSelection(None, 0, 0, 1.0, 1.0, best, j0, needed, n, method, msg)
    return RiskSelection(
        threshold=float(cand_t[chosen]),
        accepted=int(m[chosen]),
        errors=int(e[chosen]),
        pvalue=float(p[chosen]),
        upper_bound=float(bounds[chosen]),
        best_bound=best,
        min_accepted=j0,
        needed_n=needed,
        n=n,
        method=method,
    )
