"""calibrate_scores, the Calibration record (JSON, manifest, apply) and decisions files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tileuq.errors import CalibrationError
from tileuq.uncertainty import (
    Calibration,
    append_decision,
    calibrate,
    calibrate_scores,
    decision_record,
    read_decisions,
    write_calibration,
    write_decisions,
)


@pytest.fixture
def synthetic():
    rng = np.random.default_rng(0)
    n = 1000
    ent = rng.random(n)
    var = rng.random(n)
    correct = rng.random(n) > 0.25 * ent**2
    return ent, var, correct


def test_single_score_coverage(synthetic):
    ent, _, correct = synthetic
    cal = calibrate_scores(ent, correct, target_coverage=0.9, score_name="entropy")
    assert cal.score == "entropy" and cal.reason == {"entropy": "ambiguous"}
    assert cal.method == "conformal-pac"
    assert cal.n == 1000 and cal.accepted == int((ent <= cal.threshold).sum())
    # PAC rank for n=1000, q=0.9, delta=0.05 sits above the plain quantile
    assert 0.9 < cal.coverage < 0.93
    assert cal.threshold == np.sort(ent)[cal.accepted - 1]
    assert cal.risk == pytest.approx((~correct[ent <= cal.threshold]).mean())
    assert len(cal.reference["entropy"]) == 1000


def test_score_registry_gives_reasons(synthetic):
    ent, var, correct = synthetic
    cal = calibrate_scores({"entropy": ent, "variance": var}, correct, target_coverage=0.9)
    assert cal.reason == {"entropy": "ambiguous", "variance": "unfamiliar"}
    assert cal.method == "conformal-pac+bonferroni"
    # Bonferroni split: each rule at coverage 0.95 and delta 0.025
    assert [r.coverage for r in cal.rules] == [pytest.approx(0.95)] * 2
    assert [r.delta for r in cal.rules] == [pytest.approx(0.025)] * 2
    assert cal.coverage >= 0.9
    cal = calibrate_scores(ent, correct, target_coverage=0.9, score_name="x", reason="unfamiliar")
    assert cal.reason == {"x": "unfamiliar"}


def test_risk_target_with_gate(synthetic):
    ent, var, correct = synthetic
    cal = calibrate_scores(
        {"entropy": ent, "variance": var}, correct, target_risk=0.05, unfamiliar_coverage=0.95
    )
    roles = {r.score: r.role for r in cal.rules}
    assert roles == {"entropy": "risk", "variance": "gate"}
    assert cal.score == "entropy"  # the risk rule is the primary one
    assert cal.risk is not None and cal.risk <= 0.05
    assert cal.risk_bound is not None and cal.risk_bound <= 0.05 + 1e-9
    with pytest.raises(CalibrationError, match="one 'unfamiliar' gate"):
        calibrate_scores({"entropy": ent, "msp": var}, correct, target_risk=0.05)


def test_too_small_sets_say_how_many_are_needed():
    s = np.linspace(0, 1, 20)
    with pytest.raises(CalibrationError, match="at least 29"):
        calibrate_scores(s, target_coverage=0.9, delta=0.05)
    with pytest.raises(CalibrationError, match="at least 59"):
        calibrate_scores(s, np.ones(20, bool), target_risk=0.05, delta=0.05)
    # 29 tiles suffice for coverage 0.9 at delta 0.05
    calibrate_scores(np.linspace(0, 1, 29), target_coverage=0.9, delta=0.05)
    # two rules need more (each at coverage 0.95, delta 0.025: 0.95**72 <= 0.025)
    with pytest.raises(CalibrationError, match="over 2 rules needs at least 72"):
        calibrate_scores({"entropy": s, "variance": s}, target_coverage=0.9)


def test_bad_arguments():
    s = np.linspace(0, 1, 100)
    with pytest.raises(CalibrationError, match="exactly one"):
        calibrate_scores(s, target_coverage=0.9, target_risk=0.1)
    with pytest.raises(CalibrationError, match="needs `correct`"):
        calibrate_scores(s, target_risk=0.1)
    with pytest.raises(CalibrationError, match="NaN"):
        calibrate_scores(np.r_[s, np.nan], target_coverage=0.9)
    with pytest.raises(CalibrationError, match="one per tile"):
        calibrate_scores(s, np.ones(5, bool), target_coverage=0.9)
    with pytest.raises(CalibrationError, match="target_coverage"):
        calibrate_scores(s, target_coverage=1.5)


def test_unreachable_risk_is_explained():
    rng = np.random.default_rng(5)
    s = rng.random(300)
    wrong = rng.random(300) < 0.3  # 30 % errors everywhere: no threshold reaches 5 %
    with pytest.raises(CalibrationError, match="lowest risk bound"):
        calibrate_scores(s, ~wrong, target_risk=0.05)


def test_json_round_trip_and_save(tmp_path, synthetic):
    ent, var, correct = synthetic
    cal = calibrate_scores(
        {"entropy": ent, "variance": var},
        correct,
        target_risk=0.05,
        model_hash="ab" * 32,
        classes=["a", "b"],
        temperature=1.7,
    )
    again = Calibration.from_json(cal.to_json())
    assert again == cal
    text = cal.to_json()
    json.loads(text)  # strict JSON
    p = cal.save(tmp_path / "cal.json")
    assert Calibration.load(p) == cal
    # infinite thresholds survive strict JSON
    inf = calibrate_scores(
        np.linspace(0, 1, 800), np.ones(800, bool), target_risk=0.05, method="bonferroni"
    )
    assert inf.threshold == np.inf
    assert '"inf"' in inf.to_json()
    assert Calibration.from_json(inf.to_json()).threshold == np.inf
    with pytest.raises(CalibrationError, match="not a tileuq calibration"):
        Calibration.from_json('{"format": "other"}')
    with pytest.raises(CalibrationError, match="not valid JSON"):
        Calibration.from_json("{")


def test_write_into_model_folder_keeps_backup(tmp_path, synthetic):
    ent, _, correct = synthetic
    manifest = {"format": "tileuq.model", "weights": {"sha256": "cd" * 32}, "calibration": None}
    (tmp_path / "model.json").write_text(json.dumps(manifest))
    cal = calibrate_scores(ent, correct, target_coverage=0.9, model_hash="cd" * 32)
    write_calibration(tmp_path, cal)
    assert json.loads((tmp_path / "model.json.bak").read_text()) == manifest
    stored = json.loads((tmp_path / "model.json").read_text())
    assert stored["weights"] == manifest["weights"]
    assert Calibration.from_manifest(stored) == cal
    assert Calibration.load(tmp_path) == cal
    other = calibrate_scores(ent, correct, target_coverage=0.9, model_hash="ef" * 32)
    with pytest.raises(CalibrationError, match="holds weights"):
        write_calibration(tmp_path, other)
    with pytest.raises(CalibrationError, match="model folder"):
        write_calibration(tmp_path / "nowhere", cal)


class _Results:
    def __init__(self, table, meta):
        self.table, self.meta = table, meta


def test_apply_adds_columns_and_reasons():
    rng = np.random.default_rng(1)
    n = 500
    cal = calibrate_scores(
        {"entropy": rng.random(n), "variance": rng.random(n)},
        target_coverage=0.8,
        model_hash="ab" * 32,
    )
    t_e, t_v = cal.thresholds["entropy"], cal.thresholds["variance"]
    table = pd.DataFrame(
        {
            "x": [0, 1, 2, 3, 4],
            "entropy": [t_e - 0.01, t_e + 0.01, t_e - 0.01, t_e + 0.01, np.nan],
            "variance": [t_v, t_v - 0.01, t_v + 0.01, t_v + 0.01, 0.0],
        }
    )
    before = table.copy()
    out = cal.apply(table)
    assert isinstance(out, pd.DataFrame)
    pd.testing.assert_frame_equal(table, before)  # input untouched
    assert out["rejected"].tolist() == [False, True, True, True, True]
    # unfamiliar wins when both rules reject; NaN scores are rejected
    assert out["reason"].tolist() == ["", "ambiguous", "unfamiliar", "unfamiliar", "ambiguous"]
    res = _Results(table, {"model": {"hash": "ab" * 32}})
    applied = cal.apply(res)
    assert type(applied) is _Results and applied is not res
    assert "rejected" not in res.table.columns and "calibration" not in res.meta
    assert applied.meta["calibration"]["rules"][0]["score"] == "entropy"
    assert "reference" not in applied.meta["calibration"]
    with pytest.raises(CalibrationError, match="made for model"):
        cal.apply(_Results(table, {"model": {"hash": "ff" * 32}}))
    cal.apply(_Results(table, {"model": {"hash": "ff" * 32}}), check_model=False)
    with pytest.raises(CalibrationError, match=r"\['variance'\] missing"):
        cal.apply(table.drop(columns="variance"))


def test_apply_on_engine_results():
    tr = pytest.importorskip("tileuq.engine.results")
    rng = np.random.default_rng(2)
    cal = calibrate_scores(rng.random(200), target_coverage=0.8, score_name="entropy")
    table = pd.DataFrame({"x": np.arange(10), "y": 0, "plane": 0, "entropy": rng.random(10)})
    res = tr.TileResults(table, {"model": {"classes": ["a", "b"]}})
    out = cal.apply(res)
    assert isinstance(out, tr.TileResults)
    assert out.table["rejected"].tolist() == (table["entropy"] > cal.threshold).tolist()
    assert "rejected" not in res.table.columns


# --------------------------------------------------------------------------- decisions
def _results_with_scores(n=300, seed=0):
    rng = np.random.default_rng(seed)
    ent = rng.random(n)
    table = pd.DataFrame(
        {
            "x": np.arange(n) * 224,
            "y": 0,
            "plane": 0,
            "size": 224,
            "prediction": pd.Categorical(rng.choice(["tumor", "stroma"], n)),
            "entropy": ent,
        }
    )
    wrong = rng.random(n) < 0.3 * ent**2
    meta = {"model": {"hash": "ab" * 32, "classes": ["tumor", "stroma"], "id": "m"}}
    return _Results(table, meta), wrong


def _decisions_for(res, wrong, path):
    recs = []
    for row, w in zip(res.table.itertuples(), wrong, strict=True):
        other = "stroma" if row.prediction == "tumor" else "tumor"
        recs.append(
            decision_record(
                x=row.x,
                y=row.y,
                plane=row.plane,
                size=row.size,
                prediction=str(row.prediction),
                decision="relabel" if w else "accept",
                label=other if w else None,
                reviewer="jdoe",
            )
        )
    return write_decisions(path, recs)


def test_decisions_round_trip_last_line_wins(tmp_path):
    p = tmp_path / "decisions.jsonl"
    rec = decision_record(x=0, y=0, size=224, prediction="tumor", decision="unsure", reviewer="a")
    write_decisions(p, [rec])
    append_decision(p, {**rec, "decision": "relabel", "label": "stroma"})
    df = read_decisions(p)
    assert len(df) == 1 and df.loc[0, "decision"] == "relabel" and df.loc[0, "label"] == "stroma"
    assert len(p.read_text().splitlines()) == 2
    p.write_text(p.read_text() + '{"x": 1}\n')
    with pytest.raises(CalibrationError, match=r"decisions.jsonl:3: missing key"):
        read_decisions(p)
    with pytest.raises(CalibrationError, match="needs a label"):
        decision_record(x=0, y=0, size=1, prediction="a", decision="relabel")


def test_calibrate_from_reviewer_decisions(tmp_path):
    res, wrong = _results_with_scores()
    path = _decisions_for(res, wrong, tmp_path / "decisions.jsonl")
    # artefacts are left out
    append_decision(
        path,
        decision_record(
            x=0, y=0, size=224, prediction="tumor", decision="artefact", reviewer="jdoe"
        ),
    )
    cal = calibrate(None, (res, path), target_coverage=0.8, score="entropy")
    assert cal.n == len(res.table) - 1
    assert cal.model_hash == "ab" * 32
    direct = calibrate_scores(res.table["entropy"].to_numpy()[1:], ~wrong[1:], target_coverage=0.8)
    assert cal.threshold == direct.threshold
    assert cal.risk == pytest.approx(direct.risk)
    n_wrong = int(wrong[1:].sum())
    assert cal.info["decisions"] == {"accept": len(wrong) - 1 - n_wrong, "relabel": n_wrong}


def test_decisions_unknown_class_and_missing_tile(tmp_path):
    res, wrong = _results_with_scores(100)
    path = tmp_path / "d.jsonl"
    _decisions_for(res, wrong, path)
    append_decision(
        path,
        decision_record(
            x=224,
            y=0,
            size=224,
            prediction="tumor",
            decision="relabel",
            label="necrosis",
            reviewer="a",
        ),
    )
    with pytest.raises(CalibrationError, match=r"\['necrosis'\] are not classes"):
        calibrate(None, (res, path), target_coverage=0.8)
    _decisions_for(res, wrong, path)
    append_decision(
        path,
        decision_record(
            x=999999, y=5, size=224, prediction="tumor", decision="accept", reviewer="a"
        ),
    )
    with pytest.raises(CalibrationError, match=r"1 reviewed tile\(s\) not found.*999999"):
        calibrate(None, (res, path), target_coverage=0.8)
