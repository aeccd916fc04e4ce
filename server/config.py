"""Server settings, read once from LAB_SERVER_* variables, and the files MLflow's basic-auth reads."""

from __future__ import annotations

import functools
import os
import secrets
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ADMIN_USERNAME = "admin"


def _default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME")
    return (Path(base) if base else Path.home() / ".local" / "share") / "labserver"


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LAB_SERVER_", extra="ignore")

    home: Path = Field(default_factory=_default_home)
    backend_store_uri: str | None = None
    artifacts_destination: str | None = None
    # basic-auth hashes tokens with scrypt (tens of ms per check); a short cache keeps
    # per-request latency low, at the price of a rotated token lingering this long
    auth_cache_ttl_seconds: int = 0

    @property
    def default_backend_store_uri(self) -> str:
        return f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def default_artifacts_destination(self) -> str:
        return str(self.home / "artifacts")


@functools.lru_cache(maxsize=1)
def get_server_settings() -> ServerSettings:
    return ServerSettings()


def backend_uri(explicit: str | None) -> str:
    settings = get_server_settings()
    return normalize_db_uri(explicit or settings.backend_store_uri or settings.default_backend_store_uri)


def normalize_db_uri(uri: str) -> str:
    """One PostgreSQL driver everywhere: psycopg 3 (`postgresql+psycopg://`)."""
    for prefix in ("postgresql://", "postgres://"):
        if uri.startswith(prefix):
            return "postgresql+psycopg://" + uri[len(prefix) :]
    return uri


def secret_key(home: Path) -> str:
    """Flask's secret key must be the same in every worker and across restarts: keep it in a 0600 file."""
    if os.environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY"):
        return os.environ["MLFLOW_FLASK_SERVER_SECRET_KEY"]
    path = home / "secret_key"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip()


def write_auth_config(home: Path, db_uri: str, cache_ttl: int) -> Path:
    """MLflow basic-auth's ini: its users and permissions live in the same database as the runs. It holds the
    database URI and its password, so only the server's user may read it (0600, also when it existed before)."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "basic_auth.ini"
    text = (
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {db_uri.replace('%', '%%')}\n"
        f"admin_username = {ADMIN_USERNAME}\n"
        "authorization_function = labserver.auth:authenticate_request\n"
        f"auth_cache_ttl_seconds = {cache_ttl}\n"
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text)
    return path


PLACEHOLDER_MARK = "change-me"  # every secret in .env.example starts with it
SECRET_VARIABLES = ("LAB_SERVER_ADMIN_TOKEN", "MLFLOW_FLASK_SERVER_SECRET_KEY", "AWS_SECRET_ACCESS_KEY")


def placeholder_secrets(db_uri: str) -> list[str]:
    """The settings that still hold a placeholder secret copied from .env.example."""
    from sqlalchemy.engine import make_url

    found = [name for name in SECRET_VARIABLES if PLACEHOLDER_MARK in os.environ.get(name, "")]
    try:
        password = make_url(db_uri).password or ""
    except Exception:
        password = ""
    if PLACEHOLDER_MARK in str(password):
        found.append("the database password")
    return found


def auth_environment(db_uri: str) -> dict[str, str]:
    """Environment under which MLflow's basic-auth reads our config (for the server and the admin CLI)."""
    settings = get_server_settings()
    path = write_auth_config(settings.home, db_uri, settings.auth_cache_ttl_seconds)
    return {"MLFLOW_AUTH_CONFIG_PATH": str(path), "MLFLOW_FLASK_SERVER_SECRET_KEY": secret_key(settings.home)}
