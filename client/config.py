"""Configuration, read once: command-line values > LAB_* environment variables > config file > defaults.

The config file is TOML at $LAB_CONFIG or ~/.config/labclient/config.toml; `labclient login` writes it
with 0600 permissions because it may hold a token.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from labclient import paths
from labclient.errors import ConfigError
from labclient.files import atomic_write

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib

DEFAULT_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)


def config_file_path() -> Path:
    override = os.environ.get("LAB_CONFIG")
    return Path(override) if override else paths.default_config_file()


class _ConfigFileSource(PydanticBaseSettingsSource):
    """Reads the TOML config file; a broken file is a one-line error, not a traceback."""

    def get_field_value(self, field, field_name):  # pragma: no cover - required by the ABC
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = config_file_path()
        if not path.is_file():
            return {}
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as err:
            raise ConfigError(
                f"config file {path} is unreadable: {err}", "fix or delete it, then run `labclient login` again"
            ) from None
        known = set(self.settings_cls.model_fields)
        return {key: value for key, value in data.items() if key in known}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LAB_", extra="ignore")

    home: Path = Field(default_factory=paths.default_home)
    cache_dir: Path = Field(default_factory=paths.default_cache_dir)
    tracking_uri: str | None = None
    team: str | None = None
    token: SecretStr | None = None
    data_dir: Path | None = None
    mnist_mirrors: tuple[str, ...] = DEFAULT_MNIST_MIRRORS
    offline: bool = False  # journal runs locally and contact no server; `labclient sync` publishes them
    drain_timeout: float = Field(30.0, ge=0)  # seconds `train` waits at the end for the journal to reach the server
    journal_keep: bool = False  # keep the events of synced runs under <home>/journal/synced/ (auditing, tests)

    @field_validator("home", "cache_dir", "data_dir", "tracking_uri", "team", "token", mode="before")
    @classmethod
    def _no_nul(cls, value):
        # a NUL byte (possible in TOML's "\u0000") passes pydantic but breaks every file operation later
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("contains a NUL character")
        return value

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ):
        return (init_settings, env_settings, _ConfigFileSource(settings_cls))

    @property
    def embedded_tracking_uri(self) -> str:
        return f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def embedded_artifact_root(self) -> Path:
        return self.home / "artifacts"

    @property
    def journal_dir(self) -> Path:
        return self.home / "journal"


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as err:
        first = err.errors()[0]
        name = "LAB_" + str(first["loc"][0]).upper() if first.get("loc") else "configuration"
        raise ConfigError(f"invalid {name}: {first['msg']}", "fix the environment variable or config file") from None


def reset_settings() -> None:
    """Forget the cached settings (tests, and after `login` rewrites the file)."""
    get_settings.cache_clear()


def write_config_file(values: dict[str, str]) -> Path:
    """Merge values into the config file, created with 0600 permissions since it may hold a token."""
    path = config_file_path()
    current: dict[str, Any] = {}
    if path.is_file():
        current = tomllib.loads(path.read_text(encoding="utf-8"))
    current.update(values)
    # json string escaping is valid TOML basic-string escaping for the values we store
    text = "".join(f"{key} = {json.dumps(str(value))}\n" for key, value in sorted(current.items()))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text, mode=0o600)
    reset_settings()
    return path
