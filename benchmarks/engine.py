"""Engine benchmarks: pipeline efficiency, reader throughput, memory vs slide size.

Run ``.venv/bin/python benchmarks/engine.py`` (add ``--quick`` for a short run).  Prints a table
and writes ``benchmarks/results/engine.json``.  Every measurement runs in its own subprocess.

1. **Pipeline efficiency**: tiles/s of ``run_slide`` end to end (tissue mask, grid, reader
   threads, model, part files, merge, parquet) ÷ tiles/s of the bare ``model.predict`` on the
   same tiles already decoded in memory, same batch size and torch threads.  Alternated
   ``--reps`` times in one process; the ratio of medians is reported.  Goal ≥ 0.95.
2. **Reader throughput**: the engine's reader (:class:`TileSource` in :class:`TileReader`
   threads) ÷ a naive sequential ``openslide.OpenSlide.read_region`` loop (+ RGB numpy) over
   the same 224-px tiles.  Goal ≥ 2.
3. **Memory**: peak RSS of ``run_slide`` on a large slide ÷ on one with 4x fewer pixels, both
   pyramidal JPEG TIFFs built from the sample slide's real tissue (see ``_bigslide.py``).
   Goal ≤ 1.2.

The slides are built under ``--work`` (default: a temporary folder, removed at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "engine.json"


# --------------------------------------------------------------------------- children
def child_pipeline(cfg: dict) -> dict:
    import torch

    import tileuq
    from tileuq.engine.source import TileSource, processing_order

    torch.set_num_threads(cfg["threads"])
    model = _model(cfg["model"])
    tile_px, mpp = int(model.tile_px), float(model.mpp)
    kw = {"tile_px": tile_px, "mpp": mpp, "batch_size": cfg["batch"], "device": "cpu"}
    with tileuq.open_slide(cfg["slide"]) as slide:
        grid = tileuq.tile_grid(slide, tile_px=tile_px, mpp=mpp)
        src = TileSource(slide, [grid])
        tiles = src.read(processing_order([grid]))
        src.close()
    n = len(tiles)
    model.predict(tiles[: cfg["batch"]])  # warm-up
    bare, e2e, steady, bare_cpu, e2e_cpu = [], [], [], [], []
    no_tissue: list[float] = []
    tissue_s: list[float] = []

    def run_bare() -> None:
        t, c = time.perf_counter(), time.process_time()
        for a in range(0, n, cfg["batch"]):
            model.predict(tiles[a : a + cfg["batch"]])
        bare.append(n / (time.perf_counter() - t))
        bare_cpu.append(n / (time.process_time() - c))

    def run_e2e(rep: int) -> None:
        out = Path(cfg["work"]) / f"e2e-{cfg['model']}-{rep}"
        shutil.rmtree(out, ignore_errors=True)
        t, c = time.perf_counter(), time.process_time()
        res = tileuq.run_slide(cfg["slide"], model, out=out, workers=cfg["readers"], **kw)
        e2e.append(n / (time.perf_counter() - t))
        e2e_cpu.append(n / (time.process_time() - c))
        steady.append(n / res.meta["timings"]["inference_s"])
        no_tissue.append(n / (res.meta["timings"]["total_s"] - res.meta["timings"]["tissue_s"]))
        tissue_s.append(res.meta["timings"]["tissue_s"])
        shutil.rmtree(out)
        assert len(res) == n

    for rep in range(cfg["reps"]):  # alternate which goes first
        if rep % 2:
            run_e2e(rep)
            run_bare()
        else:
            run_bare()
            run_e2e(rep)
    med = statistics.median
    return {
        "model": model.model_id,
        "tile_px": tile_px,
        "mpp": mpp,
        "tiles": n,
        "bare_tiles_per_s": bare,
        "e2e_tiles_per_s": e2e,
        "inference_stage_tiles_per_s": steady,
        "bare_tiles_per_cpu_s": bare_cpu,
        "e2e_tiles_per_cpu_s": e2e_cpu,
        "ratio": med(e2e) / med(bare),
        "ratio_per_rep": [a / b for a, b in zip(e2e, bare, strict=True)],
        "ratio_inference_stage": med(steady) / med(bare),
        "ratio_without_tissue_mask": med(no_tissue) / med(bare),
        "tissue_mask_s": tissue_s,
        "ratio_cpu_time": med(e2e_cpu) / med(bare_cpu),
    }


def child_reader(cfg: dict) -> dict:
    import numpy as np
    import openslide

    import tileuq
    from tileuq.engine.reader import TileReader, plan_batches
    from tileuq.engine.source import TileSource, processing_order

    with tileuq.open_slide(cfg["slide"]) as slide:
        grid = tileuq.tile_grid(slide, tile_px=224, mpp=0.5, min_tissue=cfg["min_tissue"])
    assert grid.level == 0 and grid.read_size == 224, grid
    n = len(grid)
    coords = [(int(x), int(y)) for x, y in grid.coords]
    out: dict = {"tiles": n}
    for _ in range(cfg["reps"]):
        osr = openslide.OpenSlide(cfg["slide"])  # fresh handle: cold tile cache
        t = time.perf_counter()
        for xy in coords:
            np.asarray(osr.read_region(xy, 0, (224, 224)).convert("RGB"))
        out.setdefault("naive", []).append(n / (time.perf_counter() - t))
        osr.close()
        for fast in (True, False):
            with tileuq.open_slide(cfg["slide"]) as slide:
                src = TileSource(slide, [grid], fast=fast)
                order = processing_order([grid])
                batches = [(a, b, order[a:b]) for a, b, _ in plan_batches([0, n], 32, [])]
                reader = TileReader(
                    lambda s=src: s.read, batches, (224, 224), threads=cfg["readers"]
                )
                t = time.perf_counter()
                for _ in reader:
                    pass
                key = f"engine_{src.kind}_{'blocks' if src.blocks else 'tiles'}"
                out.setdefault(key, []).append(n / (time.perf_counter() - t))
                src.close()
    med = {k: statistics.median(v) for k, v in out.items() if isinstance(v, list)}
    out["ratio"] = (
        med["engine_tifffile_blocks"] / med["naive"] if "engine_tifffile_blocks" in med else None
    )
    out["ratio_openslide_path"] = med.get("engine_slide_tiles", 0) / med["naive"]
    return out


def child_rss(cfg: dict) -> dict:
    import resource
    import threading

    import psutil
    import torch

    import tileuq

    def peak_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    torch.set_num_threads(cfg["threads"])
    model = _model("slim-det", tile_px=64, mpp=2.0)
    proc = psutil.Process()
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:  # RSS during the inference stage, every 20 ms
        while not stop.wait(0.02):
            samples.append(proc.memory_info().rss / 2**20)

    marks = {"before_run": peak_mb()}
    sampler = threading.Thread(target=sample, daemon=True)
    out = Path(cfg["work"]) / "rss-out"
    t = time.perf_counter()
    for item in tileuq.iter_run_slide(
        cfg["slide"], model, out=out, device="cpu", batch_size=64, workers=cfg["readers"]
    ):
        stage = getattr(item, "stage", None)
        if stage == "inference" and not sampler.is_alive() and not stop.is_set():
            marks["peak_after_tissue_mask"] = peak_mb()
            sampler.start()
        elif stage == "merge":
            stop.set()
        res = item
    dt = time.perf_counter() - t
    shutil.rmtree(out)
    return {
        "slide_side": cfg["side"],
        "tiles": len(res),
        "lattice": list(res.grid_shape),
        "seconds": dt,
        "peak_rss_mb": peak_mb(),
        "inference_stage_max_rss_mb": max(samples) if samples else None,
        **{f"{k}_mb": v for k, v in marks.items()},
        "table_mb": res.table.memory_usage(deep=True).sum() / 2**20,
    }


def _model(name: str, tile_px: int = 224, mpp: float = 0.5):
    import tileuq

    demo = HERE.parent / "sample_data" / "demo_model"
    if name == "demo" and demo.exists():
        return tileuq.load_model(demo)
    backbone, method = {
        "resnet18": ("resnet18", "sngp"),
        "demo": ("resnet_slim", "sngp"),  # stand-in until the demo model ships
        "slim-det": ("resnet_slim", "deterministic"),
    }[name]
    return tileuq.build_model(method, backbone=backbone, num_classes=5, tile_px=tile_px, mpp=mpp)


CHILDREN = {"pipeline": child_pipeline, "reader": child_reader, "rss": child_rss}


def run_child(kind: str, cfg: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, json.dumps(cfg)],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- main
def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small slides, one repetition")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="torch threads")
    p.add_argument("--readers", type=int, default=2, help="reader threads")
    p.add_argument("--large-side", type=int, default=98304, help="side of the large slide (px)")
    p.add_argument("--skip", nargs="*", default=[], choices=["pipeline", "reader", "rss"])
    p.add_argument("--work", type=Path, help="where slides are built (kept if given)")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child[0]](json.loads(args.child[1]))))
        return 0
    sys.path.insert(0, str(HERE))
    from _bigslide import write_big_slide

    work = args.work or Path(tempfile.mkdtemp(prefix="tileuq-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    reps = 1 if args.quick else args.reps
    side_mid = 4096 if args.quick else 8192
    large = 12288 if args.quick else args.large_side
    report: dict = {
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "load_avg_at_start": os.getloadavg()},
        "settings": {"torch_threads": args.threads, "reader_threads": args.readers, "reps": reps},
    }  # fmt: skip
    try:
        mid = work / f"mosaic-{side_mid}.tif"
        if not mid.exists():
            write_big_slide(mid, side_mid)
        common = {"threads": args.threads, "readers": args.readers, "reps": reps, "work": str(work)}
        if "pipeline" not in args.skip:
            # the demo model is ~50x faster than ResNet-18 and its tiles cover 16x more
            # slide: on the large slide the fixed costs (tissue mask ~1 s) weigh the same
            big = work / f"mosaic-{large}.tif"
            if not big.exists():
                write_big_slide(big, large)
            for name, slide in (("resnet18", mid), ("demo", big)):
                cfg = {**common, "slide": str(slide), "model": name, "batch": 32}
                report[f"pipeline_{name}"] = r = run_child("pipeline", cfg)
                print(f"[1] {name}: e2e/bare = {r['ratio']:.3f} ({r['tiles']} tiles)", flush=True)
        if "reader" not in args.skip:
            sample = HERE.parent / "sample_data" / "CMU-1-Small-Region.svs"
            for label, slide, mt in (("mosaic", mid, 0.5), ("sample_svs", sample, 0.0)):
                cfg = {**common, "slide": str(slide), "min_tissue": mt}
                report[f"reader_{label}"] = r = run_child("reader", cfg)
                print(f"[2] reader {label}: engine/naive = {r['ratio']:.2f}", flush=True)
        if "rss" not in args.skip:
            rss = {}
            for side in (large // 2, large):
                path = work / f"mosaic-{side}.tif"
                t = time.perf_counter()
                if not path.exists():
                    write_big_slide(path, side)
                build = time.perf_counter() - t
                rss[side] = r = run_child("rss", {**common, "slide": str(path), "side": side})
                r["build_s"] = build
                r["file_gb"] = path.stat().st_size / 1e9
                print(
                    f"[3] {side}^2: peak RSS {r['peak_rss_mb']:.0f} MB, {r['tiles']} tiles",
                    flush=True,
                )
            small, big = rss[large // 2], rss[large]
            report["rss"] = {
                "small": small,
                "large": big,
                "ratio": big["peak_rss_mb"] / small["peak_rss_mb"],
                "ratio_inference_stage": big["inference_stage_max_rss_mb"]
                / small["inference_stage_max_rss_mb"],
            }
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    report["machine"]["load_avg_at_end"] = os.getloadavg()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    return 0


def print_table(rep: dict) -> None:
    med = statistics.median
    rows = [("measure", "value", "goal")]
    for name in ("resnet18", "demo"):
        r = rep.get(f"pipeline_{name}")
        if r:
            bare, e2e = med(r["bare_tiles_per_s"]), med(r["e2e_tiles_per_s"])
            rows.append(
                (f"[1] {name} e2e ÷ bare ({r['tiles']} tiles)", f"{r['ratio']:.3f}", "≥ 0.95")
            )
            rows.append(("    bare / e2e tiles/s (median)", f"{bare:.1f} / {e2e:.1f}", ""))
            stage = r["ratio_inference_stage"]
            rows.append(("    inference stage only ÷ bare", f"{stage:.3f}", ""))
            tissue = med(r["tissue_mask_s"])
            what = f"    without the tissue mask ({tissue:.1f} s) ÷ bare"
            rows.append((what, f"{r['ratio_without_tissue_mask']:.3f}", ""))
            per_rep = " ".join(f"{x:.2f}" for x in r["ratio_per_rep"])
            rows.append(("    e2e ÷ bare, each repetition", per_rep, ""))
            rows.append(
                ("    e2e ÷ bare in tiles per CPU-second", f"{r['ratio_cpu_time']:.3f}", "")
            )
    for label in ("mosaic", "sample_svs"):
        r = rep.get(f"reader_{label}")
        if r:
            what = f"[2] reader ÷ naive read_region, {label} ({r['tiles']} tiles)"
            rows.append((what, f"{r['ratio']:.2f}", "≥ 2"))
            for k, v in r.items():
                if isinstance(v, list):
                    rows.append((f"    {k} tiles/s (median)", f"{med(v):.0f}", ""))
    r = rep.get("rss")
    if r:
        for k in ("small", "large"):
            s = r[k]
            what = f"[3] {s['slide_side']}² ({s['file_gb']:.1f} GB, {s['tiles']} tiles)"
            rows.append((what, f"{s['peak_rss_mb']:.0f} MB in {s['seconds']:.0f} s", ""))
            after, inf = s["peak_after_tissue_mask_mb"], s["inference_stage_max_rss_mb"]
            rows.append(
                ("    after tissue mask / inference max", f"{after:.0f} / {inf:.0f} MB", "")
            )
        rows.append(("[3] peak RSS large ÷ small (4x pixels)", f"{r['ratio']:.3f}", "≤ 1.2"))
        rows.append(
            ("    inference-stage RSS large ÷ small", f"{r['ratio_inference_stage']:.3f}", "")
        )
    w = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(c.ljust(x) for c, x in zip(row, w, strict=True)))
    m = rep["machine"]
    print(
        f"load average at start {m['load_avg_at_start']}, at end {m['load_avg_at_end']} "
        f"({m['cpus']} CPUs shared with other work: figures are noisy)"
    )


if __name__ == "__main__":
    sys.exit(main())
