"""Exceptions a user can cause: each message names the file or argument and the problem."""

from __future__ import annotations


class TileuqError(Exception):
    """Base class for errors caused by user input (files, arguments, environment)."""


class SlideError(TileuqError):
    """A slide (or image/stack) cannot be opened or read."""


class TilingError(TileuqError, ValueError):
    """A tiling specification is invalid or cannot be applied to a slide."""


class ModelError(TileuqError):
    """A model file, manifest or checkpoint is invalid, unsafe or incompatible."""


class CalibrationError(TileuqError, ValueError):
    """A calibration cannot be computed (too few samples, unknown classes, bad target)."""


class ResultsError(TileuqError):
    """Result files are missing, corrupt, or would be mixed with an incompatible run."""


class DataError(TileuqError, ValueError):
    """A labelled tile folder or split file (training / evaluation data) is invalid."""
