"""Finite-sample maths behind the thresholds: order-statistic ranks and binomial tail tests.

Notation: ``n`` calibration tiles with scores ``s_1..s_n`` (larger = less trustworthy), sorted
``s_(1) <= ... <= s_(n)``.  A threshold ``t`` accepts a tile when ``score <= t``.

Coverage
    For a new exchangeable tile, the coverage of ``t = s_(k)`` is ``C = P(S <= s_(k))``.
    For continuous scores ``C ~ Beta(k, n - k + 1)`` over calibration draws; ties only make ``C``
    larger (the ``<=`` rule accepts every tied tile), so the bounds below stay valid with ties.

    * marginal (split-conformal): ``E[C] = k / (n + 1) >= q`` for ``k = ceil((n + 1) q)``.
    * PAC / training-conditional: ``P(C < q) = P(Binomial(n, q) >= k)``; the smallest ``k``
      with that probability ``<= delta`` gives ``P(C >= q) >= 1 - delta``.

Risk
    ``binomial_pvalue(e, m, alpha) = P(Binomial(m, alpha) <= e)`` is an exact (Clopper–Pearson)
    p-value for the null "the error rate of the population the ``m`` tiles came from is
    ``>= alpha``".  See :func:`tileuq.uncertainty.thresholds.risk_threshold` for how it is used.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

__all__ = [
    "binomial_pvalue",
    "clopper_pearson_upper",
    "coverage_rank",
    "min_n_coverage",
    "min_n_risk",
]


def _check_level(value: float, name: str) -> float:
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name}: must lie strictly between 0 and 1, got {value}")
    return value


def coverage_rank(n: int, q: float, delta: float = 0.05, *, guarantee: str = "pac") -> int | None:
    """Smallest rank ``k`` (1-based) such that ``t = s_(k)`` covers ``>= q`` of new tiles.

    Parameters
    ----------
    n
        Calibration-set size.
    q
        Target coverage (fraction of new in-distribution tiles accepted).
    delta
        Allowed failure probability over calibration draws (``guarantee="pac"`` only).
    guarantee
        ``"pac"``: ``P(coverage >= q) >= 1 - delta``; ``"marginal"``: ``E[coverage] >= q``.

    Returns
    -------
    int or None
        The rank, or ``None`` when ``n`` is too small (see :func:`min_n_coverage`).
    """
    q = _check_level(q, "target_coverage")
    if n < 1:
        return None
    if guarantee == "marginal":
        k = math.ceil((n + 1) * q - 1e-12)
        return k if k <= n else None
    if guarantee != "pac":
        raise ValueError(f"guarantee: expected 'pac' or 'marginal', got {guarantee!r}")
    delta = _check_level(delta, "delta")
    ks = np.arange(1, n + 1)
    fail = stats.binom.sf(ks - 1, n, q)  # P(Binomial(n, q) >= k), decreasing in k
    ok = np.nonzero(fail <= delta)[0]
    return int(ks[ok[0]]) if ok.size else None


def min_n_coverage(q: float, delta: float = 0.05, *, guarantee: str = "pac") -> int:
    """Smallest calibration-set size for which a coverage-``q`` threshold exists.

    PAC: the largest rank ``k = n`` fails with probability ``q**n``, so ``n >= log(delta) /
    log(q)``.  Marginal: ``ceil((n + 1) q) <= n``.
    """
    q = _check_level(q, "target_coverage")
    if guarantee == "marginal":
        n = max(1, math.floor(q / (1 - q)) - 1)
        while math.ceil((n + 1) * q - 1e-12) > n:
            n += 1
        return n
    delta = _check_level(delta, "delta")
    n = max(1, math.floor(math.log(delta) / math.log(q)) - 1)
    while q**n > delta:
        n += 1
    return n


def binomial_pvalue(errors: ArrayLike, m: ArrayLike, alpha: float) -> NDArray[np.float64]:
    """Exact p-value ``P(Binomial(m, alpha) <= errors)`` for the null "error rate >= alpha".

    ``m == 0`` gives 1 (nothing observed, nothing certified).
    """
    e = np.asarray(errors, dtype=np.float64)
    mm = np.asarray(m, dtype=np.float64)
    p = np.where(mm > 0, stats.binom.cdf(e, np.maximum(mm, 1), alpha), 1.0)
    return np.asarray(p, dtype=np.float64)


def min_n_risk(alpha: float, delta: float = 0.05) -> int:
    """Smallest number of accepted tiles for which even zero errors certifies risk ``<= alpha``.

    ``P(Binomial(m, alpha) <= 0) = (1 - alpha)**m <= delta``.
    """
    alpha = _check_level(alpha, "target_risk")
    delta = _check_level(delta, "delta")
    m = max(1, math.floor(math.log(delta) / math.log1p(-alpha)) - 1)
    while (1 - alpha) ** m > delta:
        m += 1
    return m


def clopper_pearson_upper(errors: ArrayLike, m: ArrayLike, delta: float) -> NDArray[np.float64]:
    """One-sided ``1 - delta`` Clopper–Pearson upper confidence bound on an error rate."""
    e = np.asarray(errors, dtype=np.float64)
    mm = np.asarray(m, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        ub = np.where(e >= mm, 1.0, stats.beta.ppf(1 - delta, e + 1, np.maximum(mm - e, 1e-300)))
    return np.asarray(np.where(mm > 0, ub, 1.0), dtype=np.float64)
