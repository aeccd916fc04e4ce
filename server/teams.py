"""Team administration, run by the instructor on the server's database (like `mlflow db`).

A team is three things: an MLflow experiment named after it, a basic-auth user of the same name whose
password is the team's token (stored only as a hash), and MANAGE permission for that user on that
experiment. Every other team reads it through basic-auth's default READ permission.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from labserver import names
from labserver.config import ADMIN_USERNAME
from labserver.errors import InvalidTeamName, TeamExists, TeamNotFound

ARTIFACT_ROOT = "mlflow-artifacts:/"  # runs upload through the server, which proxies to its store


@dataclass(frozen=True)
class Team:
    name: str
    experiment_id: str | None
    is_admin: bool = False


def new_token() -> str:
    return "lab_" + secrets.token_urlsafe(24)


def check_team_name(name: str) -> None:
    if not names.is_valid_team(name):
        reserved = " (reserved)" if name in names.RESERVED else ""
        raise InvalidTeamName(f"invalid team name {name!r}{reserved}", f"use {names.TEAM_RULE}")


class TeamAdmin:
    def __init__(self, db_uri: str):
        from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore as AuthStore
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        self.tracking = SqlAlchemyStore(db_uri, ARTIFACT_ROOT)
        self.auth = AuthStore()
        self.auth.init_db(db_uri)

    def add(self, name: str) -> tuple[Team, str]:
        check_team_name(name)
        if self.auth.has_user(name, use_primary=True):
            raise TeamExists(
                f"team {name!r} already exists", f"use `labserver team rotate-token {name}` for a new token"
            )
        experiment_id = self._experiment_for(name)
        token = new_token()
        self.auth.create_user(name, token, is_admin=False)
        self.auth.create_experiment_permission(experiment_id, name, "MANAGE")
        return Team(name, experiment_id), token

    def _experiment_for(self, name: str) -> str:
        """The team's experiment; a removed team's experiment (and runs) come back when it is re-added."""
        from mlflow.entities import LifecycleStage

        experiment = self.tracking.get_experiment_by_name(name)
        if experiment is None:
            return self.tracking.create_experiment(name, artifact_location=None)
        if experiment.lifecycle_stage == LifecycleStage.DELETED:
            self.tracking.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id

    def list(self) -> list[Team]:
        teams = []
        for user in self.auth.list_users():
            experiment = self.tracking.get_experiment_by_name(user.username)
            teams.append(Team(user.username, experiment.experiment_id if experiment else None, bool(user.is_admin)))
        return sorted(teams, key=lambda team: (not team.is_admin, team.name))

    def rotate_token(self, name: str) -> str:
        self._require(name)
        token = new_token()
        self.auth.update_user(name, password=token)
        return token

    def remove(self, name: str) -> None:
        """Deletes the login; the experiment and its runs stay readable."""
        self._require(name)
        if name == ADMIN_USERNAME:
            raise InvalidTeamName("the admin cannot be removed", "rotate its token instead")
        self.auth.delete_user(name)

    def ensure_admin(self, token: str | None = None) -> str | None:
        """Creates the admin once; returns its new token, or None when it already exists."""
        if self.auth.has_user(ADMIN_USERNAME, use_primary=True):
            return None
        token = token or new_token()
        self.auth.create_user(ADMIN_USERNAME, token, is_admin=True)
        return token

    def _require(self, name: str) -> None:
        if not self.auth.has_user(name, use_primary=True):
            raise TeamNotFound(f"no team named {name!r}", "see `labserver team list`")
