"""Where runs go: the embedded SQLite store, a database URI, or a shared labserver over HTTP; team names; UI links."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from labclient.config import Settings
from labclient.errors import InvalidTeamName, TrackingError
from labserver.names import RESERVED, TEAM_PATTERN, TEAM_RULE
from labserver.routes import UI_LAYOUT


def validate_team(team: str | None) -> str:
    if not team:
        raise InvalidTeamName("no team given", "pass --team NAME or set LAB_TEAM")
    if not TEAM_PATTERN.fullmatch(team) or team in RESERVED:
        raise InvalidTeamName(
            f"invalid team name {team!r}", f"use {TEAM_RULE}, not one of {', '.join(sorted(RESERVED))}"
        )
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
        raise TrackingError(
            f"unsupported tracking URI {uri!r}", "use http(s)://server:port, sqlite:///path.db or postgresql://..."
        )
    return Target(uri=uri, kind=kind, artifact_root=settings.embedded_artifact_root, token=token, team=settings.team)
