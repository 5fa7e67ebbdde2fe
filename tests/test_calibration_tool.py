"""ThresholdSession / CalibrationData (the calibrate widget's logic) and layers → GeoJSON."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from tileuq.calibration_data import CalibrationData
from tileuq.calibration_tool import ThresholdSession
from tileuq.errors import CalibrationError
from tileuq.layers import from_results
from tileuq.layers.geojson import layers_to_geojson
from tileuq.layers.synthetic import synthetic_results
from tileuq.review import DecisionLog, decision_for_tile
from tileuq.uncertainty import calibrate, calibrate_scores


@pytest.fixture(scope="module")
def res():
    return synthetic_results(3000, seed=21)


def _data(res, seed=0):
    t = res.table
    rng = np.random.default_rng(seed)
    correct = rng.random(len(t)) > np.clip(t["entropy"].to_numpy() - 0.3, 0, 1)
    return CalibrationData({s: t[s].to_numpy() for s in res.score_names}, correct, "test")


def test_targets_use_calibrate_scores_on_the_data(res):
    data = _data(synthetic_results(2000, seed=22))
    tool = ThresholdSession(res, data=data)
    cal = tool.calibrate("entropy", "risk", target_risk=0.1, delta=0.05)
    want = calibrate_scores(data.scores["entropy"], data.correct, score_name="entropy",
                            target_risk=0.1, delta=0.05)  # fmt: skip
    assert cal.threshold == want.threshold and cal.risk_bound == want.risk_bound
    assert cal.model_hash == res.meta["model"]["hash"]
    cov = tool.calibrate("entropy", "coverage", target_coverage=0.9)
    assert cov.threshold == calibrate_scores(data.scores["entropy"], score_name="entropy",
                                             target_coverage=0.9).threshold  # fmt: skip
    rc = tool.risk_coverage("entropy")
    assert rc["point"][0] == pytest.approx(cov.coverage)
    assert np.all(np.diff(rc["coverage"]) > 0)


def test_without_labels_risk_is_refused_and_coverage_says_slide_only(res):
    tool = ThresholdSession(res)
    with pytest.raises(CalibrationError, match="labelled"):
        tool.calibrate("entropy", "risk", target_risk=0.1)
    cal = tool.calibrate("entropy", "coverage", target_coverage=0.8)
    assert "this slide" in cal.guarantee
    assert tool.slide_coverage() >= 0.8 - 0.05


def test_manual_threshold_keeps_other_rules_and_says_no_guarantee(res):
    data = _data(synthetic_results(2000, seed=23))
    base = calibrate_scores(
        {"entropy": data.scores["entropy"], "variance": data.scores["variance"]},
        data.correct, target_coverage=0.85,
    )  # fmt: skip
    tool = ThresholdSession(res, base, data)
    cal = tool.calibrate("entropy", "manual", threshold=0.5)
    assert cal.thresholds == {"entropy": 0.5, "variance": base.thresholds["variance"]}
    assert cal.method == "manual" and "no statistical guarantee" in cal.guarantee
    rejected, _ = cal.decide(data.scores)
    assert cal.coverage == pytest.approx(1 - rejected.mean())
    assert cal.risk == pytest.approx((~data.correct[~rejected]).mean())
    numbers, shift = tool.summary_text()
    assert "of tiles accepted" in numbers and "no statistical guarantee" in numbers
    assert "shift" in shift.lower()
    # a score no rule uses: a single new rule
    other = tool.calibrate("margin", "manual", threshold=0.7)
    assert list(other.thresholds) == ["margin"]


def test_decisions_data_agree_with_calibrate_from_decisions(res, tmp_path):
    log = DecisionLog(tmp_path)
    classes = res.classes
    for i in range(400):
        pred = str(res.table["prediction"].iloc[i])
        if i % 7 == 0:
            wrong = next(c for c in classes if c != pred)
            log.append(decision_for_tile(res, i, "relabel", label=wrong))
        elif i % 11 == 0:
            log.append(decision_for_tile(res, i, "unsure"))
        else:
            log.append(decision_for_tile(res, i, "accept"))
    data = CalibrationData.from_decisions(res, log.load(), str(log.path))
    assert len(data) == 400 - len([i for i in range(400) if i % 11 == 0 and i % 7])
    assert (~data.correct).sum() == len(range(0, 400, 7))
    tool = ThresholdSession(res, data=data)
    mine = tool.calibrate("entropy", "coverage", target_coverage=0.8)
    theirs = calibrate(None, (res, log.path), score="entropy", target_coverage=0.8)
    assert mine.threshold == theirs.threshold


def test_layers_to_geojson_places_cells_in_level0(tmp_path):
    res = synthetic_results(300, size=400, stride=300, origin=(50, 20), seed=3)
    layers = from_results(res)
    fc = layers_to_geojson(layers)
    classes = [f for f in fc["features"] if f["properties"]["name"].startswith("classes")]
    area = sum(shapely.geometry.shape(f["geometry"]).area for f in classes)
    assert area == pytest.approx(len(res.table) * 300 * 300)  # cells = stride squares
    # a cell is the stride square centred on its tile
    t = res.table
    x, y = int(t["x"].iloc[0]), int(t["y"].iloc[0])
    centre = shapely.Point(x + 200, y + 200)
    assert any(shapely.geometry.shape(f["geometry"]).contains(centre) for f in classes)
    flagged = [f for f in fc["features"] if f["properties"]["objectType"] == "tile"]
    assert len(flagged) == 200  # the top-200 flagged points, as tile squares
    ring = np.asarray(flagged[0]["geometry"]["coordinates"][0])
    assert np.ptp(ring[:, 0]) == 400


def test_empty_flagged_layer_is_valid(res):
    cal = calibrate_scores(res.table["entropy"].to_numpy(), score_name="entropy",
                           target_coverage=0.9)  # fmt: skip
    import dataclasses

    lenient = dataclasses.replace(
        cal, rules=[dataclasses.replace(cal.rules[0], threshold=1e9)], model_hash=None
    )
    (data, kwargs, kind) = from_results(res, lenient)[-1]
    assert kind == "points" and data.shape == (0, 2)
    assert isinstance(kwargs["border_color"], str)
