"""``tileuq run``: per-tile predictions and uncertainty for every tissue tile of many slides."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``run`` sub-command."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="run a model over every tissue tile of slides (resumable, optionally on Dask)",
        description=(
            "Run a tile model on every tissue tile of each slide and write "
            "<out>/<slide>/tiles.parquet, run.json and overview.png.  Complete slides are "
            "skipped, interrupted ones resume; a slide that fails is reported (error.txt in its "
            "folder) and the others go on.  Exit code 1 when any slide failed."
        ),
    )
    p.add_argument("slides", nargs="+", type=Path, help="slide files or image folders")
    p.add_argument("--model", required=True, help="model folder or file, hf://repo/name, or 'demo'")
    p.add_argument(
        "--out", type=Path, required=True, help="output folder (one subfolder per slide)"
    )
    g = p.add_argument_group("tiles (default: the model's tile size and resolution)")
    g.add_argument("--tile-px", type=int, help="tile side in pixels")
    res = g.add_mutually_exclusive_group()
    res.add_argument("--mpp", type=float, help="tile resolution in µm per pixel")
    res.add_argument("--tile-um", type=float, help="tile side in µm (instead of --mpp)")
    g.add_argument("--overlap", type=int, default=0, help="overlap in tile pixels (0)")
    g.add_argument("--min-tissue", type=float, default=0.5, help="minimum tissue fraction (0.5)")
    g.add_argument("--plane", type=int, help="plane of image stacks (default: every plane)")
    g.add_argument("--slide-mpp", type=float, help="resolution of slides that do not record one")
    c = p.add_argument_group("compute")
    c.add_argument("--batch-size", default="auto", help="tiles per model call, or 'auto' (auto)")
    c.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ... (auto)")
    c.add_argument("--workers", type=int, help="reader threads per slide (default: per core)")
    c.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    c.add_argument("--amp", default="auto", help="CUDA autocast: auto, bf16, fp16, off (auto)")
    c.add_argument("--compile", action="store_true", help="torch.compile the model")
    d = p.add_argument_group("many slides on Dask distributed")
    where = d.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help="existing scheduler, tcp://host:port")
    where.add_argument("--cluster", choices=["local"], help="start a LocalCluster for the run")
    d.add_argument(
        "--cluster-workers", type=int, default=2, help="worker processes of --cluster local (2)"
    )
    o = p.add_argument_group("output")
    o.add_argument("--overwrite", action="store_true", help="replace results of other arguments")
    o.add_argument("--no-overview", action="store_true", help="do not draw overview.png")
    o.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def run(args: argparse.Namespace) -> int:
    """Run every slide; print a summary table; return 1 when any slide failed."""
    from tileuq.bundled import resolve_model_source
    from tileuq.engine.distributed import iter_run_slides
    from tileuq.engine.progress import Progress, SlideOutcome
    from tileuq.engine.resume import check_writable

    check_writable(args.out)  # before loading anything
    kwargs: dict[str, Any] = {
        "tile_px": args.tile_px,
        "mpp": args.mpp,
        "tile_um": args.tile_um,
        "overlap": args.overlap,
        "min_tissue": args.min_tissue,
        "plane": args.plane,
        "slide_mpp": args.slide_mpp,
        "batch_size": args.batch_size,
        "device": args.device,
        "workers": args.workers,
        "threads": args.threads,
        "amp": False if str(args.amp).lower() in {"off", "false", "no"} else args.amp,
        "compile": args.compile,
        "overwrite": args.overwrite,
    }
    model: Any = resolve_model_source(args.model)
    with _client(args) as client:
        if client is None:
            from tileuq.engine.distributed import load_cached_model

            model = load_cached_model(model)  # fail early on a bad model
        outcomes: list[SlideOutcome] = []
        bars = _Bars(len(args.slides), disable=args.no_progress)
        try:
            for item in iter_run_slides(
                args.slides, model, args.out, client=client, overview=not args.no_overview, **kwargs
            ):
                if isinstance(item, Progress):
                    bars.progress(item)
                elif isinstance(item, SlideOutcome):
                    bars.slide_done(item)
                    if item.status == "failed":
                        bars.write(f"{item.source}: error: {item.error}")
                elif isinstance(item, list):
                    outcomes = item
        finally:
            bars.close()
    print(summary_table(outcomes))
    return 1 if any(o.status == "failed" for o in outcomes) else 0


@contextlib.contextmanager
def _client(args: argparse.Namespace) -> Iterator[Any]:
    """Yield a Dask client for ``--scheduler`` or ``--cluster local``, else ``None``."""
    if not args.scheduler and not args.cluster:
        yield None
        return
    from distributed import Client, LocalCluster

    if args.scheduler:
        with Client(args.scheduler) as client:
            yield client
        return
    resources = {"GPU": 1} if str(args.device).startswith("cuda") else None
    with (
        LocalCluster(
            n_workers=max(1, args.cluster_workers),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            resources=resources,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


class _Bars:
    """tqdm bars: slides overall, and tiles of the slide being run."""

    def __init__(self, n_slides: int, disable: bool) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self.disable = disable
        self.overall = tqdm(
            total=n_slides, desc="slides", unit="slide", position=0, disable=disable
        )
        self.slide: Any = None
        self.current = ""

    def progress(self, p: Any) -> None:
        if self.disable:
            return
        if p.slide != self.current:
            if self.slide is not None:
                self.slide.close()
            self.current = p.slide
            self.slide = self._tqdm(desc=p.slide[:30], unit="tile", position=1, leave=False)
        if p.total and self.slide.total != p.total:
            self.slide.total = p.total
            self.slide.refresh()
        self.slide.set_postfix_str(p.stage, refresh=False)
        self.slide.update(p.done - self.slide.n)

    def slide_done(self, outcome: Any) -> None:
        self.overall.set_postfix_str(f"{Path(outcome.source).name}: {outcome.status}")
        self.overall.update(1)

    def write(self, msg: str) -> None:
        self._tqdm.write(msg, file=sys.stderr)

    def close(self) -> None:
        if self.slide is not None:
            self.slide.close()
        self.overall.close()


def summary_table(outcomes: list[Any]) -> str:
    """Plain-text table: slide, tiles, tissue area, fraction flagged, time, status."""
    header = ("slide", "tiles", "tissue mm²", "flagged", "time", "status")
    rows = [header]
    for o in outcomes:
        rows.append(
            (
                Path(o.source).name,
                str(o.n_tiles) if o.status != "failed" else "-",
                f"{o.tissue_area_mm2:.2f}" if o.tissue_area_mm2 is not None else "n/a",
                f"{o.flagged:.1%}" if o.flagged is not None else "n/a",
                f"{o.seconds:.1f} s",
                o.status,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        lines.append(
            f"{len(failed)} of {len(outcomes)} slides failed (see error.txt in each folder)"
        )
    return "\n".join(lines)
