"""Exceptions and warning categories of ncp."""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "DataError",
    "ModelError",
    "NCPError",
    "NCPPluginWarning",
    "NCPWarning",
    "PluginConflictError",
    "PluginError",
    "UnknownWiringError",
    "WiringError",
]


class NCPError(Exception):
    """Base class of every error raised on purpose by ncp."""


class WiringError(NCPError, ValueError):
    """A wiring was asked for something its structure does not allow."""


class PluginError(NCPError):
    """A plugin failed to import, to register, or implements an unknown hook."""


class PluginConflictError(PluginError, LookupError):
    """Two plugins registered the same name."""


class UnknownWiringError(NCPError, LookupError):
    """No installed plugin provides the requested wiring."""


class DataError(NCPError, ValueError):
    """A dataset could not be read or does not fit the task."""


class CheckpointError(NCPError, ValueError):
    """A saved run or model could not be loaded."""


class ModelError(NCPError, ValueError):
    """A cell or model was given arguments, inputs or a state it cannot take."""


class NCPWarning(UserWarning):
    """Base category of warnings emitted by ncp."""


class NCPPluginWarning(NCPWarning):
    """A plugin could not be loaded, or a saved model's plugin is missing."""
