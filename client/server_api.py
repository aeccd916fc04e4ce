"""The lab's own routes on a labserver: who am I, and the next run number."""

from __future__ import annotations

from labclient.errors import LabError, ServerUnreachable, TrackingError
from labserver import routes


class PermissionDenied(LabError):
    pass


class ServerApi:
    def __init__(self, target, timeout: float = 10.0):
        self.base = target.uri.rstrip("/")
        self.team = target.team
        self.token = target.token
        self.timeout = timeout

    def _call(self, method: str, path: str, payload: dict | None = None) -> dict:
        import requests

        auth = (self.team, self.token) if self.team and self.token else None
        try:
            response = requests.request(method, self.base + path, json=payload, auth=auth, timeout=self.timeout)
        except requests.RequestException as err:
            raise ServerUnreachable(
                f"cannot reach the server at {self.base} ({type(err).__name__})",
                "check the URL and that labserver is running",
            ) from None
        if response.status_code == 401:
            raise TrackingError(
                f"the server at {self.base} did not accept the token of team {self.team!r}",
                "run `labclient login` again, or ask the admin for a new token",
            )
        if response.status_code == 429:
            raise TrackingError("too many failed logins from this machine", "wait a minute, then try again")
        if response.status_code == 403:
            raise PermissionDenied(_message(response))
        if response.status_code == 404:
            raise TrackingError(f"{self.base} is not a labserver (no {path})", "check the URL")
        if response.status_code >= 500:
            raise ServerUnreachable(f"the server at {self.base} answered {response.status_code}", "try again later")
        if not response.ok:
            raise TrackingError(f"the server answered {response.status_code}: {_message(response)}")
        try:
            return response.json()
        except ValueError:
            raise TrackingError(f"{self.base} answered with something that is not JSON", "check the URL") from None

    def whoami(self) -> dict:
        return self._call("GET", routes.WHOAMI)


def _message(response) -> str:
    try:
        return str(response.json().get("message", response.text))[:300]
    except ValueError:
        return response.text[:300]
