"""``hf://<owner>/<repo>[@revision]/<name>``: models on the Hugging Face Hub.

Resolution order: with ``huggingface_hub`` installed and not offline (``HF_HUB_OFFLINE``
unset), ``snapshot_download`` fetches only the files under ``<name>/`` (this is the one place
tileuq downloads, and only when the user names an ``hf://`` source); if that fails, or when
offline, the local Hub cache is used (``snapshot_download(..., local_files_only=True)``, or a
direct lookup in the cache layout ``models--<owner>--<repo>/refs|snapshots`` when
``huggingface_hub`` is not installed); otherwise a :class:`~tileuq.errors.ModelError` says the
model is not cached and the Hub is unreachable.  The cache is ``$HF_HUB_CACHE``, else
``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tileuq.errors import ModelError

_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_PATTERNS = ("*.json", "*.safetensors", "*.pt", "*.pth", "*.zip")


def parse_hf(uri: str) -> tuple[str, str | None, str]:
    """Split ``hf://owner/repo[@rev]/name`` into ``(repo_id, revision, name)``."""
    spec = uri[len("hf://") :].strip("/")
    parts = spec.split("/")
    if len(parts) < 2:
        raise ModelError(f"{uri!r}: expected hf://<owner>/<repo>/<name>")
    owner, repo = parts[0], parts[1]
    revision = None
    if "@" in repo:
        repo, revision = repo.split("@", 1)
        if not revision or not re.match(r"^[A-Za-z0-9._/-]+$", revision):
            raise ModelError(f"{uri!r}: invalid revision {revision!r}")
    for seg in (owner, repo, *parts[2:]):
        if not _SEGMENT.match(seg) or ".." in seg:
            raise ModelError(f"{uri!r}: invalid path segment {seg!r}")
    return f"{owner}/{repo}", revision, "/".join(parts[2:])


def hub_cache_dir() -> Path:
    """Return the Hugging Face Hub cache folder, honouring ``HF_HUB_CACHE`` and ``HF_HOME``."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _cache_lookup(repo_id: str, revision: str | None, cache: Path) -> Path | None:
    root = cache / ("models--" + repo_id.replace("/", "--"))
    rev = revision or "main"
    if re.fullmatch(r"[0-9a-f]{40}", rev):
        commit = rev
    else:
        ref = root / "refs" / rev
        if not ref.is_file():
            return None
        commit = ref.read_text().strip()
        if not re.fullmatch(r"[0-9a-f]{40}", commit):
            return None
    snap = root / "snapshots" / commit
    return snap if snap.is_dir() else None


def resolve_hf(uri: str) -> Path:
    """Local folder (or file) holding the model named by an ``hf://`` URI."""
    repo_id, revision, name = parse_hf(uri)
    cache = hub_cache_dir()
    patterns = [f"{name}/{p}" for p in _PATTERNS] if name else list(_PATTERNS)
    online_error: Exception | None = None
    snapshot: Path | None = None
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        snapshot_download = None  # type: ignore[assignment]
    if snapshot_download is not None:
        if not _offline():
            try:
                snapshot = Path(
                    snapshot_download(
                        repo_id, revision=revision, allow_patterns=patterns, cache_dir=cache
                    )
                )
            except Exception as e:  # network, auth, not found: fall back to the cache
                online_error = e
        if snapshot is None:
            try:
                snapshot = Path(
                    snapshot_download(
                        repo_id,
                        revision=revision,
                        allow_patterns=patterns,
                        cache_dir=cache,
                        local_files_only=True,
                    )
                )
            except Exception:
                snapshot = None
    else:
        snapshot = _cache_lookup(repo_id, revision, cache)
    target = None if snapshot is None else (snapshot / name if name else snapshot)
    if target is None or not target.exists():
        if snapshot_download is None:
            why = "huggingface_hub is not installed (pip install huggingface_hub)"
        elif _offline():
            why = "offline (HF_HUB_OFFLINE is set)"
        elif online_error is not None:
            why = f"the Hub could not be reached ({type(online_error).__name__}: {online_error})"
        else:
            why = "it is not in the repository"
        raise ModelError(
            f"{uri}: model not found in the local Hugging Face cache ({cache}) and {why}; "
            "connect to the internet once (or copy the model folder) and try again"
        )
    return target
