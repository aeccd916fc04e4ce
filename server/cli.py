"""The `labserver` command: serve MLflow with the lab plugin, migrate its database, manage teams.

`labserver` with no subcommand (or with only serve options) serves; see `labserver serve --help`.
"""

from __future__ import annotations

import os
import sys

import click

from labserver.cli_errors import OneLineErrors
from labserver.config import (
    ADMIN_USERNAME,
    auth_environment,
    backend_uri,
    get_server_settings,
)
from labserver.errors import PlaceholderSecret, SchemaOutOfDate

DEFAULT_PORT = 5000


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


class ServerGroup(OneLineErrors):
    """Bare `labserver` and `labserver --port 8080` mean `labserver serve ...`; errors become one line."""

    def parse_args(self, ctx, args):
        if not args or (args[0].startswith("-") and args[0] not in ("--help", "-h", "--version")):
            args = ["serve", *args]
        return super().parse_args(ctx, args)


backend_option = click.option(
    "--backend-store-uri",
    envvar="LAB_SERVER_BACKEND_STORE_URI",
    help="sqlite:///path.db or postgresql://user:pass@host/db (psycopg 3). Default: SQLite under LAB_SERVER_HOME.",
)


@click.group(cls=ServerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lab-platform", prog_name="labserver")
def main() -> None:
    """The shared team server: MLflow's tracking server and web UI, with teams, tokens and run numbers."""
    _quiet_libraries()


def _quiet_libraries() -> None:
    import logging
    import warnings

    if not os.environ.get("LAB_DEBUG"):
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*is deprecated.*")  # MLflow's own imports (starlette.wsgi)
        # MLflow configures its loggers from this variable when first imported, after this runs
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        logging.getLogger("alembic").setLevel(logging.WARNING)


@main.command()
@backend_option
@click.option(
    "--artifacts-destination",
    envvar="LAB_SERVER_ARTIFACTS_DESTINATION",
    help="Local folder or s3://bucket/prefix. Clients upload and download through the server.",
)
@click.option("--s3-endpoint-url", envvar="MLFLOW_S3_ENDPOINT_URL", help="For MinIO or another S3-compatible store.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="uvicorn worker processes. One is fastest for a class: see the README.",
)
@click.option("--allowed-hosts", help="Host headers to accept, for a server reached by name (MLflow's option).")
@click.option(
    "--trusted-proxies",
    envvar="LAB_SERVER_TRUSTED_PROXIES",
    help="Addresses of reverse proxies whose X-Forwarded-For is believed (comma-separated). Default: none.",
)
def serve(
    backend_store_uri, artifacts_destination, s3_endpoint_url, host, port, workers, allowed_hosts, trusted_proxies
):
    """Serve the tracking server, the web UI and the lab plugin."""
    from labserver import serving

    settings = get_server_settings()
    db_uri = backend_uri(backend_store_uri)
    destination = artifacts_destination or settings.artifacts_destination or settings.default_artifacts_destination
    _refuse_placeholder_secrets(db_uri)
    # before anything imports MLflow's basic-auth, which reads its configuration once, when first imported
    os.environ.update({**auth_environment(db_uri), **serving.mlflow_environment(db_uri, destination, allowed_hosts)})
    _prepare_database(db_uri)
    if s3_endpoint_url:
        os.environ["MLFLOW_S3_ENDPOINT_URL"] = s3_endpoint_url
    click.echo(f"labserver: store {_redact(db_uri)}, artifacts {destination}, {workers} worker(s)")
    click.echo(f"labserver: web UI at http://{host}:{port}/#/experiments?workflowType=machine_learning")
    sys.stdout.flush()
    serving.run(host=host, port=port, workers=workers, trusted_proxies=trusted_proxies)


def _refuse_placeholder_secrets(db_uri: str) -> None:
    from labserver.config import placeholder_secrets

    found = placeholder_secrets(db_uri)
    if found:
        raise PlaceholderSecret(
            f"{', '.join(found)} still {'holds' if len(found) == 1 else 'hold'} a placeholder secret from .env.example",
            "put a secret of your own in .env (for example `openssl rand -hex 32`), then start again",
        )


def _prepare_database(db_uri: str) -> None:
    from sqlalchemy.engine import make_url

    from labserver.db import migrate

    if db_uri.startswith("sqlite") and make_url(db_uri).database:
        os.makedirs(os.path.dirname(os.path.abspath(make_url(db_uri).database)), exist_ok=True)
    if db_uri.startswith("sqlite") and migrate.is_empty(db_uri):
        _upgrade(db_uri)  # a brand-new embedded store needs no separate step
        return
    outdated = migrate.outdated_parts(db_uri)
    if outdated:
        raise SchemaOutOfDate(
            f"the database schema is out of date ({', '.join(outdated)})",
            f"run `labserver db upgrade --backend-store-uri {_redact(db_uri)}` first",
        )


def _upgrade(db_uri: str) -> None:
    from labserver.db import migrate
    from labserver.teams import TeamAdmin

    os.environ.update(auth_environment(db_uri))
    migrate.upgrade_all(db_uri, with_auth=True)
    token = TeamAdmin(db_uri).ensure_admin(os.environ.get("LAB_SERVER_ADMIN_TOKEN"))
    if token and not os.environ.get("LAB_SERVER_ADMIN_TOKEN"):
        click.echo(f"created the admin login: user {ADMIN_USERNAME}, token {token}")
        click.echo("  (shown once: store it now; `labserver team rotate-token admin` makes a new one)")


def _redact(uri: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(uri).render_as_string(hide_password=True)
    except Exception:
        return uri


@main.group()
def db() -> None:
    """Database schema: MLflow's tables, basic-auth's, then the lab's (alembic_version_lab)."""


@db.command("upgrade")
@backend_option
def db_upgrade(backend_store_uri):
    """Create or migrate every schema the server needs, in the right order."""
    db_uri = backend_uri(backend_store_uri)
    _refuse_placeholder_secrets(db_uri)
    _upgrade(db_uri)
    click.echo(f"database {_redact(db_uri)} is up to date")


@db.command("current")
@backend_option
def db_current(backend_store_uri):
    """Say whether each schema is at its latest revision."""
    from labserver.db import migrate

    db_uri = backend_uri(backend_store_uri)
    outdated = migrate.outdated_parts(db_uri)
    click.echo(f"lab revision: {migrate.current_revision(db_uri) or 'none'} (head {migrate.head_revision()})")
    click.echo("out of date: " + ", ".join(outdated) if outdated else "all schemas are current")
    sys.exit(1 if outdated else 0)


@main.group()
def team() -> None:
    """Teams: add, list, rotate-token, remove."""


def _admin(backend_store_uri):
    from labserver.teams import TeamAdmin

    db_uri = backend_uri(backend_store_uri)
    os.environ.update(auth_environment(db_uri))  # before anything imports basic-auth, which reads it once
    _prepare_database(db_uri)
    return TeamAdmin(db_uri)


@team.command("add")
@click.argument("name")
@backend_option
def team_add(name, backend_store_uri):
    """Create a team: its experiment, its login, and a token printed once."""
    from labserver.teams import check_team_name

    check_team_name(name)  # before the database is touched: a bad name changes nothing
    created, token = _admin(backend_store_uri).add(name)
    click.echo(f"team {created.name} (experiment {created.experiment_id})")
    click.echo(f"token: {token}")
    click.echo("  shown once, only its hash is stored. The team logs in with:")
    click.echo(f"  labclient login --server URL --team {created.name} --token {token}")


@team.command("list")
@backend_option
def team_list(backend_store_uri):
    """List teams and their experiments."""
    for entry in _admin(backend_store_uri).list():
        role = "admin" if entry.is_admin else f"experiment {entry.experiment_id}"
        click.echo(f"{entry.name:<34} {role}")


@team.command("rotate-token")
@click.argument("name")
@backend_option
def team_rotate(name, backend_store_uri):
    """Replace a team's token; the old one stops working at once."""
    token = _admin(backend_store_uri).rotate_token(name)
    click.echo(f"new token for {name}: {token}")


@team.command("remove")
@click.argument("name")
@backend_option
def team_remove(name, backend_store_uri):
    """Remove a team's login. Its experiment and runs stay, readable by everyone."""
    _admin(backend_store_uri).remove(name)
    click.echo(f"team {name} removed; its runs are kept")


if __name__ == "__main__":
    main()
