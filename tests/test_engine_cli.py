"""``tileuq run``: summary, exit codes, skipping, and kill -9 mid-run then resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import tileuq
from engine_helpers import FAST, saved_model, slim_model
from tileuq.cli import main
from tileuq.engine.flagging import flagged_fraction
from tileuq.uncertainty import calibrate_scores

ARGS = ["--tile-px", "64", "--mpp", "2.0", "--batch-size", "8", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return saved_model(tmp_path_factory.mktemp("model") / "slim-sngp")


def test_cli_runs_reports_and_skips(sample_slide_path, model_dir, tmp_path, capsys) -> None:
    bad = tmp_path / "empty.svs"
    bad.write_bytes(b"")
    out = tmp_path / "out"
    code = main(
        [
            "run",
            str(sample_slide_path),
            str(bad),
            "--model",
            str(model_dir),
            "--out",
            str(out),
            *ARGS,
        ]
    )
    text = capsys.readouterr()
    assert code == 1, "a failed slide must give a non-zero exit code"
    assert "empty.svs: error: SlideError" in text.err
    lines = text.out.splitlines()
    assert lines[0].split() == ["slide", "tiles", "tissue", "mm²", "flagged", "time", "status"]
    row = next(line for line in lines if line.startswith("CMU-1-Small-Region.svs"))
    res = tileuq.TileResults.load(out / "CMU-1-Small-Region")
    assert row.split()[1] == str(len(res)) and row.split()[-1] == "complete"
    assert row.split()[3] == "n/a"  # an uncalibrated model flags nothing
    assert float(row.split()[2]) == pytest.approx(res.meta["summary"]["tissue_area_mm2"], abs=0.01)
    assert "1 of 2 slides failed" in text.out
    assert (out / "empty" / "error.txt").exists() and (
        out / "CMU-1-Small-Region" / "overview.png"
    ).exists()
    # again, only the good slide: skipped, exit 0, results untouched
    before = (out / "CMU-1-Small-Region" / "tiles.parquet").stat().st_mtime_ns
    assert (
        main(["run", str(sample_slide_path), "--model", str(model_dir), "--out", str(out), *ARGS])
        == 0
    )
    assert "skipped" in capsys.readouterr().out
    assert (out / "CMU-1-Small-Region" / "tiles.parquet").stat().st_mtime_ns == before


def test_cli_bad_model_and_unwritable_out(sample_slide_path, tmp_path, capsys) -> None:
    assert (
        main(
            [
                "run",
                str(sample_slide_path),
                "--model",
                str(tmp_path / "nope"),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 1
    )
    assert "tileuq run: error:" in capsys.readouterr().err
    (tmp_path / "f").write_text("x")
    assert (
        main(["run", str(sample_slide_path), "--model", "demo", "--out", str(tmp_path / "f" / "o")])
        == 1
    )
    assert "not writable" in capsys.readouterr().err


def _finished_parts(parts: Path) -> list[Path]:
    return [p for p in parts.iterdir() if p.suffix == ".npz" and not p.name.startswith(".")]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*the model was trained at")
def test_kill_9_then_resume_gives_the_identical_table(
    sample_slide_path, model_dir, tmp_path
) -> None:
    args = [
        "--tile-px",
        "64",
        "--mpp",
        "1.0",
        "--batch-size",
        "4",
        "--device",
        "cpu",
        "--no-progress",
    ]
    out = tmp_path / "killed"
    code = "import sys; from tileuq.cli import main; sys.exit(main(sys.argv[1:]))"
    cmd = [sys.executable, "-c", code, "run", str(sample_slide_path), "--model", str(model_dir)]
    cmd += ["--out", str(out), "--no-overview", *args]
    parts = out / "CMU-1-Small-Region" / "parts"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if parts.is_dir() and len(_finished_parts(parts)) >= 3:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    assert proc.wait(30) == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "CMU-1-Small-Region" / "run.json").exists()
    finished = _finished_parts(parts)  # (a half-written temporary part may be there too)
    n_done = sum(int(b) - int(a) for a, b in (p.stem[1:].split("-") for p in finished))
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    resumed = tileuq.TileResults.load(out / "CMU-1-Small-Region")
    assert resumed.meta["timings"]["tiles_resumed"] == n_done >= 12
    # an uninterrupted run with the same arguments (same code path as the CLI)
    ref = tmp_path / "ref"
    outcome = tileuq.run_slides(
        [sample_slide_path], str(model_dir), ref, overview=False,
        tile_px=64, mpp=1.0, batch_size="4", device="cpu",
    )[0]  # fmt: skip
    assert outcome.status == "complete" and outcome.n_tiles == len(resumed)
    assert (ref / "CMU-1-Small-Region" / "tiles.parquet").read_bytes() == (
        out / "CMU-1-Small-Region" / "tiles.parquet"
    ).read_bytes()


def test_summary_reports_the_fraction_flagged_by_the_models_calibration(
    sample_slide_path, tmp_path
) -> None:
    model = slim_model("sngp")
    first = tileuq.run_slide(sample_slide_path, model, **FAST)
    # thresholds fitted on this slide's own scores (plumbing only, not a valid calibration)
    cal = calibrate_scores(
        {"entropy": first.table["entropy"].to_numpy()},
        target_coverage=0.7,
        guarantee="marginal",
        model_hash=model.model_hash,
    )
    model.calibration = cal.to_dict()
    outcome = tileuq.run_slides([sample_slide_path], model, tmp_path, overview=False, **FAST)[0]
    expected = float(cal.apply(first).table["rejected"].mean())
    assert outcome.flagged == pytest.approx(expected) and 0 < expected < 1
    res = tileuq.TileResults.load(outcome.folder)
    assert flagged_fraction(res) == pytest.approx(expected)


def test_readme_main_job_with_the_bundled_demo_model(sample_slide_path, tmp_path, capsys) -> None:
    demo = Path(__file__).resolve().parents[1] / "sample_data" / "demo_model"
    if not (demo / "model.json").exists():
        pytest.skip("the demo model is not bundled in this checkout")
    out = tmp_path / "tileuq-out"
    assert (
        main(["run", str(sample_slide_path), "--model", "demo", "--out", str(out), "--no-progress"])
        == 0
    )
    res = tileuq.TileResults.load(out / "CMU-1-Small-Region")
    demo_model = tileuq.load_model(demo)
    assert res.classes == demo_model.classes and res.meta["model"]["hash"] == demo_model.model_hash
    assert res.meta["spec"]["tile_px"] == demo_model.tile_px and len(res) > 0
    png = out / "CMU-1-Small-Region" / "overview.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(png) as im:
        pixels = np.asarray(im.convert("RGB"))
    assert pixels.std() > 20, "overview looks blank"
