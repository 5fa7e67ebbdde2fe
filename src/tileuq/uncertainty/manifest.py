"""Store a Calibration in a model folder's ``model.json`` (atomically, with a backup).

The models package loads a folder's calibration from the ``calibration`` key of
``model.json`` (``TileModel.calibration``); this helper rewrites only that file, so the
weights are untouched.  (The copy of the manifest embedded in ``model.safetensors`` keeps its
old ``calibration``; it is only read when a ``.safetensors`` file is loaded on its own.)
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from tileuq._io import atomic_path, write_json
from tileuq.errors import CalibrationError
from tileuq.uncertainty.calibration import Calibration

__all__ = ["BACKUP_SUFFIX", "write_calibration"]

BACKUP_SUFFIX = ".bak"


def write_calibration(model_dir: str | os.PathLike[str], calibration: Calibration) -> Path:
    """Write ``calibration`` under the ``calibration`` key of ``model_dir/model.json``.

    The previous ``model.json`` is kept as ``model.json.bak`` (replacing an older backup).
    Both files are written atomically.  Refuses when the model hash recorded in
    ``model.json`` (``model_hash``; the weights' sha256 for older manifests and models without
    feature scorers) differs from :attr:`Calibration.model_hash`.

    Returns
    -------
    pathlib.Path
        The path of the updated ``model.json``.
    """
    folder = Path(model_dir)
    path = folder / "model.json" if folder.is_dir() else folder
    if path.name != "model.json" or not path.is_file():
        raise CalibrationError(
            f"{model_dir}: not a model folder with a model.json (a calibration can only be "
            f"written into a model folder; save the model with model.save(folder) first)"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CalibrationError(f"{path}: cannot read the manifest ({exc})") from exc
    if not isinstance(manifest, dict):
        raise CalibrationError(f"{path}: the manifest is not a JSON object")
    held = manifest.get("model_hash") or (manifest.get("weights") or {}).get("sha256")
    if calibration.model_hash and held and held != calibration.model_hash:
        raise CalibrationError(
            f"{path}: the calibration was made for model {calibration.model_hash[:12]}, but "
            f"this folder holds weights {held[:12]}"
            + (" (model hash, with its feature scorers)" if manifest.get("feature_scorers") else "")
        )
    backup = path.with_name(path.name + BACKUP_SUFFIX)
    with atomic_path(backup) as tmp:
        shutil.copyfile(path, tmp)
    manifest["calibration"] = calibration.to_manifest()
    write_json(path, manifest)
    return path
