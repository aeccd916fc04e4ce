"""The lab's own routes on a labserver: who am I, and the next run number."""

from __future__ import annotations

from labclient.errors import ServerUnreachable
from labclient.store.http import answer
from labserver import routes


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
        return answer(response, base=self.base, path=path, team=self.team)

    def whoami(self) -> dict:
        return self._call("GET", routes.WHOAMI)
