"""HTML slide report and batch report: self-contained, with verdict, areas, provenance, warning."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from tileuq.export._common import prepare
from tileuq.export.batch import write_batch_report
from tileuq.export.report import write_report
from tileuq.export.summary import slide_summary
from tileuq.uncertainty.calibration import Calibration
from tileuq.uncertainty.shift import shift_test

EXTERNAL = re.compile(
    r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?(?:https?:)?//""", re.I
)


def _assert_self_contained(html: str) -> None:
    assert html.startswith("<!DOCTYPE html>")
    assert not EXTERNAL.search(html), EXTERNAL.search(html)
    assert "<link" not in html.lower()
    for src in re.findall(r"<img[^>]*\ssrc=\"([^\"]+)\"", html):
        assert src.startswith("data:image/")
        Image.open(__import__("io").BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()


def test_summary_numbers(export_data) -> None:
    s = slide_summary(export_data.results, export_data.calibration)
    res, _ = prepare(export_data.results, export_data.calibration)
    t = res.table
    assert s["n_tiles"] == len(t)
    assert sum(c["tiles"] for c in s["classes"]) == len(t)
    total = sum(c["area_mm2"] for c in s["classes"])
    assert total == pytest.approx(s["tissue_area_mm2"])
    assert total == pytest.approx(res.meta["summary"]["tissue_area_mm2"])  # the run's figure
    assert sum(c["fraction"] for c in s["classes"]) == pytest.approx(1.0)
    w = t["tissue"].to_numpy()
    rej = t["rejected"].to_numpy(bool)
    assert s["rejection"]["fraction"] == pytest.approx(w[rej].sum() / w.sum())
    reasons = s["rejection"]["reasons"]
    assert reasons["unfamiliar"]["tiles"] + reasons["ambiguous"]["tiles"] == rej.sum()
    assert s["shift"]["available"] and not s["shift"]["shifted"]


def test_slide_report_is_self_contained_and_complete(export_data, tmp_path) -> None:
    cal = Calibration.load(export_data.calibration)
    path = write_report(export_data.results, tmp_path / "r.html", calibration=cal)
    html = path.read_text(encoding="utf-8")
    _assert_self_contained(html)
    assert len(re.findall(r"<img ", html)) >= 5  # 3 overlays, colorbar, histogram
    res, _ = prepare(export_data.results, cal)
    s = slide_summary(export_data.results, cal)
    verdict = shift_test(res, cal).verdict
    assert verdict.replace("%", "") and _text(verdict) in html
    assert "class='verdict ok'" in html
    for c in s["classes"]:  # class areas in mm²
        assert f"{c['area_mm2']:.3f}" in html
    assert f"{100 * s['rejection']['fraction']:.1f} %" in html  # fraction of tissue rejected
    for key in (res.meta["model"]["hash"], res.meta["slide"]["header_hash"], cal.created):
        assert key in html  # provenance: hashes and dates
    assert "coverage 0.8 with probability ≥ 0.9" in html  # the calibration target
    assert html.count("Research use only") == 2  # intended-use warning, top and bottom
    assert "human reviewer" in html


def _text(s: str) -> str:
    import html

    return html.escape(s, quote=True)


def test_shifted_slide_raises_the_alarm(export_data, tmp_path) -> None:
    path = write_report(export_data.results, tmp_path / "r.html", calibration=export_data.shifted)
    html = path.read_text(encoding="utf-8")
    assert "class='verdict alarm'" in html
    assert "This slide looks unlike the calibration data" in html


def test_report_without_calibration_or_slide(export_data, tmp_path) -> None:
    path = write_report(
        export_data.results, tmp_path / "r.html", calibration=False, slide=tmp_path / "gone.svs"
    )
    html = path.read_text(encoding="utf-8")
    _assert_self_contained(html)
    assert "Shift alarm not available" in html and "No calibration" in html
    assert "slide not readable" in html  # overlays drawn without the thumbnail, and it says so


def test_default_report_path_is_in_the_results_folder(export_data) -> None:
    path = write_report(export_data.results, calibration=export_data.calibration)
    assert path == export_data.results / "report.html" and path.is_file()


def test_batch_report_lists_every_slide_and_links(export_data) -> None:
    index = write_batch_report(export_data.batch, calibration=export_data.calibration)
    html = index.read_text(encoding="utf-8")
    _assert_self_contained(html)
    assert 'table class="sortable"' in html and "addEventListener('click'" in html
    links = re.findall(r"<a href='([^']+)'>", html)
    assert sorted(links) == ["CMU-1-Small-Region/report.html", "CMU-copy/report.html"]
    for link in links:
        report = index.parent / link
        assert report.is_file()
        _assert_self_contained(report.read_text(encoding="utf-8"))
    assert "CMU-copy.svs" in html and "CMU-1-Small-Region.svs" in html
    assert "broken" in html and "failed" in html and "not an image or slide" in html
    table = pd.read_csv(index.with_name("summary.csv"), keep_default_na=False)
    assert sorted(table["folder"]) == ["CMU-1-Small-Region", "CMU-copy", "broken"]
    assert list(table.set_index("folder").loc[["broken"], "status"]) == ["failed"]


def test_batch_report_refuses_a_folder_without_results(tmp_path) -> None:
    from tileuq.errors import ResultsError

    (tmp_path / "empty").mkdir()
    with pytest.raises(ResultsError, match="no slide results"):
        write_batch_report(tmp_path / "empty")
    with pytest.raises(ResultsError, match="not a folder"):
        write_batch_report(Path(tmp_path / "missing"))
