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
        status = response.status_code
        if status == 401:
            raise TrackingError(
                f"the server at {self.base} did not accept the token of team {self.team!r}",
                "run `labclient login` again, or ask the admin for a new token",
            )
        if status == 429:
            raise TrackingError("too many failed logins from this machine", "wait a minute, then try again")
        if status == 403:
            raise PermissionDenied(_message(response))
        if response.ok:
            try:
                return response.json()
            except ValueError:
                raise ServerUnreachable(f"{self.base} answered {path} with something that is not JSON",
                                        "check the URL, and any proxy in front of the server") from None
        if 400 <= status < 500 and _error_code(response) in ("INVALID_PARAMETER_VALUE", "INVALID_STATE"):
            raise TrackingError(f"the server answered {status}: {_message(response)}")
        # a proxy's page, a 404 from something that is not (or not only) a labserver, a 5xx or the server's 503
        # while its database is down: an outage to wait out, which a run does in its journal
        said = _message(response) if _error_code(response) else response.headers.get("Content-Type", "no content type")
        remedy = ("try again shortly" if status >= 500 else
                  "check the URL if it persists: is it a labserver, and does a proxy in front of it pass this route?")
        raise ServerUnreachable(f"the server at {self.base} answered {status} to {path} ({said})",
                                f"{remedy}; a run keeps everything in its journal meanwhile")

    def whoami(self) -> dict:
        return self._call("GET", routes.WHOAMI)


def _error_code(response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("error_code") if isinstance(body, dict) else None


def _message(response) -> str:
    try:
        return str(response.json().get("message", response.text))[:300]
    except ValueError:
        return response.text[:300]
