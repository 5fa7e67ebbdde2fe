"""Reading untrusted model files: JSON, safetensors, weights-only torch pickles, archive names."""

from __future__ import annotations

import json
import pickle
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from tileuq.errors import ModelError

_MAX_JSON = 16 * 1024 * 1024


def parse_json(data: bytes, where: str) -> dict[str, Any]:
    """Parse a JSON object from untrusted bytes."""
    if len(data) > _MAX_JSON:
        raise ModelError(f"{where}: JSON file too large ({len(data)} bytes)")
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise ModelError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    return obj


def read_json_file(path: Path) -> dict[str, Any]:
    """Read a JSON object from a file."""
    if path.stat().st_size > _MAX_JSON:
        raise ModelError(f"{path}: JSON file too large")
    return parse_json(path.read_bytes(), str(path))


def safetensors_bytes(data: bytes, where: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors.torch import load

    try:
        state = load(data)
        n = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + n])
    except Exception as e:  # safetensors raises its own error types
        raise ModelError(f"{where}: not a readable safetensors file ({e})") from None
    return state, dict(header.get("__metadata__") or {})


def safetensors_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        state = load_file(str(path), device="cpu")
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:
        raise ModelError(f"{path}: not a readable safetensors file ({e})") from None
    return state, dict(meta)


def torch_load_safe(path: Path) -> Any:
    """``torch.load(path, weights_only=True)``; pickles that would run code are refused."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        why = [ln for ln in lines if "WeightsUnpickler error" in ln or "Unsupported" in ln]
        first = (why or lines or [""])[0]
        raise ModelError(
            f"{path}: refused to load: the file contains pickled Python objects that could run "
            f"code; only plain tensors are accepted (torch.load weights_only=True). Nothing was "
            f"executed. ({first})"
        ) from None
    except Exception as e:
        raise ModelError(f"{path}: not a readable PyTorch file ({type(e).__name__}: {e})") from None


def as_state_dict(obj: Any, where: str) -> dict[str, torch.Tensor]:
    """Check that ``obj`` is a mapping of names to tensors."""
    if not isinstance(obj, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise ModelError(f"{where}: expected a state dict (a mapping of names to tensors)")
    return obj


def safe_member(name: str, where: str) -> str:
    p = PurePosixPath(name)
    if (
        name.startswith(("/", "\\"))
        or "\\" in name
        or ":" in name
        or any(part in ("..", "") for part in p.parts)
        or len(p.parts) > 2
    ):
        raise ModelError(f"{where}: unsafe archive member name {name!r} refused")
    return p.name
