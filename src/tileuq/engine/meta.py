"""What a run's results depend on (fingerprint) and what ``run.json`` records about it."""

from __future__ import annotations

import importlib.metadata
import platform
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tileuq.engine.resume import hash_arrays

if TYPE_CHECKING:
    import torch

    from tileuq.engine.batch import Predictor
    from tileuq.models import TileModel
    from tileuq.slide import Slide
    from tileuq.tiling import TileGrid

#: relative difference between the model's and the tiles'/slide's µm/px that triggers a warning
MPP_TOLERANCE = 0.15

_PACKAGES = (
    "tileuq",
    "torch",
    "numpy",
    "pandas",
    "pyarrow",
    "openslide-python",
    "openslide-bin",
    "tifffile",
    "imagecodecs",
    "Pillow",
)


def versions() -> dict[str, str | None]:
    """Versions of Python and the packages a result depends on."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def model_info(model: TileModel) -> dict[str, Any]:
    """Return the ``model`` section of ``run.json``."""
    manifest = getattr(model, "manifest", None) or {}
    return {
        "id": getattr(model, "model_id", None),
        "hash": getattr(model, "model_hash", None),
        "method": getattr(model, "method", None),
        "classes": list(model.classes),
        "colors": list(getattr(model, "colors", None) or []),
        "tile_px": getattr(model, "tile_px", None),
        "mpp": getattr(model, "mpp", None),
        "score_names": list(model.score_names),
        "calibration": manifest.get("calibration"),
    }


def check_mpp(slide: Slide, model: TileModel, tile_mpp: float | None, tile_px: int) -> None:
    """Warn (with the numbers) when tiles will not look like what the model was trained on."""
    model_mpp = getattr(model, "mpp", None)
    name = slide.name
    if model_mpp and tile_mpp and _rel(model_mpp, tile_mpp) > MPP_TOLERANCE:
        warnings.warn(
            f"{name}: tiles at {tile_mpp:.4g} µm/px but the model was trained at "
            f"{model_mpp:.4g} µm/px ({_rel(model_mpp, tile_mpp):.0%} apart, tolerance "
            f"{MPP_TOLERANCE:.0%}); predictions may be unreliable",
            UserWarning,
            stacklevel=4,
        )
    if slide.mpp is not None and tile_mpp:
        slide_mpp = (slide.mpp[0] + slide.mpp[1]) / 2
        if slide_mpp > tile_mpp * (1 + MPP_TOLERANCE):
            warnings.warn(
                f"{name}: the slide's resolution {slide_mpp:.4g} µm/px is coarser than the "
                f"{tile_mpp:.4g} µm/px the tiles need, so tiles are upsampled "
                f"({slide_mpp / tile_mpp:.2f}x)",
                UserWarning,
                stacklevel=4,
            )
    model_px = getattr(model, "tile_px", None)
    if model_px and int(model_px) != int(tile_px):
        warnings.warn(
            f"{name}: tiles of {tile_px} px but the model was trained on {model_px} px tiles",
            UserWarning,
            stacklevel=4,
        )


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b))


def spec_info(grids: Sequence[TileGrid], planes: Sequence[int]) -> dict[str, Any]:
    """Return the ``spec`` section of ``run.json`` (geometry shared by every plane's grid)."""
    g = grids[0]
    spec = g.spec
    return {
        "tile_px": spec.tile_px,
        "mpp": g.mpp,
        "requested_mpp": spec.mpp,
        "tile_um": spec.tile_um,
        "overlap": spec.overlap,
        "min_tissue": spec.min_tissue,
        "include_partial": spec.include_partial,
        "planes": list(planes),
        "slide_mpp": g.slide_mpp,
        "level": g.level,
        "level_downsample": g.level_downsample,
        "read_size": g.read_size,
        "tile_size_level0": g.tile_size_level0,
        "stride_level0": g.stride_level0,
        "grid_shape": list(g.grid_shape),
        "origin": [0, 0],
        "n_tiles": int(sum(len(x) for x in grids)),
    }


def quick_fingerprint(slide_hash: str, model: TileModel, request: dict[str, Any]) -> dict[str, Any]:
    """Return the fingerprint part known before tiling: slide, model and arguments."""
    return {
        "slide": {"header_hash": slide_hash},
        "model": {
            "hash": getattr(model, "model_hash", None),
            "method": getattr(model, "method", None),
            "hyperparameters": getattr(model, "hyperparameters", None),
            "classes": list(model.classes),
        },
        "request": request,
    }


def fingerprint(
    quick: dict[str, Any], spec: dict[str, Any], grids: Sequence[TileGrid], order: str
) -> dict[str, Any]:
    """Everything the table depends on; a run folder only resumes a run with the same one."""
    grid_hash = hash_arrays(
        *[np.asarray(a) for g in grids for a in (g.coords, g.rows, g.cols, g.tissue)]
    )
    return {
        **quick,
        "spec": {k: v for k, v in spec.items() if k != "n_tiles"},
        "grid": {"hash": grid_hash, "n_tiles": spec["n_tiles"], "order": order},
    }


def tissue_area_mm2(grids: Sequence[TileGrid]) -> float | None:
    """Tissue area covered by the kept tiles in mm² (``None`` when the mpp is unknown)."""
    areas = [g.tissue_area_um2 for g in grids]
    if any(a is None for a in areas):
        return None
    return float(sum(a for a in areas if a is not None)) / 1e6


def geometry(grids: list[TileGrid], planes: list[int]) -> dict[str, np.ndarray]:
    """Return the per-tile geometry columns (x, y, size, row, col, plane, tissue) of all planes."""

    def cat(f: Callable[[TileGrid], np.ndarray]) -> np.ndarray:
        return np.concatenate([f(g) for g in grids]) if grids else np.empty(0)

    return {
        "x": cat(lambda g: g.coords[:, 0]),
        "y": cat(lambda g: g.coords[:, 1]),
        "size": cat(lambda g: np.full(len(g), g.tile_size_level0)),
        "row": cat(lambda g: g.rows),
        "col": cat(lambda g: g.cols),
        "plane": np.concatenate([np.full(len(g), p) for g, p in zip(grids, planes, strict=True)]),
        "tissue": cat(lambda g: g.tissue),
    }


def device_info(
    dev: torch.device, predictor: Predictor, reader_threads: int, compiled: bool
) -> dict[str, Any]:
    """Return the ``device`` section of ``run.json``."""
    import torch

    if dev.type == "cuda":
        name = str(torch.cuda.get_device_name(dev))
    else:
        name = platform.processor() or platform.machine()
    return {
        "type": dev.type,
        "name": name,
        "precision": predictor.precision,
        "batch_size": predictor.batch_size,
        "final_micro_batch": predictor.micro,
        "oom_backoffs": predictor.backoffs,
        "reader_threads": reader_threads,
        "torch_threads": int(torch.get_num_threads()),
        "compile": bool(compiled),
    }
