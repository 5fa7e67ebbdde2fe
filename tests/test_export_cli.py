"""``tileuq export`` and ``tileuq report`` end to end on real results."""

from __future__ import annotations

import json

import pytest

from tileuq.cli import main


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_commands_are_registered(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "export" in out and "report" in out


def test_export_geojson_merge(export_data, tmp_path, capsys) -> None:
    out = tmp_path / "regions.geojson"
    rc, stdout, _ = _run(
        capsys, "export", export_data.results, "--to", "geojson", "--merge",
        "--calibration", export_data.calibration, "--out", out,
    )  # fmt: skip
    assert rc == 0 and str(out) in stdout
    fc = json.loads(out.read_text())
    names = {f["properties"]["classification"]["name"] for f in fc["features"]}
    assert "Rejected (unfamiliar)" in names or "Rejected (ambiguous)" in names
    assert f"{len(fc['features'])} features from" in stdout


def test_export_defaults_go_to_the_export_folder(export_data, capsys) -> None:
    rc, stdout, _ = _run(capsys, "export", export_data.results, "--to", "csv")
    assert rc == 0 and (export_data.results / "export" / "tiles.csv").is_file()
    assert "no calibration" in stdout  # the run recorded none: said so


def test_export_parquet_refuses_to_overwrite_the_run_table(export_data, capsys) -> None:
    rc, _, err = _run(
        capsys, "export", export_data.results, "--to", "parquet",
        "--out", export_data.results / "tiles.parquet",
    )  # fmt: skip
    assert rc == 1 and "overwrite" in err


def test_export_heatmaps_all_scores_both_formats(export_data, tmp_path, capsys) -> None:
    rc, stdout, _ = _run(
        capsys, "export", export_data.results, "--to", "heatmap", "--score", "all",
        "--calibration", export_data.calibration, "--downsample", "16", "--out", tmp_path,
    )  # fmt: skip
    assert rc == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    for what in ("class", "rejected", "variance", "entropy", "msp"):
        assert f"heatmap-{what}.png" in names and f"heatmap-{what}.ome.tif" in names
    assert len(stdout.strip().splitlines()) == len(names)


def test_export_single_png_and_report(export_data, tmp_path, capsys) -> None:
    png = tmp_path / "v.png"
    rc, _, _ = _run(capsys, "export", export_data.results, "--to", "heatmap", "--out", png)
    assert rc == 0 and png.is_file() and len(list(tmp_path.iterdir())) == 1
    html = tmp_path / "r.html"
    rc, _, _ = _run(
        capsys, "export", export_data.results, "--to", "report",
        "--calibration", export_data.calibration, "--out", html,
    )  # fmt: skip
    assert rc == 0 and "Shift alarm" in html.read_text(encoding="utf-8")


def test_export_decisions(export_data, tmp_path, capsys) -> None:
    out = tmp_path / "d.geojson"
    rc, stdout, _ = _run(capsys, "export", export_data.results, "--to", "decisions", "--out", out)
    assert rc == 0 and "4 features from 4 decisions" in stdout
    rc, _, err = _run(
        capsys, "export", export_data.results, "--to", "decisions",
        "--decisions", tmp_path / "none.jsonl",
    )  # fmt: skip
    assert rc == 1 and "none.jsonl" in err


def test_export_refuses_a_folder_that_is_not_results(export_data, tmp_path, capsys) -> None:
    rc, _, err = _run(capsys, "export", tmp_path, "--to", "csv")
    assert rc == 1 and str(tmp_path) in err and "run.json" in err
    rc, _, err = _run(capsys, "export", export_data.batch, "--to", "csv")
    assert rc == 1 and "batch folder" in err and "tileuq report" in err


def test_report_over_a_batch(export_data, tmp_path, capsys) -> None:
    index = tmp_path / "index.html"
    rc, stdout, _ = _run(
        capsys, "report", export_data.batch, "--calibration", export_data.calibration,
        "--out", index, "--no-slide-reports",
    )  # fmt: skip
    assert rc == 0 and str(index) in stdout
    html = index.read_text(encoding="utf-8")
    assert "CMU-copy.svs" in html and (tmp_path / "summary.csv").is_file()
    rc, _, err = _run(capsys, "report", tmp_path / "missing")
    assert rc == 1 and "not a folder" in err
