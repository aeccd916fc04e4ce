"""Where runs go: the embedded SQLite store, a database URI, or a shared labserver over HTTP.

Run numbers are given when a run is registered: by the server (labserver/identity.py), or, on a local database,
by the same code over the lab's table there (`StoreTransport.register`).
"""

from __future__ import annotations

import fcntl
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from labclient.config import Settings
from labclient.errors import InvalidTeamName, TrackingError
from labserver.names import RESERVED, TEAM_PATTERN, TEAM_RULE, run_name  # noqa: F401  (run_name: re-exported)

UI_LAYOUT = "workflowType=machine_learning"  # open MLflow's "Model training" layout, not the GenAI one


def validate_team(team: str | None) -> str:
    if not team:
        raise InvalidTeamName("no team given", "pass --team NAME or set LAB_TEAM")
    if not TEAM_PATTERN.fullmatch(team) or team in RESERVED:
        raise InvalidTeamName(f"invalid team name {team!r}", f"use {TEAM_RULE}, not one of {', '.join(sorted(RESERVED))}")
    return team


@dataclass(frozen=True)
class Target:
    uri: str
    kind: str  # "embedded", "database" or "server"
    artifact_root: Path
    token: str | None = None
    team: str | None = None

    @property
    def is_server(self) -> bool:
        return self.kind == "server"

    def ui_base(self) -> str:
        return self.uri.rstrip("/") if self.is_server else "http://127.0.0.1:5000"

    def run_url(self, experiment_id: str, run_id: str) -> str:
        return f"{self.ui_base()}/#/experiments/{experiment_id}/runs/{run_id}?{UI_LAYOUT}"

    def experiment_url(self, experiment_id: str) -> str:
        return f"{self.ui_base()}/#/experiments/{experiment_id}?{UI_LAYOUT}"


def resolve_target(settings: Settings, tracking_uri: str | None = None) -> Target:
    uri = tracking_uri or settings.tracking_uri or settings.embedded_tracking_uri
    token = settings.token.get_secret_value() if settings.token else None
    if uri.startswith(("http://", "https://")):
        kind = "server"
    elif uri.startswith(("sqlite:", "postgresql", "mysql")):
        kind = "embedded" if uri == settings.embedded_tracking_uri else "database"
    else:
        raise TrackingError(f"unsupported tracking URI {uri!r}", "use http(s)://server:port, sqlite:///path.db or postgresql://...")
    return Target(uri=uri, kind=kind, artifact_root=settings.embedded_artifact_root, token=token, team=settings.team)


def open_client(target: Target):
    """An MlflowClient for the target; a local database is created and migrated on first use."""
    if not os.environ.get("LAB_DEBUG"):
        # MLflow announces migrations and uploads at INFO; our own output says what matters. Set before
        # mlflow is first imported, which configures its loggers from this variable.
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    if not target.is_server:
        if not os.environ.get("LAB_DEBUG"):  # MLflow logs a store error's traceback before raising it, which we report
            logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
        prepare_database(target)
    else:
        check_server(target)
    use_credentials(target)
    from mlflow.tracking import MlflowClient

    # every command prints its own run link; MLflow's "View run at" on stdout would corrupt `--json` output
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    return MlflowClient(tracking_uri=target.uri)


def use_credentials(target: Target) -> None:
    """MLflow's client reads these for HTTP basic auth: the team is the user, the token its password."""
    if target.is_server and target.token and target.team:
        os.environ["MLFLOW_TRACKING_USERNAME"] = target.team
        os.environ["MLFLOW_TRACKING_PASSWORD"] = target.token


def check_server(target: Target) -> dict:
    """One quick request with clear errors, before MLflow's client retries a dead server for minutes."""
    from labclient.server_api import ServerApi

    if not (target.team and target.token):
        raise TrackingError(f"no team token for {target.uri}", "run `labclient login --server URL --team NAME` or set LAB_TEAM and LAB_TOKEN")
    return ServerApi(target).whoami()


def prepare_database(target: Target) -> None:
    from labserver.db import migrate

    if target.kind == "embedded":
        target.artifact_root.mkdir(parents=True, exist_ok=True)
    with _init_lock(target):
        try:
            if not migrate.is_lab_schema_current(target.uri):
                migrate.upgrade_all(target.uri)
        except Exception as err:
            raise store_unavailable(target, err) or TrackingError(
                f"cannot open the tracking store {target.uri}: {err}", "check the path or URI") from None


def store_unavailable(target: Target, err: Exception) -> TrackingError | None:
    """A database that is down, restarting or full is an outage to wait out in the journal (ServerUnreachable),
    not a wrong URI: None for the errors that a retry will not mend."""
    import sqlalchemy.exc as sa_errors
    from labclient.errors import ServerUnreachable, StoreFull
    from labclient.transport import brief_sql_error

    text = brief_sql_error(str(err))
    if "disk is full" in text or "No space left" in text:
        return StoreFull(f"the tracking store's disk is full ({text})",
                         "free some disk space where the store keeps its data; nothing is lost, "
                         "`labclient sync` sends it")
    outage = (sa_errors.OperationalError, sa_errors.InterfaceError, sa_errors.TimeoutError,
              sa_errors.DisconnectionError)
    if not isinstance(err, outage) or any(reason in text for reason in _NOT_AN_OUTAGE):
        return None
    if target.uri.startswith("sqlite") and "locked" not in text:
        return None  # a file that cannot be opened: a wrong path, not an outage
    return ServerUnreachable(f"the tracking store is unavailable: {type(err).__name__}: {text}",
                             "the run is journalled and sent when the store is back, or by `labclient sync`")


_NOT_AN_OUTAGE = ("password authentication failed", "does not exist", "no password supplied")


@contextmanager
def _init_lock(target: Target):
    """Two trainings started at once on a new store must not both create its tables."""
    target.artifact_root.mkdir(parents=True, exist_ok=True)
    with open(target.artifact_root / ".init.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_team_experiment(client, target: Target, team: str) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(team)
    if experiment is not None:
        return experiment.experiment_id
    if target.is_server:
        raise TrackingError(f"team {team!r} does not exist on {target.uri}", "ask the server admin to run `labserver team add`")
    try:
        return client.create_experiment(team, artifact_location=(target.artifact_root / team).as_uri())
    except MlflowException:  # another process created it a moment ago
        return client.get_experiment_by_name(team).experiment_id
