"""Progress objects yielded by the engine's generators (GUI, CLI and tests share them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """Where a slide's run stands.

    Attributes
    ----------
    slide
        Display name of the slide.
    stage
        ``"open"``, ``"tissue"`` (tissue mask and grid), ``"inference"``, ``"merge"``
        (assembling and writing the table), ``"done"`` or ``"skipped"`` (already complete).
    done, total
        Tiles finished (including tiles resumed from an earlier run) and tiles in all.
    tiles_per_s
        Throughput of this run's inference so far (0 before the first batch).
    elapsed_s
        Seconds since the run started.
    plane
        Plane being processed (stacks), else ``None``.
    message
        Optional human-readable detail.
    """

    slide: str
    stage: str
    done: int = 0
    total: int = 0
    tiles_per_s: float = 0.0
    elapsed_s: float = 0.0
    plane: int | None = None
    message: str = ""

    @property
    def fraction(self) -> float:
        """``done / total`` (1.0 when there is nothing to do)."""
        return 1.0 if self.total == 0 else self.done / self.total

    def __str__(self) -> str:
        rate = f", {self.tiles_per_s:.1f} tiles/s" if self.tiles_per_s else ""
        return f"{self.slide}: {self.stage} {self.done}/{self.total}{rate}"


@dataclass(frozen=True)
class SlideOutcome:
    """What happened to one slide of a multi-slide run (:func:`tileuq.run_slides`).

    Attributes
    ----------
    source
        The slide path as given.
    folder
        Its output folder.
    status
        ``"complete"`` (ran now), ``"skipped"`` (already complete) or ``"failed"``.
    n_tiles
        Tiles in the table (0 when failed).
    tissue_area_mm2
        Tissue area covered by the kept tiles, mm² (``None`` without mpp or when failed).
    flagged
        Fraction of tiles flagged by the model's calibration, or ``None`` when the model
        carries no calibration.
    seconds
        Wall time spent on the slide in this run.
    error
        The error message when failed, else ``""``.
    """

    source: str
    folder: str
    status: str
    n_tiles: int = 0
    tissue_area_mm2: float | None = None
    flagged: float | None = None
    seconds: float = 0.0
    error: str = ""

    @property
    def ok(self) -> bool:
        """Whether the slide has complete results."""
        return self.status in {"complete", "skipped"}
