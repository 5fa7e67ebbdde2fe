"""Model side of the engine: device choice, batches on the device, out-of-memory back-off.

:class:`Predictor` runs ``model.predict`` on batches of uint8 tiles and returns numpy arrays.
On CUDA the tiles arrive in pinned memory, are copied without blocking, converted to
channels-last float on the device and run under autocast (bf16 where supported, else fp16);
the model keeps what must stay float32 (the SNGP covariance) in float32 itself.  With
``batch_size="auto"`` an out-of-memory error halves the micro-batch and retries the same
tiles, so no tile is lost or run twice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tileuq.errors import TileuqError

if TYPE_CHECKING:
    from tileuq.models import TileModel

log = logging.getLogger(__name__)

#: first batch size tried by ``batch_size="auto"`` per device type
AUTO_BATCH = {"cuda": 256, "mps": 64, "cpu": 32}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"`` / ``"cpu"`` / ``"cuda[:i]"`` into a :class:`torch.device`.

    ``"auto"`` picks CUDA when available, then Apple MPS, else the CPU.
    """
    if isinstance(device, torch.device):
        return device
    name = str(device).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise TileuqError(f"device={device!r}: not a device name ({exc})") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TileuqError(f"device={device!r}: CUDA is not available on this machine")
    return dev


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an out-of-memory error from torch (CUDA or CPU allocator)."""
    if isinstance(exc, MemoryError):
        return True
    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    if isinstance(exc, oom):
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in msg or "can't allocate memory" in msg
    )


def parse_batch_size(batch_size: int | str) -> int | None:
    """``"auto"`` → ``None``; a positive int (or digit string) → that int."""
    if isinstance(batch_size, str):
        if batch_size.strip().lower() == "auto":
            return None
        if not batch_size.strip().isdigit():
            raise TileuqError(f"batch_size={batch_size!r}: expected a positive integer or 'auto'")
        batch_size = int(batch_size)
    if int(batch_size) < 1:
        raise TileuqError(f"batch_size={batch_size!r}: must be at least 1")
    return int(batch_size)


class Predictor:
    """Run a :class:`~tileuq.models.TileModel` on batches of uint8 tiles.

    Parameters
    ----------
    model
        The model (moved to ``device`` and put in eval mode).
    device
        Where to run.
    batch_size
        Tiles per model call, or ``"auto"`` (a device-dependent start, halved on out-of-memory).
    amp
        Autocast on CUDA: ``"auto"``/``True`` (bf16 where supported, else fp16), ``"bf16"``,
        ``"fp16"``, or ``False``.  Ignored on the CPU.
    compile
        Compile the model's modules with :func:`torch.compile` (CUDA mostly).
    seed
        Base of the per-batch random seed (``seed + first tile index``), so stochastic
        methods (MC dropout) give the same table on every run and on resume.
    """

    def __init__(
        self,
        model: TileModel,
        device: torch.device,
        *,
        batch_size: int | str = "auto",
        amp: bool | str = "auto",
        compile: bool = False,
        seed: int = 0,
    ) -> None:
        self.model = model
        self.device = device
        fixed = parse_batch_size(batch_size)
        self.auto = fixed is None
        self.batch_size = fixed if fixed is not None else AUTO_BATCH.get(device.type, 32)
        self.micro = self.batch_size
        self.seed = int(seed)
        self.amp_dtype = _amp_dtype(amp, device)
        self.backoffs = 0
        model.eval()
        model.to(device)
        if device.type == "cuda":
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        if compile:
            for child in model.children():
                child.compile()

    @property
    def precision(self) -> str:
        """``"float32"``, ``"bfloat16"`` or ``"float16"`` (autocast dtype)."""
        return "float32" if self.amp_dtype is None else str(self.amp_dtype).split(".")[-1]

    def allocate(self, n: int, tile_px: int) -> tuple[Any, np.ndarray]:
        """Allocate a tile buffer for the reader: pinned memory on CUDA, plain numpy elsewhere."""
        h = w = int(tile_px)
        if self.device.type == "cuda":
            t = torch.empty((n, h, w, 3), dtype=torch.uint8, pin_memory=True)
            return t, t.numpy()
        return None, np.empty((n, h, w, 3), dtype=np.uint8)

    def __call__(self, tiles: np.ndarray, first_index: int = 0) -> dict[str, np.ndarray]:
        """Predict a batch, splitting it into micro-batches and backing off on out-of-memory.

        Returns
        -------
        dict
            ``probabilities (B, C)``, ``pred_index (B,)``, ``confidence (B,)`` and
            ``score_<name> (B,)`` numpy arrays, in tile order.
        """
        n = len(tiles)
        outs: list[dict[str, np.ndarray]] = []
        i = 0
        while i < n:
            m = min(self.micro, n - i)
            try:
                outs.append(self._predict(tiles[i : i + m], first_index + i))
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                self._free()
                if not self.auto or m <= 1:
                    raise MemoryError(
                        f"out of memory running the model on {m} tiles on {self.device}"
                        + ("; use a smaller --batch-size or 'auto'" if not self.auto else "")
                    ) from exc
                # halve the micro-batch (keeping cut points at multiples of it), always below m
                self.micro = max(1, min(self.micro // 2, m - 1))
                self.backoffs += 1
                log.warning(
                    "out of memory at batch size %d on %s; retrying with %d",
                    m,
                    self.device,
                    self.micro,
                )
                continue
            i += m
        if len(outs) == 1:
            return outs[0]
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

    def _free(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _predict(self, tiles: np.ndarray | torch.Tensor, first_index: int) -> dict[str, np.ndarray]:
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(self.seed + first_index)
            if self.device.type == "cpu":
                out = self.model.predict(tiles)
            else:
                x = torch.as_tensor(tiles).to(self.device, non_blocking=True)
                x = x.permute(0, 3, 1, 2).float().div_(255.0)
                x = x.contiguous(memory_format=torch.channels_last)
                if self.amp_dtype is not None:
                    with torch.autocast(self.device.type, dtype=self.amp_dtype):
                        out = self.model.predict(x)
                else:
                    out = self.model.predict(x)
        return _to_numpy(out, self.model.score_names)


def _amp_dtype(amp: bool | str, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or amp is False or str(amp).lower() in {"false", "no", "off"}:
        return None
    key = str(amp).lower()
    if key in {"fp16", "float16", "half"}:
        return torch.float16
    if key in {"bf16", "bfloat16"}:
        return torch.bfloat16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _to_numpy(
    out: Mapping[str, Any], score_names: tuple[str, ...] | list[str]
) -> dict[str, np.ndarray]:
    def arr(t: Any, dtype: Any) -> np.ndarray:
        if isinstance(t, torch.Tensor):
            t = t.detach().float().cpu() if dtype is np.float32 else t.detach().cpu()
            return np.asarray(t.numpy(), dtype=dtype)
        return np.asarray(t, dtype=dtype)

    res = {
        "probabilities": arr(out["probabilities"], np.float32),
        "pred_index": arr(out["predictions"], np.int64),
        "confidence": arr(out["confidence"], np.float32),
    }
    scores = out.get("scores", {})
    for name in score_names:
        if name not in scores:
            raise TileuqError(f"model.predict gave no score {name!r} (it gave {sorted(scores)})")
        res[f"score_{name}"] = arr(scores[name], np.float32)
    return res
