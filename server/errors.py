"""Errors of the lab server, as one-line messages for the CLI and MLflow-style JSON for HTTP."""

from __future__ import annotations


class LabServerError(Exception):
    """A failure with a one-line message and a remedy; `status` is the HTTP status it maps to."""

    status = 400
    error_code = "INVALID_PARAMETER_VALUE"

    def __init__(self, message: str, remedy: str | None = None):
        super().__init__(message)
        self.remedy = remedy

    def one_line(self) -> str:
        return f"{self} ({self.remedy})" if self.remedy else str(self)

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
