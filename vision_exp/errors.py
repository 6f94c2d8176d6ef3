"""Errors a user can fix: entry points print the message as one paragraph and exit non-zero."""


class VisionExpError(Exception):
    """Base class: the message is complete and meant for the user, no traceback needed."""


class ConfigError(VisionExpError):
    """A config value is outside what the code accepts."""


class DataError(VisionExpError):
    """A dataset cannot be found or read."""


class CheckpointError(VisionExpError):
    """A checkpoint is missing, truncated or does not match the model."""


class TrainingError(VisionExpError):
    """Training cannot go on (for example a non-finite loss)."""


class RegistryError(VisionExpError):
    """A registry operation names a model, version or alias that does not fit the store's state."""
