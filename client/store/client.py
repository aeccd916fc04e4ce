"""An MlflowClient for a target: a local database created and migrated on first use, a server checked first.

Run numbers are given when a run is registered: by the server (labserver/identity.py), or, on a local database,
by the same code over the lab's table there (`StoreTransport.register`).
"""

from __future__ import annotations

import fcntl
import logging
import os
from contextlib import contextmanager

from labclient.errors import TrackingError
from labclient.store.failures import store_unavailable
from labclient.store.target import Target


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
    from labclient.store.server_api import ServerApi

    if not (target.team and target.token):
        raise TrackingError(
            f"no team token for {target.uri}",
            "run `labclient login --server URL --team NAME` or set LAB_TEAM and LAB_TOKEN",
        )
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
                f"cannot open the tracking store {target.uri}: {err}", "check the path or URI"
            ) from None


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
        raise TrackingError(
            f"team {team!r} does not exist on {target.uri}", "ask the server admin to run `labserver team add`"
        )
    try:
        return client.create_experiment(team, artifact_location=(target.artifact_root / team).as_uri())
    except MlflowException:  # another process created it a moment ago
        return client.get_experiment_by_name(team).experiment_id
