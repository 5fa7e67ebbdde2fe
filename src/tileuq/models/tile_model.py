"""``TileModel``: one predictor interface for every uncertainty method."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from tileuq.errors import ModelError
from tileuq.models.backbones import Normalize
from tileuq.models.scores import BASE_SCORES, ENSEMBLE_SCORES
from tileuq.models.sngp import SNGPHead

FORMAT = "tileuq-model"
FORMAT_VERSION = 1

SCORE_NAMES: dict[str, tuple[str, ...]] = {
    "deterministic": BASE_SCORES,
    "sngp": (*BASE_SCORES, "variance"),
    "ensemble": (*BASE_SCORES, *ENSEMBLE_SCORES),
    "mc_dropout": (*BASE_SCORES, *ENSEMBLE_SCORES),
}


def _version_key(t: torch.Tensor) -> tuple[int, int]:
    return (t.data_ptr(), -1 if torch.is_inference(t) else t._version)


def state_dict_sha256(state: dict[str, torch.Tensor]) -> str:
    """sha256 of a state dict: sorted names, dtypes, shapes and raw little-endian bytes."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().to("cpu").contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).removeprefix("torch.").encode())
        h.update(repr(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def as_image_batch(batch: Any, device: torch.device) -> torch.Tensor:
    """Validate a tile batch and move it to ``device`` as ``(N, 3, H, W)`` uint8 or float.

    uint8 input is ``(N, H, W, 3)`` (numpy or torch, any device); the permuted view is
    channels_last in memory, so no copy is made before normalization.  Float input is a
    torch tensor ``(N, 3, H, W)`` with values in [0, 1].
    """
    if isinstance(batch, np.ndarray):
        if batch.dtype != np.uint8:
            raise ModelError(
                f"batch: numpy tiles must be uint8 (N, H, W, 3), got dtype {batch.dtype}"
            )
        batch = torch.from_numpy(np.ascontiguousarray(batch))
    if not isinstance(batch, torch.Tensor):
        raise ModelError(f"batch: expected a numpy array or torch tensor, got {type(batch)!r}")
    if batch.dtype == torch.uint8:
        if batch.dim() != 4 or batch.shape[-1] != 3:
            raise ModelError(
                f"batch: uint8 tiles must have shape (N, H, W, 3), got {tuple(batch.shape)}"
            )
        return batch.to(device, non_blocking=True).permute(0, 3, 1, 2)
    if batch.is_floating_point():
        if batch.dim() != 4 or batch.shape[1] != 3:
            raise ModelError(
                f"batch: float tiles must have shape (N, 3, H, W) in [0, 1], "
                f"got {tuple(batch.shape)}"
            )
        return batch.to(device, non_blocking=True)
    raise ModelError(f"batch: tiles must be uint8 or floating point, got {batch.dtype}")


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, torch.Tensor):
        t = obj.float() if obj.is_floating_point() else obj
        return t.to("cpu")
    return obj


class TileModel(nn.Module):
    """A tile classifier with uncertainty: the object every other room of tileuq uses.

    Build one with :func:`tileuq.build_model` or :func:`tileuq.load_model`; see
    :mod:`tileuq.models` for the training protocol.

    Attributes
    ----------
    method
        ``"sngp"``, ``"ensemble"``, ``"mc_dropout"`` or ``"deterministic"``.
    classes, colors
        Class names and their display colours (``"#rrggbb"``).
    tile_px, mpp
        Tile side in pixels and target microns per pixel (None: native resolution).
    normalizer
        The input normalization (buffers ``mean`` and ``std``), applied once per batch.
    core
        The method module (see :mod:`tileuq.models.methods`).
    training_info
        Training provenance (trainer, data hash, metrics), saved under ``"training"``.
    calibration
        Calibration thresholds (set by :mod:`tileuq.uncertainty`), saved under
        ``"calibration"``; ``None`` until calibrated.
    feature_scorers, feature_scorer_info
        Fitted feature-space scorers ``{score name: scorer}`` whose scores ``predict`` adds,
        and their provenance (reference tiles); saved as ``scorers.safetensors``.  See
        :mod:`tileuq.models.feature_scorers`.
    """

    def __init__(
        self,
        core: nn.Module,
        normalizer: Normalize,
        *,
        method: str,
        backbone: str,
        classes: Sequence[str],
        colors: Sequence[str],
        tile_px: int,
        mpp: float | None,
        hyperparameters: dict[str, Any],
        name: str | None = None,
    ) -> None:
        super().__init__()
        self.normalizer = normalizer
        self.core = core
        self.method = method
        self.backbone = backbone
        self.classes = list(classes)
        self.colors = list(colors)
        self.tile_px = int(tile_px)
        self.mpp = None if mpp is None else float(mpp)
        self.hyperparameters = dict(hyperparameters)
        self.name = name
        self.training_info: dict[str, Any] = {}
        self.calibration: dict[str, Any] | None = None
        self.source: dict[str, Any] | None = None
        self.feature_scorers: dict[str, Any] = {}
        self.feature_scorer_info: dict[str, dict[str, Any]] = {}
        self._hash_cache: tuple[Any, str] | None = None

    # ------------------------------------------------------------------ identity
    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @property
    def score_names(self) -> tuple[str, ...]:
        """Names of the per-tile scores in ``predict(...)["scores"]`` (larger = worse).

        The method's own scores, then one per carried feature scorer.
        """
        return (*SCORE_NAMES[self.method], *self.feature_scorers)

    @property
    def device(self) -> torch.device:
        """Device of the model's weights."""
        return self.normalizer.mean.device

    @property
    def model_hash(self) -> str:
        """Identity of everything ``predict`` depends on.

        :attr:`weights_hash` for a model without feature scorers, else the sha256 of it and
        each scorer's content hash (:func:`tileuq.models.feature_scorers.combined_hash`).
        """
        if not self.feature_scorers:
            return self.weights_hash
        from tileuq.models.feature_scorers import combined_hash

        return combined_hash(self.weights_hash, self.feature_scorers)

    @property
    def weights_hash(self) -> str:
        """sha256 of the weights (state dict; see :func:`state_dict_sha256`)."""
        state = self.state_dict()
        key = tuple((k, _version_key(v)) for k, v in state.items())
        if self._hash_cache is None or self._hash_cache[0] != key:
            self._hash_cache = (key, state_dict_sha256(state))
        return self._hash_cache[1]

    @property
    def model_id(self) -> str:
        """``<name or method>-<backbone>-<first 12 hex digits of model_hash>``."""
        return f"{self.name or self.method}-{self.backbone}-{self.model_hash[:12]}"

    @property
    def manifest(self) -> dict[str, Any]:
        """The ``model.json`` dictionary (architecture, classes, provenance, calibration)."""
        from tileuq import __version__
        from tileuq.models.feature_scorers import manifest_entry

        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "model_id": self.model_id,
            "model_hash": self.model_hash,
            "method": self.method,
            "backbone": self.backbone,
            "num_classes": self.num_classes,
            "classes": list(self.classes),
            "colors": list(self.colors),
            "tile_px": self.tile_px,
            "mpp": self.mpp,
            "normalization": {
                "mean": [round(float(v), 8) for v in self.normalizer.mean.flatten()],
                "std": [round(float(v), 8) for v in self.normalizer.std.flatten()],
            },
            "input": {"dtype": "uint8", "layout": "NHWC", "channels": "RGB"},
            "hyperparameters": dict(self.hyperparameters),
            "score_names": list(self.score_names),
            "training": dict(self.training_info),
            "calibration": self.calibration,
            "source": self.source,
            "weights": {"file": "model.safetensors", "sha256": self.weights_hash},
            "feature_scorers": manifest_entry(self),
            "versions": {"tileuq": __version__, "torch": str(torch.__version__)},
        }

    # ------------------------------------------------------------------ training protocol
    @property
    def members(self) -> list[nn.Module]:
        """Trainable networks: K members of an ensemble, else a list of one network."""
        return self.core.members  # type: ignore[return-value]

    def sngp_heads(self) -> list[SNGPHead]:
        """Return the SNGP output layers in the model (empty for other methods)."""
        return [m for m in self.modules() if isinstance(m, SNGPHead)]

    def reset_precision(self) -> None:
        """Reset every SNGP precision accumulator: call at the start of each training epoch."""
        for h in self.sngp_heads():
            h.reset_precision()

    def finalize(self) -> None:
        """Compute and cache the SNGP covariance after the last training epoch (no-op else)."""
        for h in self.sngp_heads():
            h.finalize()

    def normalize(self, batch: Any) -> torch.Tensor:
        """Decode and normalize a tile batch (uint8 NHWC or float NCHW in [0, 1])."""
        return self.normalizer(as_image_batch(batch, self.device))

    def forward(self, x: torch.Tensor, member: int | None = None) -> torch.Tensor:
        """Raw training logits of a batch (uint8 NHWC or float NCHW in [0, 1]).

        ``(N, C)`` for single networks (SNGP: raw logits, and the precision accumulates in
        training mode); for an ensemble ``member=k`` gives member k's ``(N, C)`` logits and
        ``member=None`` all members ``(K, N, C)``.
        """
        return self.core(self.normalize(x), member)

    # ------------------------------------------------------------------ inference
    def _channels_last(self) -> bool:
        # look at parameters, not ``conv.weight``: a spectrally normalized weight is computed on
        # access (and power-iterates in training mode)
        for p in self.parameters():
            if p.dim() == 4:
                return p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
        return False

    def predict(self, batch: Any, *, return_features: bool = False) -> dict[str, Any]:
        """Predict a batch of tiles.

        Parameters
        ----------
        batch
            uint8 tiles ``(N, H, W, 3)`` (numpy or torch, on any device; a pinned CPU tensor
            is copied non-blocking) or a float tensor ``(N, 3, H, W)`` with values in [0, 1].
        return_features
            Also return the pooled backbone features (ensembles: the K members' features
            concatenated, ``(N, K * D)``).

        Returns
        -------
        dict
            CPU tensors: ``logits`` (N, C) float32, ``probabilities`` (N, C),
            ``predictions`` (N,) int64, ``confidence`` (N,) (max probability) and ``scores``,
            a dict of (N,) float32 scores named :attr:`score_names` (larger = less
            trustworthy).  SNGP adds ``variance`` (N,) — sngp_core returns ``[B, 1]`` — and
            ``raw_logits``; its ``logits`` are the mean-field logits.  Ensembles and MC
            dropout return ``logits = log(mean probability)``.  ``features`` when asked.
            Each carried feature scorer adds its score (e.g. ``mahalanobis``), computed on
            the features of the same forward pass.

        Notes
        -----
        Runs under ``torch.inference_mode()`` in eval semantics (the model's train/eval flag
        is restored afterwards) and may be called inside ``torch.autocast``: the SNGP head,
        the scores and all outputs are computed in float32 (float64 for the covariance).
        """
        was_training = self.training
        if was_training:
            self.eval()
        try:
            fmt = torch.channels_last if self._channels_last() else torch.contiguous_format
            with torch.inference_mode():
                x = self.normalize(batch).contiguous(memory_format=fmt)
                scorers = self.feature_scorers
                out = self.core.infer(x, return_features or bool(scorers))  # type: ignore[operator]
                if scorers:
                    from tileuq.models.feature_scorers import add_feature_scores

                    add_feature_scores(out, scorers, return_features)
                return _to_cpu(out)
        finally:
            if was_training:
                self.train()

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``model.safetensors`` and ``model.json`` into folder ``path`` atomically.

        A ``path`` ending in ``.zip`` writes a single archive holding both files.
        """
        from tileuq.models.checkpoint import save_model

        save_model(self, path)

    def extra_repr(self) -> str:  # noqa: D102
        return (
            f"method={self.method!r}, backbone={self.backbone!r}, classes={self.classes}, "
            f"tile_px={self.tile_px}, mpp={self.mpp}"
        )
