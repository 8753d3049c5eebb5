"""Errors users can act on: each message names what is wrong and how to fix it."""

from __future__ import annotations


class VisionHeadsError(Exception):
    """Base class of every error visionheads raises on purpose."""


class ConfigError(VisionHeadsError, ValueError):
    """A name, option or combination of options that cannot work."""


class DataError(VisionHeadsError, ValueError):
    """Input data that is missing, malformed or disagrees with the task."""
