"""Typed errors. Each carries a one-line message and a remedy; the CLI prints both, never a traceback."""

from __future__ import annotations

from labserver.errors import OneLineError


class LabError(OneLineError):
    """Base class of labclient's errors: `str(err)` is the one-line message, `remedy` says what to do about it."""


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


class ServerUnreachable(TrackingError):
    """No answer, a timeout, a 5xx, or an answer that is not the store's own: worth retrying later (the
    journal keeps everything meanwhile)."""


class StoreFull(ServerUnreachable):
    """The tracking store's own disk is full: retried like an outage, but the remedy is disk space."""


class LabWarning(UserWarning):
    """What the Python API reports without stopping the run: an entry the store refused for good, or a
    sender that stopped (a token rotated mid-run). `labclient train` prints the same lines."""


class DiskFull(LabError):
    """No space left on the device while writing the journal or the cache; what was written before stays readable."""

    def __init__(self, where: str, remedy: str | None = None):
        super().__init__(
            f"no space left on the device while writing {where}", remedy or "free some disk space and try again"
        )


class RunNotFound(LabError):
    pass


class InvalidReference(ConfigError):
    pass


class NoWeights(LabError):
    """The run has no weights file to fetch (a comparison run, or a training that failed before saving)."""


class IntegrityError(LabError):
    """A downloaded file does not match the sha256 recorded when it was uploaded."""


class CorruptCacheEntry(LabError):
    """A cached blob no longer matches its sha256; `fetch --force` downloads it again."""

    def __init__(self, message: str, remedy: str | None = None, reference: str | None = None):
        super().__init__(message, remedy)
        self.reference = reference


class NotCached(LabError):
    pass


class UnsafePickle(LabError):
    """A pickle names a global outside the allow-list; nothing of it was run."""

    def __init__(self, global_name: str, message: str | None = None):
        super().__init__(
            message
            or f"refused to load a pickle that names {global_name}: it is not on the allow-list, and nothing of it "
            "was run",
            "pickles may hold only numbers, strings, lists, dicts, tuples and numpy arrays of numbers; "
            "exchange those or safetensors",
        )
        self.global_name = global_name


class WeightsFormatError(LabError):
    """A weights file is unreadable, truncated, hostile or of an unknown format."""


class ArchitectureError(LabError):
    """Weights that do not fit the model spec, or a model whose architecture cannot be told."""


class IncompatibleModels(LabError):
    """Two models that cannot be evaluated on the same data (input shapes or label sets differ)."""


class UnsafeCachePath(IntegrityError):
    """A name that would put a cache file somewhere it does not belong."""


class SpecError(LabError):
    """A model spec (labspec/1) that is malformed or describes something we do not build."""


class EditorFailed(LabError):
    """The editor for `labclient diary --edit` could not be started or failed."""


class PermissionDenied(TrackingError):
    """The server knows the team but does not let it do this (HTTP 403)."""


class Refused(TrackingError):
    """The store refused this one request for good; the sender skips it and says so."""


class JournalError(LabError):
    """The journal folder cannot be written or read."""


class JournalVanished(JournalError):
    """The folder is gone: another `labclient sync` sent the run and removed it a moment ago."""


class EntryTooLong(LabError):
    """A team's diary entry longer than MLflow keeps in an experiment description."""


class EditRefused(LabError):
    """The server lets this team read the entry but not change it (HTTP 403)."""

    exit_code = 3


class TooManyRequests(ServerUnreachable):
    """The server throttles this address (HTTP 429) after failed logins: wait, then try again."""
