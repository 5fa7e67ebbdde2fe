"""PNG plots are written atomically and are valid images."""

from __future__ import annotations

import numpy as np
from PIL import Image

from tileuq.metrics import plot_reliability, plot_risk_coverage, plot_score_histograms


def test_plots_write_pngs(tmp_path):
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3) * 0.5, 300)
    y = rng.integers(0, 3, 300)
    ent = -(p * np.log(p + 1e-12)).sum(1)
    ok = p.argmax(1) == y
    files = [
        plot_reliability(p, y, tmp_path / "rel.png", title="m"),
        plot_risk_coverage(
            {"entropy": (ent, ok), "msp": (1 - p.max(1), ok)},
            tmp_path / "rc.png",
            operating_point=(0.8, 0.3),
            target_risk=0.3,
        ),
        plot_score_histograms(
            ent, {"ood": ent + 0.5}, tmp_path / "h.png", score="entropy", threshold=0.9
        ),
    ]
    for f in files:
        with Image.open(f) as im:
            assert im.format == "PNG" and im.size[0] > 300
    assert sorted(x.name for x in tmp_path.iterdir()) == ["h.png", "rc.png", "rel.png"]
