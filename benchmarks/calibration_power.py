"""Validity and power of the threshold procedures on synthetic exchangeable data.

Prints, per scenario, the violation rate (fraction of calibration draws whose threshold misses
the target; must stay <= delta) and the mean coverage (power) of:

- risk target: LTT multi-start (default), LTT single start, Bonferroni, and the plug-in
  threshold (largest threshold with empirical risk <= alpha: no guarantee);
- coverage target: PAC rank, marginal (conformal) rank, plain empirical quantile.

Scores are U(0, 1); the error probability at score s is 0.25 s^2 ("monotone"), plus 50 %
errors on the 1 % most confident tiles ("noisy top": label noise).  True coverage and risk are
computed exactly, so no test set is needed.  Writes benchmarks/results/calibration_power.json.

    .venv/bin/python benchmarks/calibration_power.py [--reps 300] [--n 1000]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from tileuq.uncertainty import coverage_rank, risk_threshold

GRID = np.linspace(0, 1, 20001)


def eta(kind: str, s: np.ndarray) -> np.ndarray:
    base = 0.25 * s**2
    return np.where(s < 0.01, 0.5, base) if kind == "noisy top" else base


def risk_curve(kind: str) -> np.ndarray:
    e = eta(kind, GRID)
    return np.cumsum(e) / np.arange(1, GRID.size + 1)


def plug_in(s: np.ndarray, wrong: np.ndarray, alpha: float) -> float:
    o = np.argsort(s)
    r = np.cumsum(wrong[o]) / np.arange(1, s.size + 1)
    ok = np.nonzero(r <= alpha)[0]
    return float(s[o][ok[-1]]) if ok.size else -1.0


def run_risk(kind: str, n: int, alpha: float, delta: float, reps: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    curve = risk_curve(kind)
    procs = {
        "ltt (3 starts)": lambda s, w: risk_threshold(s, w, alpha, delta).threshold,
        "ltt (1 start)": lambda s, w: risk_threshold(s, w, alpha, delta, starts=(0.0,)).threshold,
        "bonferroni": lambda s, w: (
            risk_threshold(s, w, alpha, delta, method="bonferroni").threshold
        ),
        "plug-in (no guarantee)": lambda s, w: plug_in(s, w, alpha),
    }
    out = {k: {"violations": 0, "coverage": []} for k in procs}
    for _ in range(reps):
        s = rng.random(n)
        w = rng.random(n) < eta(kind, s)
        for name, f in procs.items():
            t = f(s, w)
            t = -1.0 if t is None else min(float(t), 1.0)
            out[name]["coverage"].append(max(t, 0.0))
            if t >= 0 and curve[round(t * (GRID.size - 1))] > alpha:
                out[name]["violations"] += 1
    return {
        k: {
            "violation_rate": v["violations"] / reps,
            "mean_coverage": float(np.mean(v["coverage"])),
        }
        for k, v in out.items()
    }


def run_coverage(n: int, q: float, delta: float, reps: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    u = np.sort(rng.random((reps, n)), axis=1)  # coverage of s_(k) is s_(k) itself
    ranks = {
        "pac": coverage_rank(n, q, delta),
        "marginal": coverage_rank(n, q, guarantee="marginal"),
        "empirical quantile": int(np.ceil(n * q)),
    }
    return {
        k: {
            "violation_rate": float((u[:, r - 1] < q).mean()),
            "mean_coverage": float(u[:, r - 1].mean()),
        }
        for k, r in ranks.items()
        if r is not None
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=300)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--delta", type=float, default=0.05)
    args = ap.parse_args()
    t0 = time.perf_counter()
    report: dict = {"n": args.n, "reps": args.reps, "delta": args.delta, "risk": {}, "coverage": {}}
    for kind in ("monotone", "noisy top"):
        for alpha in (0.05, 0.1):
            key = f"{kind}, alpha={alpha}"
            res = run_risk(kind, args.n, alpha, args.delta, args.reps, seed=1)
            report["risk"][key] = res
            print(f"risk target — {key}")
            for k, v in res.items():
                viol, cov = v["violation_rate"], v["mean_coverage"]
                print(f"  {k:24s} violations {viol:.3f}  coverage {cov:.3f}")
    for q in (0.9, 0.95):
        res = run_coverage(args.n, q, args.delta, max(args.reps, 2000), seed=2)
        report["coverage"][f"q={q}"] = res
        print(f"coverage target — q={q}")
        for k, v in res.items():
            print(
                f"  {k:24s} violations {v['violation_rate']:.3f}  coverage {v['mean_coverage']:.4f}"
            )
    report["seconds"] = time.perf_counter() - t0
    out = Path(__file__).parent / "results" / "calibration_power.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out} ({report['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
