"""Fit feature-distance scorers on a model's training tiles and attach them to the model.

``fit_feature_scorers(model, tiles, kinds=("mahalanobis",))`` runs the model over labelled
reference tiles (its **training** tiles: a folder with one sub-folder per class, optionally
restricted to one part of a split file, or ``(images, labels)`` arrays), fits the scorers on
the pooled features :meth:`~tileuq.TileModel.predict` returns, and stores them in
``model.feature_scorers`` with their provenance (reference tiles, their data hash).  From
then on ``model.predict`` adds their scores (reason ``"unfamiliar"``), and ``model.save`` /
:func:`tileuq.models.feature_scorers.write_feature_scorers` store them in the model folder.

Never fit on calibration or test tiles: calibration tiles would sit artificially close to the
reference, so thresholds calibrated on them would reject more new tiles than they promise.

Refitting changes :attr:`~tileuq.TileModel.model_hash`.  A calibration the model carries is
dropped (with a warning) when one of its rules uses a refitted score; otherwise it is kept and
re-stamped with the new model hash (its rules do not depend on the scorers).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Generator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from tileuq._generators import result_of
from tileuq.errors import CalibrationError
from tileuq.uncertainty.distances import KNNScorer, MahalanobisScorer
from tileuq.uncertainty.predict import Predictions, Progress, iter_predict_tiles
from tileuq.uncertainty.sources import TileSet, tile_arrays, tile_folder

__all__ = ["KINDS", "fit_feature_scorers", "iter_fit_feature_scorers"]

#: scorer kinds = the score names they produce
KINDS = ("mahalanobis", "knn_euclidean", "knn_cosine")


def _split_tiles(
    folder: Path, classes: list[str], split_file: str | os.PathLike[str], split: str
) -> TileSet:
    from tileuq.errors import DataError
    from tileuq.models.splits import read_split

    try:
        files = read_split(split_file)["splits"].get(split)
    except DataError as e:
        raise CalibrationError(str(e)) from None
    if not files:
        raise CalibrationError(f"split file {split_file}: no part {split!r} (or it is empty)")
    paths, labels = [], []
    for rel in files:
        cls = rel.split("/")[0]
        if cls not in classes:
            raise CalibrationError(
                f"split file {split_file}: {rel!r} is not in a class folder of the model "
                f"(classes {classes})"
            )
        path = folder / rel
        if not path.is_file():
            raise CalibrationError(f"{path}: listed in {split_file} but missing")
        paths.append(path)
        labels.append(classes.index(cls))
    source = f"{folder} (part {split!r} of {split_file})"
    return TileSet(paths, None, np.asarray(labels, dtype=np.int64), classes, source)


def _data_hash(tiles: TileSet, folder: Path | None) -> tuple[str, str]:
    if tiles.paths is not None and folder is not None:
        from tileuq.models.splits import file_sha256

        lines = sorted(
            f"{p.relative_to(folder).as_posix()}\t{file_sha256(p)}\n" for p in tiles.paths
        )
        how = "sha256 of sorted lines '<relative path>\\t<sha256 of file bytes>\\n'"
        return hashlib.sha256("".join(lines).encode()).hexdigest(), how
    images = np.asarray(tiles.images)
    h = hashlib.sha256(str(images.shape).encode())
    h.update(np.ascontiguousarray(images).tobytes())
    h.update(np.ascontiguousarray(tiles.labels).tobytes())
    return h.hexdigest(), "sha256 of the image array's shape and bytes, then the labels' bytes"


def _new_scorer(kind: str, k: int, shrinkage: str | float) -> KNNScorer | MahalanobisScorer:
    if kind == "mahalanobis":
        return MahalanobisScorer(shrinkage=shrinkage)
    if kind in ("knn_euclidean", "knn_cosine"):
        return KNNScorer(k=k, metric=kind.removeprefix("knn_"))
    raise CalibrationError(f"kinds: unknown scorer {kind!r}; expected some of {list(KINDS)}")


def _update_calibration(model: Any, refitted: set[str], old_hash: str) -> None:
    cal = model.calibration
    if not isinstance(cal, dict):
        return
    used = {str(r.get("score")) for r in cal.get("rules") or [] if isinstance(r, dict)}
    if used & refitted:
        warnings.warn(
            f"the model's calibration uses {sorted(used & refitted)}, which were (re)fitted: "
            "it no longer holds and was dropped; calibrate the model again",
            UserWarning,
            stacklevel=4,
        )
        model.calibration = None
        return
    if cal.get("model_hash") == old_hash:
        info = dict(cal.get("info") or {})
        info["model_hash_before_feature_scorers"] = old_hash
        model.calibration = {
            **cal,
            "model_hash": model.model_hash,
            "model_id": model.model_id,
            "info": info,
        }


def iter_fit_feature_scorers(
    model: Any,
    source: str | os.PathLike[str] | tuple[Any, Any],
    kinds: Sequence[str] = ("mahalanobis",),
    *,
    split_file: str | os.PathLike[str] | None = None,
    split: str = "train",
    k: int = 10,
    shrinkage: str | float = "ledoit-wolf",
    batch_size: int = 64,
    on_error: str = "raise",
) -> Generator[Progress, None, Any]:
    """Fit like :func:`fit_feature_scorers`, yielding :class:`Progress`; returns the model."""
    from tileuq.models.feature_scorers import check_scorer

    kinds = [kinds] if isinstance(kinds, str) else list(dict.fromkeys(kinds))
    if not kinds:
        raise CalibrationError("kinds: name at least one scorer")
    scorers = {kind: _new_scorer(kind, k, shrinkage) for kind in kinds}
    classes = list(model.classes)
    folder: Path | None = None
    if isinstance(source, tuple):
        if split_file is not None:
            raise CalibrationError("split_file: only applies to a tile folder, not to arrays")
        tiles = tile_arrays(source[0], source[1], classes)
    else:
        folder = Path(source)
        if split_file is not None and folder.is_dir():
            tiles = _split_tiles(folder, classes, split_file, split)
        else:
            tiles = tile_folder(folder, classes)
    preds: Predictions = yield from iter_predict_tiles(
        model, tiles, batch_size=batch_size, return_features=True, on_error=on_error
    )
    assert preds.features is not None
    yield Progress("fit", 0, len(scorers))
    for scorer in scorers.values():
        scorer.fit(preds.features, preds.labels)
    data_hash, how = _data_hash(tiles, folder)
    train_hash = ((getattr(model, "training_info", None) or {}).get("data") or {}).get("hash")
    counts = np.bincount(preds.labels, minlength=len(classes))
    from tileuq import __version__

    reference = {
        "source": tiles.source if folder is None else str(folder),
        "split_file": None if split_file is None else str(split_file),
        "split": split if split_file is not None else None,
        "n_tiles": len(preds),
        "class_counts": {c: int(n) for c, n in zip(classes, counts, strict=True)},
        "skipped_unreadable": int(preds.info.get("skipped", 0)),
        "data_hash": data_hash,
        "hash_method": how,
        "matches_training_data": None if not train_hash else data_hash == train_hash,
        "features": "pooled backbone features of predict(); ensembles: the members' "
        "features concatenated",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tileuq": __version__,
    }
    old_hash = model.model_hash
    for name, scorer in scorers.items():
        check_scorer(model, name, scorer)
        model.feature_scorers[name] = scorer
        model.feature_scorer_info[name] = dict(reference)
    _update_calibration(model, set(scorers), old_hash)
    yield Progress("fit", len(scorers), len(scorers))
    return model


def fit_feature_scorers(
    model: Any,
    source: str | os.PathLike[str] | tuple[Any, Any],
    kinds: Sequence[str] = ("mahalanobis",),
    *,
    split_file: str | os.PathLike[str] | None = None,
    split: str = "train",
    k: int = 10,
    shrinkage: str | float = "ledoit-wolf",
    batch_size: int = 64,
    on_error: str = "raise",
) -> Any:
    """Fit feature-distance scorers on reference tiles and attach them to ``model``.

    Parameters
    ----------
    model
        A :class:`~tileuq.TileModel`; changed in place and returned.
    source
        The model's **training** tiles: a labelled folder (one sub-folder per class) or
        ``(images, labels)``.  Never calibration or test tiles (see the module docstring).
    kinds
        Scorers to fit, by score name: ``"mahalanobis"`` (class means + shared Ledoit–Wolf
        covariance; the best far-OOD detector in ``docs/evidence.md``), ``"knn_euclidean"``,
        ``"knn_cosine"`` (distance to the ``k``-th nearest reference tile; stores every
        reference feature).  Refitting a kind replaces it; other carried scorers are kept.
    split_file, split
        Use only the files of part ``split`` (default ``"train"``) of a split file (JSON
        ``{"splits": {name: ["<class>/<file>", ...]}}``, e.g. written by ``tileuq train``).
    k, shrinkage
        k-NN neighbour rank; Mahalanobis covariance shrinkage.
    batch_size, on_error
        Tiles per ``predict`` call; ``"raise"`` or ``"skip"`` for unreadable images.

    Returns
    -------
    TileModel
        ``model``, whose ``predict`` now adds the fitted scores (``score_names`` lists them).
        Save it with ``model.save(folder)``, or update a model folder in place with
        :func:`tileuq.models.feature_scorers.write_feature_scorers` (``tileuq fit-scorers``).
    """
    gen = iter_fit_feature_scorers(
        model,
        source,
        kinds,
        split_file=split_file,
        split=split,
        k=k,
        shrinkage=shrinkage,
        batch_size=batch_size,
        on_error=on_error,
    )
    return result_of(gen)
