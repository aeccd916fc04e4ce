"""Errors of the lab server, as one-line messages for the CLI and MLflow-style JSON for HTTP."""

from __future__ import annotations


class OneLineError(Exception):
    """A failure said in one line with a remedy: the base of labserver's errors and of labclient's (LabError).
    `str(err)` is the message; commands print `one_line()` and exit with `exit_code`, never a traceback."""

    exit_code = 1

    def __init__(self, message: str, remedy: str | None = None):
        super().__init__(message)
        self.remedy = remedy

    def one_line(self) -> str:
        message = " ".join(str(self).split())
        return f"{message} ({self.remedy})" if self.remedy else message


class LabServerError(OneLineError):
    """A failure of the server; `status` is the HTTP status it maps to."""

    status = 400
    error_code = "INVALID_PARAMETER_VALUE"

    def as_json(self) -> dict[str, str]:
        return {"error_code": self.error_code, "message": self.one_line()}


class InvalidTeamName(LabServerError):
    pass


class TeamExists(LabServerError):
    status = 409
    error_code = "RESOURCE_ALREADY_EXISTS"


class NotFound(LabServerError):
    status = 404
    error_code = "RESOURCE_DOES_NOT_EXIST"


class TeamNotFound(NotFound):
    pass


class Unauthenticated(LabServerError):
    status = 401
    error_code = "UNAUTHENTICATED"


class PermissionDenied(LabServerError):
    status = 403
    error_code = "PERMISSION_DENIED"


class SchemaOutOfDate(LabServerError):
    pass


class PlaceholderSecret(LabServerError):
    """A secret copied unchanged from .env.example: anyone who read the example could log in."""


class BadRequest(LabServerError):
    pass
