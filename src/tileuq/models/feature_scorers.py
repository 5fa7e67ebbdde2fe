"""Feature-space scorers carried by a model (``scorers.safetensors`` beside the weights).

A :class:`~tileuq.TileModel` may carry fitted feature scorers, ``model.feature_scorers``
(``{score name: scorer}``: :class:`~tileuq.uncertainty.MahalanobisScorer` as ``mahalanobis``,
:class:`~tileuq.uncertainty.KNNScorer` as ``knn_euclidean`` / ``knn_cosine``; fit them with
:func:`tileuq.uncertainty.fit_feature_scorers`).  :meth:`TileModel.predict` then scores the
pooled features of the same forward pass with each one and adds the result to ``scores``
(larger = farther from the reference tiles; reason ``"unfamiliar"`` in
:data:`tileuq.uncertainty.SCORES`), and :attr:`TileModel.score_names` lists them, so the
engine, calibration, layers and exports see them like any other score.  The features are the
ones ``predict(..., return_features=True)`` returns: one network's pooled features, or for an
ensemble the K members' features concatenated (``K * D``; each member lives in its own
feature space, and the concatenation was the best OOD detector in ``docs/evidence.md``).  A
tile's score depends only on its own features (up to floating-point rounding).

File: ``scorers.safetensors`` (numpy arrays only, no pickle, nothing executed on load) with
tensors ``<name>/<array>`` and one metadata entry ``tileuq_feature_scorers``, a JSON object
with ``format``, ``format_version`` and ``scorers`` (``{name: parameters}``).  ``model.json``
lists it under ``"feature_scorers"``::

    {"file": "scorers.safetensors", "sha256": "<sha256 of the file>",
     "scorers": {"mahalanobis": {"kind": "mahalanobis", "params": {...}, "feature_dim": 192,
                                 "sha256": "<content hash>", "reference": {provenance}}}}

The file's sha256 is verified on load (a mismatch is a :class:`~tileuq.errors.ModelError`,
like the weights).  :attr:`TileModel.model_hash` is the weights' sha256 for a model without
scorers, else the sha256 of the weights' hash and each scorer's content hash, so results,
resumable runs and calibrations made with other scorers are told apart.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import NDArray

from tileuq.errors import ModelError

if TYPE_CHECKING:
    from tileuq.models.tile_model import TileModel

__all__ = [
    "FILE",
    "FeatureScorer",
    "check_scorer",
    "combined_hash",
    "encode_scorers",
    "feature_dim",
    "load_scorers",
    "scorer_sha256",
    "write_feature_scorers",
]

FILE = "scorers.safetensors"
FORMAT = "tileuq-feature-scorers"
META_KEY = "tileuq_feature_scorers"
BACKUP_SUFFIX = ".bak"


class FeatureScorer(Protocol):
    """What a model-carried scorer offers (see :mod:`tileuq.uncertainty.distances`)."""

    @property
    def name(self) -> str:  # noqa: D102
        ...

    def score(self, features: Any) -> NDArray[np.float64]:  # noqa: D102
        ...

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:  # noqa: D102
        ...


# ---------------------------------------------------------------------- identity
def scorer_sha256(scorer: FeatureScorer) -> str:
    """sha256 of a scorer's parameters and arrays (names, dtypes, shapes, bytes)."""
    params, arrays = scorer.state()
    h = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"\n{key}\t{a.dtype.str}\t{a.shape}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def combined_hash(weights_hash: str, scorers: Mapping[str, FeatureScorer]) -> str:
    """Model identity: the weights' hash alone, or with every scorer's content hash."""
    if not scorers:
        return weights_hash
    lines = [weights_hash] + [f"{k}\t{scorer_sha256(scorers[k])}" for k in sorted(scorers)]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def feature_dim(model: TileModel) -> int | None:
    """Length of the feature vector ``predict`` returns (``None`` when unknown)."""
    dims = [getattr(m, "num_features", None) for m in model.members]
    ints = [d for d in dims if isinstance(d, int)]
    return sum(ints) if ints and len(ints) == len(dims) else None


def _scorer_dim(scorer: FeatureScorer) -> int:
    _, arrays = scorer.state()
    first = arrays.get("reference", arrays.get("means"))
    return int(np.asarray(first).shape[1]) if first is not None else -1


def check_scorer(model: TileModel, name: str, scorer: FeatureScorer, where: str = "") -> None:
    """Refuse a scorer whose name is not its registry name or whose features do not fit."""
    from tileuq.uncertainty.scores import SCORES

    where = where or "feature scorer"
    info = SCORES.get(name)
    if info is None or info.source != "features" or getattr(scorer, "name", None) != name:
        known = sorted(k for k, v in SCORES.items() if v.source == "features")
        raise ModelError(
            f"{where}: a feature scorer must be stored under its own score name, one of "
            f"{known} (got {name!r} for a scorer named {getattr(scorer, 'name', None)!r})"
        )
    want, got = feature_dim(model), _scorer_dim(scorer)
    if want is not None and got != want:
        raise ModelError(
            f"{where}: scorer {name!r} was fitted on {got} features per tile, but this model's "
            f"features have {want} (fitted with another model?)"
        )


# ---------------------------------------------------------------------- prediction
def add_feature_scores(
    out: dict[str, Any], scorers: Mapping[str, FeatureScorer], keep_features: bool
) -> None:
    """Score ``out["features"]`` with every scorer into ``out["scores"]`` (float32, CPU)."""
    import torch

    feats = out["features"].detach().to("cpu", torch.float32).numpy()
    for name, scorer in scorers.items():
        s = np.asarray(scorer.score(feats), dtype=np.float32).reshape(-1)
        out["scores"][name] = torch.from_numpy(s)
    if not keep_features:
        del out["features"]


# ---------------------------------------------------------------------- encoding
def encode_scorers(scorers: Mapping[str, FeatureScorer]) -> bytes:
    """Encode ``scorers`` as the ``scorers.safetensors`` bytes (deterministic)."""
    from safetensors.numpy import save

    tensors: dict[str, np.ndarray] = {}
    params: dict[str, Any] = {}
    for name, scorer in scorers.items():
        p, arrays = scorer.state()
        params[name] = p
        for key, arr in arrays.items():
            tensors[f"{name}/{key}"] = np.ascontiguousarray(arr)
    # one metadata key: safetensors does not keep the order of several, so bytes would vary
    meta = {"format": FORMAT, "format_version": 1, "scorers": params}
    data: bytes = save(tensors, metadata={META_KEY: json.dumps(meta, sort_keys=True)})
    return data


def manifest_entry(model: TileModel, data: bytes | None = None) -> dict[str, Any] | None:
    """Build the ``"feature_scorers"`` entry of ``model.json`` (``None`` without scorers)."""
    scorers = model.feature_scorers
    if not scorers:
        return None
    data = encode_scorers(scorers) if data is None else data
    entries = {}
    for name, scorer in scorers.items():
        params, _ = scorer.state()
        entries[name] = {
            "kind": params.get("kind"),
            "params": {k: v for k, v in params.items() if k != "kind"},
            "feature_dim": _scorer_dim(scorer),
            "sha256": scorer_sha256(scorer),
            "reference": dict(model.feature_scorer_info.get(name, {})),
        }
    return {"file": FILE, "sha256": hashlib.sha256(data).hexdigest(), "scorers": entries}


def _decode(data: bytes, where: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    from safetensors.numpy import load

    try:
        tensors = load(data)
        n = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + n]).get("__metadata__") or {}
        meta = json.loads(header.get(META_KEY, "{}"))
        params = meta.get("scorers")
    except Exception as e:  # safetensors raises its own error types
        raise ModelError(f"{where}: not a readable scorers file ({e})") from None
    if meta.get("format") != FORMAT or not isinstance(params, dict):
        raise ModelError(f"{where}: not a tileuq feature-scorers file")
    return tensors, params


def load_scorers(
    model: TileModel,
    entry: Any,
    read: Callable[[str], bytes | None],
    where: str,
    *,
    strict: bool = True,
) -> None:
    """Attach the scorers ``model.json``'s ``entry`` lists, verifying the file's sha256.

    ``read(file_name)`` returns the file's bytes, or ``None`` when it is absent.  A missing
    file raises (``strict``) or warns and loads no scorer; a sha256 mismatch or a malformed
    file always raises :class:`~tileuq.errors.ModelError`.
    """
    from tileuq.errors import CalibrationError
    from tileuq.uncertainty.distances import scorer_from_state

    if not entry:
        return
    if not isinstance(entry, dict) or not isinstance(entry.get("scorers"), dict):
        raise ModelError(f"{where}: 'feature_scorers' in model.json must be an object")
    fname = entry.get("file", FILE)
    if fname != FILE:
        raise ModelError(f"{where}: unsupported feature-scorers file name {fname!r}")
    data = read(fname)
    if data is None:
        if strict:
            raise ModelError(f"{where}: model.json lists feature scorers, but {fname} is missing")
        warnings.warn(
            f"{where}: {fname} not found beside the weights; loaded without the feature "
            f"scorers {sorted(entry['scorers'])} (load the model folder to get them)",
            UserWarning,
            stacklevel=3,
        )
        return
    got = hashlib.sha256(data).hexdigest()
    if got != entry.get("sha256"):
        raise ModelError(
            f"{where}: {fname} does not match model.json (sha256 {got[:12]}... vs "
            f"{str(entry.get('sha256'))[:12]}...): the files are corrupt or were modified"
        )
    tensors, params = _decode(data, f"{where}:{fname}")
    if sorted(params) != sorted(entry["scorers"]):
        raise ModelError(f"{where}: {fname} holds scorers {sorted(params)}, model.json lists "
                         f"{sorted(entry['scorers'])}")  # fmt: skip
    for name in entry["scorers"]:
        arrays = {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith(name + "/")}
        try:
            scorer = scorer_from_state(params[name], arrays, f"{where}:{fname}[{name}]")
        except CalibrationError as e:
            raise ModelError(str(e)) from None
        check_scorer(model, name, scorer, f"{where}:{fname}")
        info = entry["scorers"][name]
        model.feature_scorers[name] = scorer
        ref = info.get("reference") if isinstance(info, dict) else None
        model.feature_scorer_info[name] = dict(ref) if isinstance(ref, dict) else {}


# ---------------------------------------------------------------------- folder update
def write_feature_scorers(folder: str | os.PathLike[str], model: TileModel) -> Path:
    """Rewrite a model folder's scorers and ``model.json`` for ``model``'s scorers.

    The weights are not touched (their sha256 in ``model.json`` must match ``model``).  The
    previous ``model.json`` and ``scorers.safetensors`` are kept as ``*.bak``; each file is
    written atomically (scorers first: an interruption leaves a sha256 mismatch that
    :func:`~tileuq.load_model` reports, never a silently inconsistent model).  Also updates
    ``model_hash``, ``model_id``, ``score_names`` and ``calibration``.  Returns the path of
    ``model.json``.
    """
    from tileuq._io import atomic_path, write_json
    from tileuq.models._safeio import read_json_file

    folder = Path(folder)
    path = folder / "model.json"
    if not path.is_file():
        raise ModelError(f"{folder}: not a model folder with a model.json")
    manifest = read_json_file(path)
    have = (manifest.get("weights") or {}).get("sha256")
    if have != model.weights_hash:
        raise ModelError(
            f"{folder}: holds weights {str(have)[:12]}, not this model's "
            f"({model.weights_hash[:12]}); save the model with model.save(folder) instead"
        )
    for name in ("model.json", FILE):
        if (folder / name).is_file():
            with atomic_path(folder / (name + BACKUP_SUFFIX)) as tmp:
                shutil.copyfile(folder / name, tmp)
    data = encode_scorers(model.feature_scorers) if model.feature_scorers else None
    if data is not None:
        with atomic_path(folder / FILE) as tmp:
            tmp.write_bytes(data)
    fresh = model.manifest
    for key in ("model_hash", "model_id", "score_names", "calibration"):
        manifest[key] = fresh[key]
    manifest["feature_scorers"] = manifest_entry(model, data)
    write_json(path, manifest)
    if data is None and (folder / FILE).is_file():
        (folder / FILE).unlink()  # kept as .bak
    return path
