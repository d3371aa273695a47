"""Exceptions of ``sam_model``; all are ``ValueError`` subclasses.

Callers outside the package (the CLI) can catch ``SamModelError`` to report
bad input (a wrong checkpoint file, an unusable image) as a usage error.
"""

from __future__ import annotations


class SamModelError(ValueError):
    """Bad input to a sam_model function."""


class CheckpointError(SamModelError):
    """A checkpoint file cannot be read or does not fit the model."""


class ImageFormatError(SamModelError):
    """An image has a shape or dtype that cannot be turned into HWC uint8 RGB."""
