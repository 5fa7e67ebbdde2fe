"""Which score the run's overview (and the default heatmap export) draws, on the demo model."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from PIL import Image

import tileuq
from tileuq.engine.overview import calibrated_threshold, draw_overview, heatmap_score
from tileuq.engine.results import TileResults
from tileuq.export.raster import default_score


@pytest.fixture(scope="module")
def demo_results(sample_slide_path) -> TileResults:
    import torch

    torch.set_num_threads(2)
    model = tileuq.load_model("demo")
    with tileuq.open_slide(sample_slide_path) as slide:
        return tileuq.run_slide(slide, model, device="cpu")


def _without(results: TileResults, *, calibration: bool, scores: tuple[str, ...] = ()):
    meta = copy.deepcopy(results.meta)
    if not calibration:
        meta["model"].pop("calibration", None)
    meta["model"]["score_names"] = [s for s in meta["model"]["score_names"] if s not in scores]
    return TileResults(results.table.drop(columns=list(scores)), meta)


def test_calibrated_model_shows_the_score_that_holds_the_target(demo_results):
    rules = demo_results.meta["model"]["calibration"]["rules"]
    main = next(r for r in rules if r["role"] != "gate")
    # the demo carries entropy (risk) behind a mahalanobis gate: the map shows what decides
    assert heatmap_score(demo_results) == main["score"] == "entropy"
    assert default_score(demo_results) == "entropy"  # export's default follows the overview
    assert calibrated_threshold(demo_results, "entropy") == pytest.approx(main["threshold"])
    gate = next(r for r in rules if r["role"] == "gate")
    assert calibrated_threshold(demo_results, gate["score"]) == pytest.approx(gate["threshold"])
    assert calibrated_threshold(demo_results, "variance") is None


def test_uncalibrated_model_prefers_a_carried_distance_then_its_own_score(demo_results):
    plain = _without(demo_results, calibration=False)
    assert heatmap_score(plain) == "mahalanobis"
    assert calibrated_threshold(plain, "entropy") is None
    assert heatmap_score(_without(demo_results, calibration=False, scores=("mahalanobis",))) == (
        "variance"
    )


def test_overview_draws_with_and_without_calibration(demo_results, sample_slide_path, tmp_path):
    with tileuq.open_slide(sample_slide_path) as slide:
        thumb = slide.thumbnail(512)
    for name, res in [("cal", demo_results), ("plain", _without(demo_results, calibration=False))]:
        path = draw_overview(res, thumb, tmp_path / f"{name}.png")

        pixels = np.asarray(Image.open(path).convert("RGB"))
        assert pixels.std() > 20, f"{name} overview looks blank"
