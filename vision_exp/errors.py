"""Errors a user can fix: entry points print the message as one paragraph and exit non-zero."""

import signal


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


class RunInterrupted(BaseException):
    """SIGINT or SIGTERM while training: ends the MLflow run KILLED, like Ctrl-C does.

    A BaseException, so that ``except Exception`` in a library (Optuna, MLflow) cannot swallow it.
    """

    def __init__(self, message: str = "Interrupted.", signum: int = signal.SIGTERM) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process killed by that signal."""
        return 128 + self.signum


class TrackingError(VisionExpError):
    """The MLflow tracking store cannot be reached or refuses the run."""
