"""Logging in to a labserver: check a team's token against the server, then remember it in the config file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from labclient.config import get_settings, write_config_file
from labclient.errors import ConfigError, TrackingError
from labclient.store.server_api import ServerApi
from labclient.store.target import Target, validate_team


@dataclass(frozen=True)
class Login:
    server: str
    team: str
    experiment_id: str | None
    config_file: Path  # where server, team and token were saved (mode 0600)


def login(server: str, team: str, token: str) -> Login:
    """Check the token with the server (it must be `team`'s), then save server, team and token for later commands."""
    validate_team(team)
    server = server.rstrip("/")
    if not server.startswith(("http://", "https://")):
        raise ConfigError(f"--server {server!r} is not an http(s) URL", "for example --server http://127.0.0.1:5000")
    target = Target(
        uri=server, kind="server", artifact_root=get_settings().embedded_artifact_root, token=token, team=team
    )
    identity = ServerApi(target).whoami()
    if identity.get("team") != team:
        raise TrackingError(
            f"the server says this token belongs to {identity.get('team')!r}, not {team!r}",
            "use the token the admin gave your team",
        )
    path = write_config_file({"tracking_uri": server, "team": team, "token": token})
    return Login(server=server, team=team, experiment_id=identity.get("experiment_id"), config_file=path)
