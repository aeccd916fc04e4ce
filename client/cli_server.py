"""`labclient login`: remember a shared server, a team and its token (config file, mode 0600)."""

from __future__ import annotations

import click


@click.command()
@click.option("--server", required=True, help="The labserver URL, e.g. http://lab.example.edu:5000")
@click.option("--team", required=True, help="Your team's name.")
@click.option("--token", prompt=True, hide_input=True, help="The token the admin gave your team (prompted if left out).")
def login(server, team, token):
    """Check the token against the server, then save server, team and token in your config file."""
    from labclient.config import get_settings, write_config_file
    from labclient.server_api import ServerApi
    from labclient.tracking import Target, validate_team

    validate_team(team)
    server = server.rstrip("/")
    if not server.startswith(("http://", "https://")):
        from labclient.errors import ConfigError

        raise ConfigError(f"--server {server!r} is not an http(s) URL", "for example --server http://127.0.0.1:5000")
    target = Target(uri=server, kind="server", artifact_root=get_settings().embedded_artifact_root, token=token, team=team)
    identity = ServerApi(target).whoami()
    if identity.get("team") != team:
        from labclient.errors import TrackingError

        raise TrackingError(f"the server says this token belongs to {identity.get('team')!r}, not {team!r}")
    path = write_config_file({"tracking_uri": server, "team": team, "token": token})
    click.echo(f"logged in to {server} as team {team} (experiment {identity.get('experiment_id')})")
    click.echo(f"saved to {path} (readable only by you); LAB_TRACKING_URI, LAB_TEAM and LAB_TOKEN override it")
