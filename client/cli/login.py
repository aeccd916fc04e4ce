"""`labclient login`: remember a shared server, a team and its token (config file, mode 0600)."""

from __future__ import annotations

import click


@click.command()
@click.option("--server", required=True, help="The labserver URL, e.g. http://lab.example.edu:5000")
@click.option("--team", required=True, help="Your team's name.")
@click.option(
    "--token", prompt=True, hide_input=True, help="The token the admin gave your team (prompted if left out)."
)
def login(server, team, token):
    """Check the token against the server, then save server, team and token in your config file."""
    from labclient.store.login import login as log_in

    done = log_in(server, team, token)
    click.echo(f"logged in to {done.server} as team {done.team} (experiment {done.experiment_id})")
    click.echo(
        f"saved to {done.config_file} (readable only by you); LAB_TRACKING_URI, LAB_TEAM and LAB_TOKEN override it"
    )
