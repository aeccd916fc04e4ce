"""Typed errors. Each carries a one-line message and a remedy; the CLI prints both, never a traceback."""

from __future__ import annotations


class LabError(Exception):
    """Base class: `str(err)` is the one-line message, `remedy` says what to do about it."""

    exit_code = 1

    def __init__(self, message: str, remedy: str | None = None):
        super().__init__(message)
        self.remedy = remedy

    def one_line(self) -> str:
        message = " ".join(str(self).split())
        return f"{message} ({self.remedy})" if self.remedy else message


class ConfigError(LabError):
    """Invalid option, config file or environment variable."""

    exit_code = 2


class TrainerNotFound(ConfigError):
    pass


class InvalidTeamName(ConfigError):
    pass


class DatasetError(LabError):
    """A dataset is missing, corrupt or cannot be stored."""


class DeviceUnavailable(LabError):
    pass


class TrainingDiverged(LabError):
    """The cost became NaN or infinite; the run is marked failed."""


class TrackingError(LabError):
    """The tracking server or store cannot be reached or refused a request."""


class RunNotFound(LabError):
    pass


class InvalidReference(ConfigError):
    pass
