"""Tile sets and cached predictions for ``benchmarks/evidence.py``.

In-distribution: the ``train`` / ``calibration`` / ``test`` parts of the fixed split
(``benchmarks/splits/colorectal_split.json``) of
``../shared/data/tiles/colorectal_polyp_flagy_5class``,
read exactly as training read them (``tileuq.models.data.read_image``: centre square, resized to
the model's ``tile_px``).

Out-of-distribution sets (unlabelled):

* near-OOD tiles, each read whole and resized to ``tile_px`` (their field of view differs from
  the model's: see ``NEAR``);
* far-OOD images (``FAR``), single large images cut into crops of the model's field of view
  (``tile_px * mpp`` µm) at an *estimated* resolution per image: crop side
  ``S = fov_um / mpp_est`` px, ``m = ceil((W - S) / (S / 2)) + 1`` positions per axis evenly
  spaced over ``[0, W - S]`` (so at least half-overlapping crops covering the whole image),
  crops with more than half near-black pixels (the fundus mask) dropped, each crop resized to
  ``tile_px``.

Predictions (logits, probabilities, scores, pooled features) are computed once per model and
set and cached as ``.npz`` (keyed by the model hash and a hash of the images).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TILEUQ_SHARED_DATA", REPO.parent / "shared" / "data"))
TILES = SHARED / "tiles"
ID_TILES = TILES / "colorectal_polyp_flagy_5class"
SPLIT = REPO / "benchmarks" / "splits" / "colorectal_split.json"

#: far-OOD images: (file, estimated µm/px, how the estimate was made)
FAR = {
    "far_ihc_dab": (
        "ood/skimage_ihc_DAB_colon.png",
        0.5,
        "IHC (DAB + haematoxylin) colon, 512 px; ~0.5 µm/px estimated from nucleus size "
        "(epithelial nuclei ~10 x 20 px)",
    ),
    "far_fluorescence": (
        "ood/pathml_smalltif_fluorescence.tif",
        1.0,
        "fluorescence nuclei, 480 x 640 uint16 (page 1, scaled to 8 bit by tileuq's decoder); "
        "~1 µm/px estimated from nucleus size (~8-10 px)",
    ),
    "far_retina": (
        "ood/skimage_retina_fundus.jpg",
        1.0,
        "retinal fundus photograph, 1411 px; no microscopic scale exists, native pixels used "
        "as if 1 µm/px (like the colorectal source tiles)",
    ),
}

#: near-OOD tile folders: (folder, what it is, field-of-view note)
NEAR = {
    "near_pcam": (
        "pcam_kaggle_hcd_tbayetird",
        "PCam lymph-node H&E (Camelyon16), 96 px",
        "96 px at ~0.97 µm/px = ~93 µm, resized to the model's 112 px: shown at ~2.4x the "
        "training magnification",
    ),
    "near_nct_crc": (
        "nct_crc_he_100k_iitm_sample",
        "NCT-CRC-HE-100K colorectal H&E, 1 tile of each of 9 tissue classes, 224 px",
        "224 px at 0.5 µm/px = 112 µm, resized to 112 px: ~2x the training magnification",
    ),
    "near_histolab_tissue": (
        "histolab_tissue_detection/tissue",
        "histolab test tiles with tissue (TCGA / CMU slides, organs not recorded, various "
        "pyramid levels, some with pen marks)",
        "mixed levels, mpp not recorded; centre square resized to 112 px",
    ),
}

#: extra set reported on its own, not pooled (blank glass, pen marks)
EXTRA = {
    "extra_histolab_background": (
        "histolab_tissue_detection/background",
        "histolab background tiles (blank glass, pen marks, a line)",
        "as above",
    ),
}

GROUPS = {
    "far_pooled": list(FAR),
    "near_pooled": list(NEAR),
    "all_pooled": list(FAR) + list(NEAR),
}


@dataclass
class TileData:
    """Images of one set: uint8 ``(N, tile_px, tile_px, 3)``, labels (``-1``: unlabelled)."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    names: list[str]
    note: str = ""


def read_split() -> dict[str, Any]:
    """The committed split file."""
    out: dict[str, Any] = json.loads(SPLIT.read_text())
    return out


def id_sets(tile_px: int, classes: list[str]) -> dict[str, TileData]:
    """The ``train``, ``calibration`` and ``test`` parts of the split."""
    from tileuq.models.data import read_image

    split = read_split()
    if list(split["classes"]) != list(classes):
        raise SystemExit(f"split classes {split['classes']} != model classes {classes}")
    out = {}
    for part in ("train", "calibration", "test"):
        files = list(split["splits"][part])
        imgs = np.stack([read_image(ID_TILES / f, tile_px) for f in files])
        labels = np.asarray([classes.index(f.split("/")[0]) for f in files], dtype=np.int64)
        out[part] = TileData(part, imgs, labels, files)
    return out


def crop_positions(size: int, side: int) -> list[int]:
    """Evenly spaced crop starts covering ``[0, size)`` with at least half-overlap."""
    if side >= size:
        return [0]
    m = math.ceil((size - side) / (side / 2)) + 1
    return sorted({round(v) for v in np.linspace(0, size - side, m)})


def far_crops(key: str, tile_px: int, fov_um: float) -> TileData:
    """Crops of one far-OOD image at the model's field of view (see the module docstring)."""
    from tileuq.models.data import decode_rgb, fit_square

    rel, mpp, note = FAR[key]
    rgb = decode_rgb(TILES / rel)
    side = round(fov_um / mpp)
    h, w = rgb.shape[:2]
    crops, names = [], []
    for y in crop_positions(h, min(side, h)):
        for x in crop_positions(w, min(side, w)):
            c = rgb[y : y + side, x : x + side]
            if (c.max(axis=2) < 20).mean() > 0.5:
                continue  # outside the fundus disc: black mask, not image content
            crops.append(fit_square(c, tile_px))
            names.append(f"{rel}@x{x}y{y}s{side}")
    imgs = np.stack(crops)
    note = f"{note}; {len(crops)} crops of {side} px (= {fov_um:g} µm at {mpp:g} µm/px)"
    return TileData(key, imgs, np.full(len(crops), -1, dtype=np.int64), names, note)


def folder_tiles(key: str, rel: str, note: str, tile_px: int) -> TileData:
    """All images under a folder, each read whole (centre square) and resized."""
    from tileuq.models.data import read_image
    from tileuq.uncertainty.sources import list_images

    paths = list_images(TILES / rel)
    imgs = np.stack([read_image(p, tile_px) for p in paths])
    names = [str(p.relative_to(TILES)) for p in paths]
    return TileData(key, imgs, np.full(len(paths), -1, dtype=np.int64), names, note)


def ood_sets(tile_px: int, fov_um: float) -> dict[str, TileData]:
    """Every OOD set (far crops, near tiles, extra), in a fixed order."""
    out = {k: far_crops(k, tile_px, fov_um) for k in FAR}
    for k, (rel, what, fov) in {**NEAR, **EXTRA}.items():
        out[k] = folder_tiles(k, rel, f"{what}; {fov}", tile_px)
    return out


def _images_hash(images: np.ndarray) -> str:
    h = hashlib.sha256(str(images.shape).encode())
    h.update(np.ascontiguousarray(images).tobytes())
    return h.hexdigest()[:16]


def predict_cached(model: Any, data: TileData, cache_dir: Path, method: str) -> dict[str, Any]:
    """Model outputs on ``data`` as numpy arrays, from the cache when model and images match.

    Returns a dict with ``logits``, ``probabilities``, ``predictions``, ``labels``,
    ``features`` and ``scores`` (``{name: (N,) float64}``).
    """
    import torch

    from tileuq._generators import result_of
    from tileuq._io import atomic_write
    from tileuq.uncertainty.predict import iter_predict_tiles
    from tileuq.uncertainty.sources import TileSet

    key = f"{model.model_hash[:16]}-{_images_hash(data.images)}"
    path = cache_dir / f"{method}__{data.name}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) == key:
                return _unpack({k: z[k] for k in z.files})
    torch.manual_seed(0)
    classes = list(model.classes)
    tiles = TileSet(None, data.images, data.labels, classes, data.name)
    p = result_of(iter_predict_tiles(model, tiles, batch_size=64, return_features=True))
    arrays = {
        "key": np.array(key),
        "logits": p.logits,
        "probabilities": p.probabilities,
        "predictions": p.predictions,
        "labels": data.labels[p.index],
        "features": p.features,
        **{f"score__{k}": v for k, v in p.scores.items()},
    }
    cache_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as fh:
        np.savez(fh, **arrays)
    return _unpack(arrays)


def _unpack(z: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in z.items() if not k.startswith("score__") and k != "key"}
    out["scores"] = {
        k[7:]: np.asarray(v, np.float64) for k, v in z.items() if k.startswith("score__")
    }
    return out
