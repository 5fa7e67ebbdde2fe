"""tileuq.review: queue order, decision records, the append-only decisions file and crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tileuq.errors import CalibrationError, ResultsError
from tileuq.layers import TileGeometry, decisions_layer
from tileuq.layers.synthetic import synthetic_results
from tileuq.review import (
    DECISION_CODES,
    DecisionLog,
    decided_rows,
    decision_for_tile,
    next_undecided,
    primary_score,
    review_queue,
)
from tileuq.uncertainty import calibrate_scores, read_decisions


@pytest.fixture(scope="module")
def res():
    return synthetic_results(600, seed=7)


def test_queue_orders_rejected_by_score(res):
    t = res.table
    rejected = t["entropy"].to_numpy() > np.quantile(t["entropy"], 0.8)
    q = review_queue(t, score="entropy", rejected=rejected)
    assert set(q) == set(np.flatnonzero(rejected))
    assert np.all(np.diff(t["entropy"].to_numpy()[q]) <= 0)


def test_queue_by_reason_puts_unfamiliar_first(res):
    t = res.table
    reason = np.where(
        t["variance"] > 1.5, "unfamiliar", np.where(t["entropy"] > 0.9, "ambiguous", "")
    )
    q = review_queue(t, score="entropy", rejected=reason != "", reason=reason, order="reason")
    r = reason[q]
    n_unf = (r == "unfamiliar").sum()
    assert n_unf > 0 and (r[:n_unf] == "unfamiliar").all() and (r[n_unf:] == "ambiguous").all()
    assert np.all(np.diff(t["entropy"].to_numpy()[q[:n_unf]]) <= 0)


def test_queue_random_is_a_seeded_sample_of_all_tiles(res):
    t = res.table
    a = review_queue(t, score="entropy", order="random", seed=3)
    assert sorted(a) == list(range(len(t)))
    np.testing.assert_array_equal(a, review_queue(t, score="entropy", order="random", seed=3))
    assert len(review_queue(t, score="entropy", order="random", limit=10)) == 10


def test_queue_nan_scores_come_first_and_bad_args(res):
    t = res.table.copy()
    t.loc[5, "entropy"] = np.nan
    assert review_queue(t, score="entropy")[0] == 5
    with pytest.raises(ResultsError, match="order"):
        review_queue(t, score="entropy", order="alphabetical")
    with pytest.raises(ResultsError, match="nope"):
        review_queue(t, score="nope")


def test_primary_score_prefers_calibration(res):
    assert primary_score(res) == "variance"
    cal = calibrate_scores(res.table["margin"].to_numpy(), score_name="margin",
                           target_coverage=0.8)  # fmt: skip
    assert primary_score(res, cal) == "margin"


def test_decision_record_from_tile(res):
    rec = decision_for_tile(res, 3, "relabel", label="stroma", reviewer="jdoe")
    row = res.table.iloc[3]
    assert (rec["x"], rec["y"], rec["size"]) == (row["x"], row["y"], row["size"])
    assert rec["prediction"] == row["prediction"]
    if row["prediction"] == "stroma":
        assert rec["decision"] == "accept"  # a relabel to the predicted class is an accept
    else:
        assert rec["decision"] == "relabel" and rec["label"] == "stroma"
    assert rec["model_hash"] == res.meta["model"]["hash"] and rec["tile_px"] == 224
    with pytest.raises(CalibrationError, match="not a class"):
        decision_for_tile(res, 3, "relabel", label="bone")
    assert decision_for_tile(res, 4, "accept")["label"] == res.table["prediction"].iloc[4]


def test_log_appends_and_last_decision_wins(res, tmp_path):
    log = DecisionLog(tmp_path)  # a folder: decisions.jsonl inside
    assert log.path == tmp_path / "decisions.jsonl"
    assert log.load().empty
    log.append(decision_for_tile(res, 0, "unsure", reviewer="a"))
    log.append(decision_for_tile(res, 1, "artefact", reviewer="a"))
    log.append(decision_for_tile(res, 0, "accept", reviewer="a"))
    lines = log.path.read_text().splitlines()
    assert len(lines) == 3  # append-only: nothing rewritten
    df = log.load()
    assert len(df) == 2
    assert df.set_index("x").loc[res.table["x"].iloc[0], "decision"] == "accept"
    assert decided_rows(res.table, df) == {0, 1}
    # the calibration module reads the same file
    assert len(read_decisions(log.path)) == 2
    with pytest.raises(CalibrationError):
        log.append({"x": 1, "y": 2})


def test_truncated_last_line_is_set_aside(res, tmp_path):
    log = DecisionLog(tmp_path / "decisions.jsonl")
    log.append(decision_for_tile(res, 0, "accept"))
    log.append(decision_for_tile(res, 1, "accept"))
    with open(log.path, "ab") as f:
        f.write(b'{"x": 12, "y": 3, "pla')  # a crash in the middle of a write
    df = log.load()
    assert len(df) == 2
    assert (tmp_path / "decisions.jsonl.damaged").read_bytes().startswith(b'{"x": 12')
    log.append(decision_for_tile(res, 2, "accept"))  # appends on a fresh line
    assert len(log.load()) == 3


def test_decisions_survive_sigkill(res, tmp_path):
    """A reviewer process killed with SIGKILL mid-session loses no recorded decision."""
    folder = tmp_path / "run"
    res.save(folder)
    script = textwrap.dedent(
        f"""
        import sys, time
        from tileuq.engine.results import TileResults
        from tileuq.review import DecisionLog, decision_for_tile
        res = TileResults.load({str(folder)!r})
        log = DecisionLog({str(folder)!r})
        for i in range(10_000):
            log.append(decision_for_tile(res, i % len(res.table), "accept", reviewer="k"))
            print(i, flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    acknowledged = -1
    deadline = time.monotonic() + 60
    while acknowledged < 20 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acknowledged = int(line)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert acknowledged >= 20, "the child did not get going"
    log = DecisionLog(folder)
    df = log.load()
    n_lines = len(log.path.read_text().splitlines())
    assert n_lines >= acknowledged + 1  # every acknowledged decision is on disk
    assert len(df) == min(n_lines, len(res.table))


def test_next_undecided():
    q = [5, 6, 7, 8]
    assert next_undecided(q, {5, 6}) == 2
    assert next_undecided(q, {8, 7}, start=3, step=-1) == 1
    assert next_undecided(q, {5, 6, 7, 8}, start=2) == 2
    assert next_undecided([], set()) == 0


def test_decisions_layer_colours_decided_tiles(res, tmp_path):
    log = DecisionLog(tmp_path)
    for i, d in [(0, "accept"), (1, "artefact"), (2, "unsure")]:
        log.append(decision_for_tile(res, i, d))
    geo = TileGeometry.from_results(res)
    grid, kwargs, kind = decisions_layer(res.table, log.load(), geo)
    t = res.table
    got = [grid[t["row"].iloc[i], t["col"].iloc[i]] for i in range(4)]
    assert got == [
        DECISION_CODES["accept"],
        DECISION_CODES["artefact"],
        DECISION_CODES["unsure"],
        0,
    ]
    assert kind == "labels" and kwargs["colormap"][DECISION_CODES["accept"]] != "transparent"
