"""The per-slide run folder: argument fingerprint, completed-batch part files, resume.

Layout of a run folder while a run is in progress::

    fingerprint.json        what the results depend on (slide hash, model hash, spec, grid hash)
    parts/p<start>-<stop>.npz   model outputs of tiles [start, stop), one file per finished batch

and once it is complete::

    tiles.parquet, run.json  (see :mod:`tileuq.engine.results`); parts are then removed.

Every file is written atomically, so a run killed at any moment (even ``kill -9``) leaves only
whole files behind: started again with the same arguments it skips the tiles already in part
files and merges everything in tile order at the end, so no tile is missing and none is there
twice.  A folder whose fingerprint differs from the new run's is refused (:class:`ResultsError`)
unless ``overwrite=True``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tileuq._io import atomic_path, write_json
from tileuq.engine.results import META_FILE, TABLE_FILE, read_meta
from tileuq.errors import ResultsError

log = logging.getLogger(__name__)

FINGERPRINT_FILE = "fingerprint.json"
PARTS_DIR = "parts"
ERROR_FILE = "error.txt"
OVERVIEW_FILE = "overview.png"
_PART_RE = re.compile(r"^p(\d{10})-(\d{10})\.npz$")
#: files a run owns; ``overwrite`` removes only these
OWNED = (TABLE_FILE, META_FILE, FINGERPRINT_FILE, ERROR_FILE, OVERVIEW_FILE)


def hash_arrays(*arrays: np.ndarray) -> str:
    """SHA-256 (hex, 16 chars) of arrays' dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def describe_mismatch(
    old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = ""
) -> list[str]:
    """List the differing leaves of two nested dictionaries as ``key: old -> new``."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += describe_mismatch(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def check_writable(folder: Path) -> None:
    """Create ``folder`` and prove a file can be written there, or raise :class:`ResultsError`."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ResultsError(f"output folder {folder} is not writable: {exc}") from exc


class RunFolder:
    """One slide's output folder during and after a run.

    Parameters
    ----------
    folder
        The per-slide folder (created if needed).
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.parts_dir = self.folder / PARTS_DIR

    # ------------------------------------------------------------------ state
    def is_complete(self) -> bool:
        """Whether ``run.json`` says the run finished (``tiles.parquet`` present)."""
        try:
            meta = read_meta(self.folder)
        except ResultsError:
            return False
        return meta.get("status") == "complete" and (self.folder / TABLE_FILE).is_file()

    def complete_with(self, quick: Mapping[str, Any]) -> bool:
        """Whether finished results are there whose fingerprint agrees with ``quick``.

        ``quick`` holds the keys known before tiling (slide, model, request); the rest of the
        fingerprint follows from them, so a complete run can be skipped without tiling again.
        """
        if not self.is_complete():
            return False
        old = self._existing_fingerprint() or {}
        new = _normalise(dict(quick))
        return all(old.get(k) == v for k, v in new.items())

    def prepare(self, fingerprint: dict[str, Any], *, overwrite: bool = False) -> str:
        """Make the folder ready for a run with ``fingerprint``.

        Returns
        -------
        str
            ``"complete"`` (finished results with this fingerprint are there: nothing to do),
            ``"resume"`` (part files of this run are there) or ``"new"``.

        Raises
        ------
        ResultsError
            When the folder holds results or parts of a run with other arguments and
            ``overwrite`` is false, or the folder is not writable.
        """
        check_writable(self.folder)
        fingerprint = _normalise(fingerprint)
        old = self._existing_fingerprint()
        if old is not None and old != fingerprint:
            if not overwrite:
                diff = describe_mismatch(old, fingerprint)
                raise ResultsError(
                    f"{self.folder} holds results of a run with other arguments "
                    f"({'; '.join(diff[:4])}{'; ...' if len(diff) > 4 else ''}); "
                    "use another output folder or overwrite (--overwrite)"
                )
            self.clear()
            old = None
        elif old is not None and overwrite:
            self.clear()
            old = None
        if old is not None and self.is_complete():
            return "complete"
        self._remove_stale_temps()
        write_json(self.folder / FINGERPRINT_FILE, fingerprint)
        return "resume" if self.done_ranges() else "new"

    def _existing_fingerprint(self) -> dict[str, Any] | None:
        """Fingerprint of whatever the folder holds (finished results first), or ``None``."""
        if (self.folder / META_FILE).is_file():
            try:
                meta = read_meta(self.folder)
            except ResultsError:
                meta = {}
            if isinstance(meta.get("fingerprint"), dict):
                return _normalise(meta["fingerprint"])
        path = self.folder / FINGERPRINT_FILE
        if path.is_file():
            try:
                fp = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ResultsError(f"{path}: unreadable ({exc}); use --overwrite") from exc
            return _normalise(fp)
        if self.parts_dir.is_dir() and any(self.parts_dir.iterdir()):
            raise ResultsError(
                f"{self.folder}: part files without {FINGERPRINT_FILE}; use --overwrite"
            )
        return None

    def clear(self) -> None:
        """Remove the files a run owns (results, parts, fingerprint); nothing else."""
        for name in OWNED:
            with contextlib.suppress(FileNotFoundError):
                (self.folder / name).unlink()
        shutil.rmtree(self.parts_dir, ignore_errors=True)

    def _remove_stale_temps(self) -> None:
        if not self.parts_dir.is_dir():
            return
        for p in self.parts_dir.iterdir():
            if p.name.startswith(".") and ".tmp" in p.name:
                with contextlib.suppress(OSError):
                    p.unlink()

    # ------------------------------------------------------------------ parts
    def done_ranges(self) -> list[tuple[int, int]]:
        """``(start, stop)`` tile-index ranges of the part files present, sorted."""
        if not self.parts_dir.is_dir():
            return []
        out = []
        for p in self.parts_dir.iterdir():
            m = _PART_RE.match(p.name)
            if m:
                out.append((int(m.group(1)), int(m.group(2))))
        return sorted(out)

    def write_part(self, start: int, stop: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Write the outputs of tiles ``[start, stop)`` atomically."""
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        path = self.parts_dir / f"p{start:010d}-{stop:010d}.npz"
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            savez: Any = np.savez
            savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())

    def read_parts(self, n_tiles: int, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """Merge every part file into arrays in tile order, checking coverage.

        Raises
        ------
        ResultsError
            When the parts leave a tile out, cover one twice or hold other arrays.
        """
        keys = list(keys)
        chunks: dict[str, list[np.ndarray]] = {k: [] for k in keys}
        expected = 0
        for start, stop in self.done_ranges():
            path = self.parts_dir / f"p{start:010d}-{stop:010d}.npz"
            if start != expected:
                what = "missing" if start > expected else "covered twice"
                raise ResultsError(
                    f"{self.folder}: part files inconsistent (tiles from {min(start, expected)} "
                    f"{what}); use --overwrite"
                )
            data = self._load_part(path, stop - start, keys)
            for k in keys:
                chunks[k].append(data[k])
            expected = stop
        if expected != n_tiles:
            raise ResultsError(
                f"{self.folder}: part files cover {expected} of {n_tiles} tiles; use --overwrite"
            )
        return {k: np.concatenate(v) if v else np.empty((0,)) for k, v in chunks.items()}

    def discard_bad_parts(self, keys: Iterable[str]) -> int:
        """Delete part files that cannot be read (they will be recomputed); return how many."""
        keys = list(keys)
        bad = 0
        for start, stop in self.done_ranges():
            path = self.parts_dir / f"p{start:010d}-{stop:010d}.npz"
            try:
                self._load_part(path, stop - start, keys)
            except ResultsError as exc:
                log.warning("%s; recomputing those tiles", exc)
                path.unlink(missing_ok=True)
                bad += 1
        return bad

    @staticmethod
    def _load_part(path: Path, n: int, keys: list[str]) -> dict[str, np.ndarray]:
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in keys}
        except Exception as exc:  # zipfile/OSError/KeyError/ValueError for damaged files
            raise ResultsError(f"{path}: unreadable part file ({exc})") from exc
        for k, v in data.items():
            if len(v) != n:
                raise ResultsError(f"{path}: {k} has {len(v)} rows, expected {n}")
        return data

    def finish(self) -> None:
        """Remove the parts and the fingerprint once the results are saved."""
        shutil.rmtree(self.parts_dir, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (self.folder / FINGERPRINT_FILE).unlink()


def _normalise(obj: Any) -> Any:
    """Round-trip through JSON so tuples/lists and numpy scalars compare equal."""
    from tileuq._io import _json_default

    return json.loads(json.dumps(obj, default=_json_default, sort_keys=True))
