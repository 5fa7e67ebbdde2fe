"""Saving and loading ``TileModel`` checkpoints.  Model files are untrusted input.

Format: a folder holding ``model.safetensors`` (weights; the manifest is also embedded in its
metadata under ``tileuq_manifest``) and ``model.json`` (the manifest: method,
hyperparameters, classes and colours, tile_px, mpp, normalization, training provenance,
calibration slot, weights sha256), plus ``scorers.safetensors`` when the model carries fitted
feature scorers (:mod:`tileuq.models.feature_scorers`; its sha256 is in ``model.json`` and
verified on load).  A single ``.zip`` archive holding those files (at its root or in one
folder) is also accepted; it is read in memory, never extracted, and any member name that is
absolute, contains ``..``/backslashes, or is not one of the expected files is refused.

Safety rules: weights load only with safetensors or ``torch.load(..., weights_only=True)``
(a pickle that would run code is refused, nothing is executed); the manifest is validated
(known method, backbone, hyperparameter names and ranges) before any tensor is read; every
tensor name and shape is compared with the model before loading and mismatches raise a
:class:`~tileuq.errors.ModelError` naming the layer; the weights sha256 in ``model.json`` must
match the loaded weights.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import torch

from tileuq._io import atomic_path, write_json
from tileuq.bundled import resolve_model_source
from tileuq.errors import ModelError
from tileuq.models._safeio import (
    as_state_dict,
    parse_json,
    read_json_file,
    safe_member,
    safetensors_bytes,
    safetensors_file,
    torch_load_safe,
)
from tileuq.models.feature_scorers import FILE as SCORERS
from tileuq.models.feature_scorers import encode_scorers, load_scorers, manifest_entry
from tileuq.models.tile_model import FORMAT, TileModel

MANIFEST = "model.json"
WEIGHTS = "model.safetensors"
_MAX_ARCHIVE_MEMBER = 8 * 1024**3


# ---------------------------------------------------------------------- saving
def _cpu_state(model: TileModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def save_model(model: TileModel, path: str | os.PathLike[str]) -> None:
    """Write ``model`` to folder ``path`` (or a ``.zip`` archive), each file atomically."""
    from safetensors.torch import save, save_file

    path = Path(path)
    manifest = model.manifest
    scorers = encode_scorers(model.feature_scorers) if model.feature_scorers else None
    manifest["feature_scorers"] = manifest_entry(model, scorers)  # sha256 of these bytes
    meta = {"format": FORMAT, "tileuq_manifest": json.dumps(manifest)}
    state = _cpu_state(model)
    if path.suffix.lower() == ".zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr(WEIGHTS, save(state, metadata=meta))
            if scorers is not None:
                zf.writestr(SCORERS, scorers)
            zf.writestr(MANIFEST, json.dumps(manifest, indent=2) + "\n")
        with atomic_path(path) as tmp:
            tmp.write_bytes(buf.getvalue())
        return
    path.mkdir(parents=True, exist_ok=True)
    # weights first: if interrupted, the old model.json's sha256 no longer matches -> load error
    with atomic_path(path / WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata=meta)
    if scorers is not None:
        with atomic_path(path / SCORERS) as tmp:
            tmp.write_bytes(scorers)
    write_json(path / MANIFEST, manifest)


# ---------------------------------------------------------------------- reading helpers
# ---------------------------------------------------------------------- building + checking
def load_state_checked(
    model: torch.nn.Module,
    state: dict[str, torch.Tensor],
    where: str,
    names: dict[str, str] | None = None,
) -> None:
    """Load ``state`` strictly, with errors that name the offending layers.

    ``names`` maps model keys to the names used in the file (for imported checkpoints).
    """
    names = names or {}
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    problems = []
    if missing:
        problems.append(f"missing tensors: {', '.join(names.get(k, k) for k in missing[:8])}")
    if unexpected:
        problems.append(f"unexpected tensors: {', '.join(unexpected[:8])}")
    cast: dict[str, torch.Tensor] = {}
    for k, ref in expected.items():
        if k not in state:
            continue
        t = state[k]
        if ref.numel() > 0 and tuple(t.shape) != tuple(ref.shape):
            msg = (
                f"layer '{names.get(k, k)}' has shape {tuple(t.shape)} in the checkpoint "
                f"but the model expects {tuple(ref.shape)}"
            )
            if k.endswith(("fc.weight", "fc.bias", "fc.output.weight", "fc.output.bias")):
                msg += (
                    f" (class-count mismatch: the model has {ref.shape[0]} classes, "
                    f"the checkpoint {t.shape[0]})"
                )
            problems.append(msg)
            continue
        if ref.is_floating_point() != t.is_floating_point() and t.dtype != ref.dtype:
            problems.append(f"layer '{names.get(k, k)}' has dtype {t.dtype}, expected {ref.dtype}")
            continue
        cast[k] = t.to(ref.dtype)
    if problems:
        raise ModelError(f"{where}: weights do not fit the model: " + "; ".join(problems))
    try:
        model.load_state_dict(cast, strict=True)
    except RuntimeError as e:
        raise ModelError(f"{where}: weights do not fit the model ({e})") from None


def model_from_manifest(manifest: dict[str, Any], where: str) -> TileModel:
    """Validate a manifest and build the (untrained) model it describes."""
    from tileuq.models.build import build_model

    if manifest.get("format") != FORMAT:
        raise ModelError(
            f"{where}: not a tileuq model manifest (format={manifest.get('format')!r})"
        )
    if int(manifest.get("format_version", 0)) > 1:
        raise ModelError(
            f"{where}: model format version {manifest['format_version']} is newer "
            "than this tileuq supports (1)"
        )
    hyper = manifest.get("hyperparameters") or {}
    norm = manifest.get("normalization") or {}
    if not isinstance(hyper, dict) or not isinstance(norm, dict):
        raise ModelError(f"{where}: 'hyperparameters' and 'normalization' must be objects")
    try:
        model = build_model(
            method=manifest.get("method"),  # type: ignore[arg-type]
            backbone=manifest.get("backbone"),  # type: ignore[arg-type]
            num_classes=manifest.get("num_classes"),
            classes=manifest.get("classes"),
            colors=manifest.get("colors"),
            tile_px=manifest.get("tile_px"),  # type: ignore[arg-type]
            mpp=manifest.get("mpp"),
            name=manifest.get("name"),
            mean=norm.get("mean", (0.485, 0.456, 0.406)),
            std=norm.get("std", (0.229, 0.224, 0.225)),
            _materialize=False,
            **hyper,
        )
    except ModelError as e:
        raise ModelError(f"{where}: {e}") from None
    except (TypeError, ValueError) as e:
        raise ModelError(f"{where}: invalid model description ({e})") from None
    training = manifest.get("training") or {}
    model.training_info = dict(training) if isinstance(training, dict) else {}
    calib = manifest.get("calibration")
    model.calibration = calib if isinstance(calib, dict) else None
    src = manifest.get("source")
    model.source = src if isinstance(src, dict) else None
    return model


def model_from_parts(
    manifest: dict[str, Any], state: dict[str, torch.Tensor], where: str
) -> TileModel:
    """Build from a manifest, load the weights, verify the sha256."""
    model = model_from_manifest(manifest, where)
    load_state_checked(model, state, where)
    want = (manifest.get("weights") or {}).get("sha256")
    if want and want != model.weights_hash:
        raise ModelError(
            f"{where}: weights do not match model.json (sha256 {model.weights_hash[:12]}... vs "
            f"{str(want)[:12]}...): the files are corrupt or were modified"
        )
    model.eval()
    return model


# ---------------------------------------------------------------------- sources
def load_archive(path: Path) -> TileModel:
    """Load a ``.zip`` model archive in memory (no extraction)."""
    where = str(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise ModelError(f"{where}: not a readable zip archive ({e})") from None
    files: dict[str, zipfile.ZipInfo] = {}
    with zf:
        for info in zf.infolist():
            if info.is_dir():
                safe_member(info.filename.rstrip("/"), where)
                continue
            base = safe_member(info.filename, where)
            if base not in (MANIFEST, WEIGHTS, SCORERS):
                raise ModelError(f"{where}: unexpected archive member {info.filename!r}")
            if base in files:
                raise ModelError(f"{where}: archive holds more than one {base}")
            if info.file_size > _MAX_ARCHIVE_MEMBER:
                raise ModelError(f"{where}: archive member {info.filename!r} is too large")
            files[base] = info
        if not {MANIFEST, WEIGHTS} <= set(files):
            raise ModelError(f"{where}: archive must hold {MANIFEST} and {WEIGHTS}")
        manifest = parse_json(zf.read(files[MANIFEST]), f"{where}:{MANIFEST}")
        state, _ = safetensors_bytes(zf.read(files[WEIGHTS]), f"{where}:{WEIGHTS}")
        model = model_from_parts(manifest, state, where)
        load_scorers(
            model,
            manifest.get("feature_scorers"),
            lambda name: zf.read(files[name]) if name in files else None,
            where,
        )
    return model


def load_folder(path: Path) -> TileModel:
    """Load a model folder: tileuq layout, or an sngp_core ``config.json`` + ``model.pt``."""
    if (path / MANIFEST).is_file():
        manifest = read_json_file(path / MANIFEST)
        wfile = (manifest.get("weights") or {}).get("file", WEIGHTS)
        if wfile not in (WEIGHTS, "model.pt"):
            raise ModelError(f"{path / MANIFEST}: unsupported weights file name {wfile!r}")
        if not (path / wfile).is_file():
            raise ModelError(f"{path}: {wfile} is missing")
        if wfile == WEIGHTS:
            state, _ = safetensors_file(path / wfile)
        else:
            state = as_state_dict(torch_load_safe(path / wfile), str(path / wfile))
        model = model_from_parts(manifest, state, str(path))
        load_scorers(model, manifest.get("feature_scorers"), _reader(path), str(path))
        return model
    if (path / "config.json").is_file() and (path / "model.pt").is_file():
        from tileuq.models.sngp_core import import_sngp_core

        return import_sngp_core(path)
    raise ModelError(
        f"{path}: not a model folder (expected {MANIFEST} + {WEIGHTS}, or sngp_core's "
        "config.json + model.pt)"
    )


def _reader(folder: Path) -> Any:
    def read(name: str) -> bytes | None:
        f = folder / name
        return f.read_bytes() if f.is_file() else None

    return read


def _beside(model: TileModel, manifest: dict[str, Any], path: Path) -> TileModel:
    """Single weight files: scorers from the file beside them, when it is there."""
    load_scorers(
        model, manifest.get("feature_scorers"), _reader(path.parent), str(path), strict=False
    )
    return model


def load_model(source: str | os.PathLike[str]) -> TileModel:
    """Load a :class:`~tileuq.TileModel` (in eval mode) from a file, folder or the Hub.

    Parameters
    ----------
    source
        A model folder (``model.json`` + ``model.safetensors``), a ``.zip`` archive of one, a
        ``.safetensors`` file (manifest in its metadata, or a ``model.json`` beside it), a
        ``.pt``/``.pth`` file (loaded with ``weights_only=True``: a dict with ``manifest``
        and ``state_dict``, or a state dict with ``model.json`` beside it), an sngp_core
        folder (``config.json`` + ``model.pt``), ``"hf://<owner>/<repo>[@rev]/<name>"``, or
        ``"demo"`` for the bundled demo model.
    """
    source = resolve_model_source(source)  # "demo": the bundled demo model
    if source.startswith("hf://"):
        from tileuq.models.hub import resolve_hf

        return load_model(resolve_hf(source))
    path = Path(source).expanduser()
    if not path.exists():
        raise ModelError(f"model source {str(source)!r}: no such file or folder")
    if path.is_dir():
        return load_folder(path)
    suffix = path.suffix.lower()
    if path.name == MANIFEST or path.name == "config.json":
        return load_folder(path.parent)
    if suffix == ".zip":
        return load_archive(path)
    if suffix == ".safetensors":
        state, meta = safetensors_file(path)
        if "tileuq_manifest" in meta:
            manifest = parse_json(meta["tileuq_manifest"].encode(), f"{path} (metadata)")
        elif (path.parent / MANIFEST).is_file():
            manifest = read_json_file(path.parent / MANIFEST)
        else:
            raise ModelError(
                f"{path}: no tileuq manifest in its metadata and no {MANIFEST} beside it"
            )
        return _beside(model_from_parts(manifest, state, str(path)), manifest, path)
    if suffix in (".pt", ".pth", ".bin"):
        obj = torch_load_safe(path)
        if isinstance(obj, dict) and isinstance(obj.get("manifest"), dict):
            state = as_state_dict(obj.get("state_dict"), f"{path}: state_dict")
            return _beside(
                model_from_parts(obj["manifest"], state, str(path)), obj["manifest"], path
            )
        state = as_state_dict(obj, str(path))
        if (path.parent / MANIFEST).is_file():
            manifest = read_json_file(path.parent / MANIFEST)
            return _beside(model_from_parts(manifest, state, str(path)), manifest, path)
        if (path.parent / "config.json").is_file():
            from tileuq.models.sngp_core import import_sngp_core

            return import_sngp_core((path.parent / "config.json", path))
        raise ModelError(f"{path}: a bare state dict needs {MANIFEST} (or config.json) beside it")
    raise ModelError(
        f"model source {str(source)!r}: unsupported file type (use a model folder, .zip, "
        ".safetensors, .pt or hf://)"
    )
