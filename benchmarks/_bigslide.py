"""Build large pyramidal JPEG TIFF slides from the sample slide's real tissue, tile by tile.

The level-0 image is a mosaic of one 2048 x 2048 crop of ``CMU-1-Small-Region.svs`` (skin,
H&E, 0.5 µm/px): period 2048 px, so level 0 has only 64 distinct 256-px tiles and each coarser
level (downsample 2, 4, 8, ...) at most 16.  Each distinct tile is JPEG-encoded once by
tifffile (YCbCr 4:2:0, quality 90) and its bytes are written as many times as the mosaic needs,
so a 100k x 100k slide (~150k tiles, a few GB) is written in about a minute without ever
existing in memory.  OpenSlide reads the result as a generic tiled TIFF.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data" / "CMU-1-Small-Region.svs"
PERIOD = 2048
TILE = 256
DOWNSAMPLES = (
    1,
    2,
    4,
    8,
    16,
    32,
    64,
    128,
    256,
)  # down to < 1024 px, like most scanners' 2x pyramids
CROP_XY = (100, 400)  # top-left of the crop in the sample slide (mostly tissue)


def tissue_crop() -> np.ndarray:
    """The 2048 x 2048 RGB crop of the sample slide that the mosaic repeats."""
    with tifffile.TiffFile(SAMPLE) as tf:
        img = tf.pages[0].asarray()
    x, y = CROP_XY
    return np.ascontiguousarray(img[y : y + PERIOD, x : x + PERIOD])


def _encoded_tiles(image: np.ndarray, quality: int) -> list[bytes]:
    """JPEG bytes of the 256-px tiles of ``image`` (row-major), encoded as tifffile does."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.tif"
        tifffile.imwrite(
            path,
            image,
            tile=(TILE, TILE),
            compression="jpeg",
            compressionargs={"level": quality},
            photometric="rgb",
        )
        with tifffile.TiffFile(path) as tf:
            page = tf.pages[0]
            fh = tf.filehandle
            out = []
            for off, n in zip(page.dataoffsets, page.databytecounts, strict=True):
                fh.seek(off)
                out.append(fh.read(n))
    return out


def level_tiles(crop: np.ndarray, d: int, quality: int = 90) -> tuple[int, list[bytes]]:
    """``(m, tiles)``: distinct tiles of level ``d``; tile (i, j) is ``tiles[(i%m)*m + j%m]``."""
    p = PERIOD // d
    small = np.asarray(Image.fromarray(crop).resize((p, p), Image.Resampling.BOX))
    if p < TILE:
        small = np.tile(small, (TILE // p, TILE // p, 1))
    m = max(1, p // TILE)
    return m, _encoded_tiles(small, quality)


def write_big_slide(path: Path, side: int, mpp: float = 0.5, quality: int = 90) -> Path:
    """Write a ``side`` x ``side`` pyramidal JPEG TIFF (``side`` a multiple of 2048)."""
    assert side % PERIOD == 0, "side must be a multiple of 2048"
    crop = tissue_crop()
    res = (1e4 / mpp, 1e4 / mpp)
    with tifffile.TiffWriter(path, bigtiff=True) as w:
        for k, d in enumerate(DOWNSAMPLES):
            size = side // d
            if k and size < 1024:
                break
            m, tiles = level_tiles(crop, d, quality)
            n = -(-size // TILE)

            def gen(n: int = n, m: int = m, tiles: list[bytes] = tiles):
                for i in range(n):
                    for j in range(n):
                        yield tiles[(i % m) * m + (j % m)]

            w.write(
                gen(),
                shape=(size, size, 3),
                dtype=np.uint8,
                tile=(TILE, TILE),
                compression="jpeg",
                photometric="ycbcr",
                subsampling=(2, 2),
                subfiletype=0 if k == 0 else 1,
                resolution=(res[0] / d, res[1] / d),
                resolutionunit="CENTIMETER",
                metadata=None,
            )
    return path
