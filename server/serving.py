"""Serving labserver: uvicorn in this process, the lab's app, and the HTTP limits MLflow's launcher does not set.

`mlflow server --app-name lab` still works (the plugin is registered as MLflow's `mlflow.app` entry point), but
`labserver serve` runs uvicorn itself: one process instead of MLflow's launcher plus a worker, MLflow's
environment set as its `server` command would set it, and two protections against clients that hold
connections open:
- the request headers must arrive within HEADER_TIMEOUT_S of the connection (or of the previous response on a
  kept-alive connection); uvicorn waits for them forever, which lets a client that trickles header bytes keep
  a socket for as long as it likes;
- `X-Forwarded-For` is believed only from the proxies named with `--trusted-proxies`. uvicorn's default trusts
  127.0.0.1, which would let any local client pick the address its failed logins are counted against.
Bodies have their own time limits in the front door (labserver/frontdoor.py).
"""

from __future__ import annotations

from pathlib import Path

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_S = 10.0


class LabH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's headers."""

    _header_deadline = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the headers are complete: the body has limits of its own
            self._disarm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_deadline()  # the next request on this connection gets the same deadline

    def connection_lost(self, exc) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(HEADER_TIMEOUT_S, self._headers_too_slow)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def mlflow_environment(db_uri: str, artifacts_destination: str, allowed_hosts: str | None) -> dict[str, str]:
    """What `mlflow server --backend-store-uri DB --artifacts-destination DEST --serve-artifacts` puts in the
    environment of its workers, where MLflow's handlers read it."""
    from mlflow.server import (
        ARTIFACT_ROOT_ENV_VAR,
        ARTIFACTS_DESTINATION_ENV_VAR,
        BACKEND_STORE_URI_ENV_VAR,
        REGISTRY_STORE_URI_ENV_VAR,
        SERVE_ARTIFACTS_ENV_VAR,
    )

    env = {
        BACKEND_STORE_URI_ENV_VAR: db_uri,
        REGISTRY_STORE_URI_ENV_VAR: db_uri,
        ARTIFACT_ROOT_ENV_VAR: "mlflow-artifacts:/",
        SERVE_ARTIFACTS_ENV_VAR: "true",
        ARTIFACTS_DESTINATION_ENV_VAR: artifacts_destination,
        "_MLFLOW_SGI_NAME": "uvicorn",  # basic-auth then returns the FastAPI app, with its artifact streaming
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_ENABLE_WORKSPACES": "false",
        "_MLFLOW_IN_JOB_EXECUTOR": "false",
    }
    if allowed_hosts:
        env["MLFLOW_SERVER_ALLOWED_HOSTS"] = allowed_hosts
    return env


def run(*, host: str, port: int, workers: int, trusted_proxies: str | None) -> None:
    """Serve until SIGTERM or SIGINT (uvicorn shuts down gracefully on both)."""
    import uvicorn
    from mlflow.server import _UVICORN_LOG_CONFIG

    uvicorn.run(
        "labserver.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        http=LabH11Protocol,
        proxy_headers=bool(trusted_proxies),
        forwarded_allow_ips=trusted_proxies or "",
        log_config=str(Path(_UVICORN_LOG_CONFIG)),
        timeout_keep_alive=5,
        server_header=False,
    )
