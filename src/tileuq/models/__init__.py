"""Uncertainty-aware tile models: SNGP, deep ensembles, MC dropout and a deterministic baseline.

Every method is a :class:`TileModel` built by :func:`build_model` or loaded by
:func:`load_model`; :meth:`TileModel.predict` gives one output dictionary for all of them
(logits, probabilities, predictions, confidence and per-tile ``scores``, larger = less
trustworthy).  The maths and the conventions chosen are documented, with their references,
in :mod:`tileuq.models.sngp` (random-feature GP head, precision, variance, mean field),
:mod:`tileuq.models.spectral` (bounded spectral normalization), :mod:`tileuq.models.scores`
(entropy / mutual information) and :mod:`tileuq.models.ensemble`.

Training protocol (for ``tileuq.train`` and any other trainer)
--------------------------------------------------------------
- Inputs: ``model(x)`` takes uint8 tiles (N, H, W, 3) or float (N, 3, H, W) in [0, 1] and
  normalizes them itself (``model.normalizer``, stored with the weights).  Augment before.
- Loss: cross-entropy on ``model(x)`` — the **raw** logits.  For SNGP these are the logits
  before the mean-field adjustment, which is applied only in :meth:`TileModel.predict`.
- Ensembles: train ``model.members[k]`` one by one (``model(x, member=k)`` gives member k's
  logits; members are initialised with seeds ``seed + k``); use a different data-order seed
  per member.  ``model.members`` is a list of one network for the other methods.
- SNGP: call ``model.reset_precision()`` at the start of **every** epoch (the precision is
  the exact sum over one epoch; ``num_data=len(train_set)`` in ``build_model`` turns a
  forgotten reset into an error), keep the model in ``train()`` mode while the epoch runs
  (the precision accumulates only in training mode, without autograd), then call
  ``model.eval()`` and ``model.finalize()`` after the last epoch (validation in between may
  call ``predict``: the covariance is computed lazily from whatever has accumulated).
  Checkpoint the model after an epoch, not in the middle of one.
- MC dropout: train with dropout as usual; ``predict`` runs ``mc_samples`` passes with only
  the dropout layers active.
- Provenance: put training details (data hash, seeds, metrics) in ``model.training_info`` and
  calibration thresholds in ``model.calibration`` before ``model.save(folder)``.
"""

from __future__ import annotations

from tileuq.models.backbones import BACKBONES, ResNet, build_backbone
from tileuq.models.build import METHODS, build_model, default_hyperparameters
from tileuq.models.checkpoint import load_model
from tileuq.models.ensemble import DeepEnsemble
from tileuq.models.sngp import SNGPHead
from tileuq.models.sngp_core import import_sngp_core
from tileuq.models.spectral import SpectralBatchNorm2d, spectral_norm
from tileuq.models.tile_model import TileModel

__all__ = [
    "BACKBONES",
    "METHODS",
    "DeepEnsemble",
    "ResNet",
    "SNGPHead",
    "SpectralBatchNorm2d",
    "TileModel",
    "build_backbone",
    "build_model",
    "default_hyperparameters",
    "import_sngp_core",
    "load_model",
    "spectral_norm",
]
