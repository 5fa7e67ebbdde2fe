"""Calibration on the calibration split, realized coverage/risk on the test split, OOD metrics
with bootstrap intervals, and the random re-split check, for ``benchmarks/evidence.py``.

Everything here works on cached model outputs (numpy); thresholds come from
``tileuq.uncertainty.calibrate_scores`` and metrics from ``tileuq.metrics``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tileuq.errors import CalibrationError
from tileuq.metrics import fpr_at_tpr, ood_auroc
from tileuq.uncertainty import KNNScorer, MahalanobisScorer, calibrate_scores, clopper_pearson_upper

DISTANCES = ("knn_cosine", "knn_euclidean", "mahalanobis")
KNN_K = 10


def relevant_scores(method: str, available: Sequence[str]) -> list[str]:
    """Scores reported for a method: probability scores, its own unfamiliar score, distances."""
    names = ["msp", "entropy", "margin", "energy"]
    if method == "sngp":
        names.append("variance")
    if method in ("ensemble", "mc_dropout"):
        names += ["mutual_information", "expected_entropy"]
    names += list(DISTANCES)
    return [n for n in names if n in available]


def unfamiliar_score(method: str) -> str:
    """The model's own 'unfamiliar' score (a distance for the deterministic model)."""
    return {"sngp": "variance", "ensemble": "mutual_information"}.get(
        method, "mutual_information" if method == "mc_dropout" else "mahalanobis"
    )


def add_distance_scores(sets: Mapping[str, dict[str, Any]], reference: str = "train") -> dict:
    """Fit k-NN (cosine, Euclidean; k = 10) and Mahalanobis on the reference set's features
    and labels, and add their scores to every set. Returns fit information."""
    ref = sets[reference]
    scorers: dict[str, KNNScorer | MahalanobisScorer] = {
        "knn_cosine": KNNScorer(KNN_K, "cosine").fit(ref["features"]),
        "knn_euclidean": KNNScorer(KNN_K, "euclidean").fit(ref["features"]),
        "mahalanobis": MahalanobisScorer().fit(ref["features"], ref["labels"]),
    }
    for d in sets.values():
        for name, sc in scorers.items():
            d["scores"][name] = np.asarray(sc.score(d["features"]), np.float64)
    maha = scorers["mahalanobis"]
    assert isinstance(maha, MahalanobisScorer)
    return {
        "reference": reference,
        "n_reference": len(ref["labels"]),
        "feature_dim": int(ref["features"].shape[1]),
        "knn_k": KNN_K,
        "mahalanobis_shrinkage": maha.shrinkage_used,
    }


def binom_ci(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Two-sided Clopper–Pearson interval for ``k`` successes out of ``n``."""
    if n == 0:
        return (float("nan"), float("nan"))
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else 1.0 - clopper_pearson_upper(n - k, n, a)
    hi = 1.0 if k == n else clopper_pearson_upper(k, n, a)
    return (float(lo), float(hi))


def _realized(accept: np.ndarray, correct: np.ndarray) -> dict[str, Any]:
    n, m = int(accept.size), int(accept.sum())
    err = int((~correct[accept]).sum())
    return {
        "n": n,
        "accepted": m,
        "coverage": m / n,
        "coverage_ci95": binom_ci(m, n),
        "errors": err,
        "risk": err / m if m else 0.0,
        "risk_ci95": binom_ci(err, m) if m else (float("nan"), float("nan")),
    }


def calibrate_and_test(
    cal: dict[str, Any],
    test: dict[str, Any],
    ood: Mapping[str, dict[str, Any]],
    rule: Sequence[str],
    *,
    target_coverage: float | None = None,
    target_risk: float | None = None,
    delta: float = 0.05,
) -> dict[str, Any]:
    """Calibrate ``rule`` (one score, or ambiguous + unfamiliar) on ``cal``; test on ``test``."""
    cal_ok = cal["predictions"] == cal["labels"]
    test_ok = test["predictions"] == test["labels"]
    try:
        c = calibrate_scores(
            {k: cal["scores"][k] for k in rule},
            cal_ok,
            target_coverage=target_coverage,
            target_risk=target_risk,
            delta=delta,
        )
    except CalibrationError as exc:
        return {"rule": list(rule), "ok": False, "message": str(exc)}
    rejected, _ = c.decide({k: test["scores"][k] for k in rule})
    res = _realized(~rejected, test_ok)
    out: dict[str, Any] = {
        "rule": list(rule),
        "ok": True,
        "thresholds": c.thresholds,
        "method": c.method,
        "calibration": {"n": c.n, "coverage": c.coverage, "risk": c.risk},
        "test": res,
        "ood_rejected": {k: float(c.decide(v["scores"])[0].mean()) for k, v in ood.items()},
    }
    if target_coverage is not None:
        out["held"] = res["coverage"] >= target_coverage
    else:
        out["held"] = res["risk"] <= float(target_risk or 0)
    return out


def ood_metrics(
    s_in: np.ndarray, s_out: np.ndarray, rng: np.random.Generator, n_boot: int
) -> dict[str, Any]:
    """AUROC and FPR@95 with percentile bootstrap intervals (ID and OOD resampled separately).

    The bootstrap treats tiles as independent; crops of one image are not, so for the far-OOD
    crops the intervals are too narrow (the effective n is the number of images).
    """
    au = ood_auroc(s_in, s_out)
    fpr = fpr_at_tpr(s_in, s_out)
    boots = np.empty((n_boot, 2))
    for b in range(n_boot):
        a = s_in[rng.integers(0, s_in.size, s_in.size)]
        o = s_out[rng.integers(0, s_out.size, s_out.size)]
        boots[b] = (ood_auroc(a, o), fpr_at_tpr(a, o))
    lo, hi = np.percentile(boots, [2.5, 97.5], axis=0)
    return {
        "auroc": au,
        "auroc_ci95": (float(lo[0]), float(hi[0])),
        "fpr95": fpr,
        "fpr95_ci95": (float(lo[1]), float(hi[1])),
        "n_in": int(s_in.size),
        "n_out": int(s_out.size),
    }


def resplit_check(
    pool: dict[str, Any],
    rules: Sequence[Sequence[str]],
    *,
    n_resplits: int = 200,
    n_cal: int | None = None,
    q: float = 0.9,
    alphas: Sequence[float] = (0.10, 0.20),
    delta: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """Random cal/test re-splits of a pooled labelled set: how often each target fails.

    Coverage: PAC (the shipped default), marginal (split-conformal rank) and the naive
    empirical quantile (rank ``ceil(n q)``); the same procedure on i.i.d. uniform scores gives
    the rate expected for continuous scores (the PAC coverage rule is distribution-free).
    Risk: Learn-then-Test at each ``alpha``; a re-split that certifies nothing accepts no tile
    (no violation); ``violated`` counts re-splits whose held-out risk exceeds ``alpha`` among
    all re-splits (the quantity the guarantee bounds by ``delta``, up to the held-out half's
    own sampling noise).
    """
    rng = np.random.default_rng(seed)
    n = int(pool["labels"].size)
    n_cal = n_cal or n // 2
    ok = pool["predictions"] == pool["labels"]
    perms = [rng.permutation(n) for _ in range(n_resplits)]
    uniform = np.random.default_rng(seed + 1).random(n)
    out: dict[str, Any] = {"n_pool": n, "n_cal": n_cal, "n_test": n - n_cal, "rules": {}}
    for rule in [*rules, ("uniform_reference",)]:
        key = "+".join(rule)
        ref = rule[0] == "uniform_reference"
        cols = {"uniform_reference": uniform} if ref else {k: pool["scores"][k] for k in rule}
        cov: dict[str, list[float]] = {"pac": [], "marginal": [], "naive": []}
        risk: dict[float, list[tuple[float, float, float]]] = {a: [] for a in alphas}
        for p in perms:
            ci, ti = p[:n_cal], p[n_cal:]
            cal_cols = {k: v[ci] for k, v in cols.items()}
            test_cols = {k: v[ti] for k, v in cols.items()}
            for g in ("pac", "marginal"):
                c = calibrate_scores(cal_cols, target_coverage=q, delta=delta, guarantee=g)
                cov[g].append(float((~c.decide(test_cols)[0]).mean()))
            if len(cols) == 1:
                s = next(iter(cols.values()))
                thr = np.sort(s[ci])[math.ceil(n_cal * q) - 1]
                cov["naive"].append(float((s[ti] <= thr).mean()))
            for a in [] if ref else alphas:
                try:
                    c = calibrate_scores(cal_cols, ok[ci], target_risk=a, delta=delta)
                except CalibrationError:
                    risk[a].append((0.0, 0.0, 0.0))  # nothing certified: every tile rejected
                    continue
                acc = ~c.decide(test_cols)[0]
                r = float((~ok[ti][acc]).mean()) if acc.any() else 0.0
                risk[a].append((1.0, float(acc.mean()), r))
        entry: dict[str, Any] = {}
        for g, vals in cov.items():
            if vals:
                v = np.asarray(vals)
                entry[f"coverage_{g}"] = {
                    "mean": float(v.mean()),
                    "p05": float(np.percentile(v, 5)),
                    "fraction_below_target": float((v < q - 1e-12).mean()),
                }
        for a, rvals in risk.items():
            if ref:
                continue
            arr = np.asarray(rvals)
            cert = arr[:, 0] > 0
            nan = float("nan")
            entry[f"risk_{a:g}"] = {
                "certified": float(cert.mean()),
                "mean_coverage_when_certified": float(arr[cert, 1].mean()) if cert.any() else nan,
                "mean_risk_when_certified": float(arr[cert, 2].mean()) if cert.any() else nan,
                "violated": float((arr[:, 2] > a + 1e-12).mean()),
            }
        if ref:
            entry["exact_continuous"] = exact_heldout_miss(n_cal, n - n_cal, q, delta)
        out["rules"][key] = entry
    return out


def exact_heldout_miss(n_cal: int, n_test: int, q: float, delta: float) -> dict[str, float]:
    """P(held-out coverage < q) for continuous exchangeable scores, per coverage rule.

    With threshold ``s_(k)`` of ``n_cal`` calibration scores, the number of the ``n_test``
    held-out tiles accepted is beta-binomial ``(n_test, k, n_cal - k + 1)``; the population
    coverage itself is ``Beta(k, n_cal - k + 1)``.
    """
    from scipy import stats

    from tileuq.uncertainty import coverage_rank

    out = {}
    for g in ("pac", "marginal"):
        k = coverage_rank(n_cal, q, delta, guarantee=g)
        assert k is not None
        below = math.ceil(q * n_test - 1e-9) - 1  # accepted counts giving coverage < q
        out[f"{g}_heldout"] = float(stats.betabinom(n_test, k, n_cal - k + 1).cdf(below))
        out[f"{g}_population"] = float(stats.beta(k, n_cal - k + 1).cdf(q))
    return out
