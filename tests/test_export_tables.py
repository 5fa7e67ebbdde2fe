"""CSV and Parquet export of the results table with the calibration columns."""

from __future__ import annotations

import pandas as pd
import pytest

from tileuq.engine.results import TileResults
from tileuq.errors import ResultsError
from tileuq.export.tables import export_table, read_table, table_for_export


@pytest.fixture(scope="module")
def expected(export_data) -> pd.DataFrame:
    return table_for_export(export_data.results, export_data.calibration)


def test_table_has_calibration_columns(export_data, expected) -> None:
    base = TileResults.load(export_data.results).table
    assert list(expected.columns) == [*base.columns, "rejected", "reason"]
    assert expected["rejected"].dtype == bool
    assert set(expected["reason"]) <= {"", "unfamiliar", "ambiguous"}
    assert (expected["rejected"] == (expected["reason"] != "")).all()
    assert 0 < expected["rejected"].sum() < len(expected)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_round_trip(export_data, expected, tmp_path, suffix) -> None:
    path = export_table(
        export_data.results, tmp_path / f"t{suffix}", calibration=export_data.calibration
    )
    back = read_table(path)
    assert list(back.columns) == list(expected.columns)
    want = expected.assign(prediction=expected["prediction"].astype(str))
    got = back.assign(prediction=back["prediction"].astype(str))
    pd.testing.assert_frame_equal(got, want, check_dtype=False, rtol=1e-7, atol=0)
    assert [p.name for p in tmp_path.iterdir()] == [f"t{suffix}"]  # no temporary file left


def test_without_calibration_keeps_the_run_columns(export_data, tmp_path) -> None:
    path = export_table(export_data.results, tmp_path / "t.csv", calibration=False)
    back = read_table(path)
    assert "rejected" not in back.columns and "reason" not in back.columns
    assert len(back) == len(TileResults.load(export_data.results).table)


def test_bad_format_is_refused(export_data, tmp_path) -> None:
    with pytest.raises(ResultsError, match="unknown table format"):
        export_table(export_data.results, tmp_path / "t.xlsx")
    assert not list(tmp_path.iterdir())
