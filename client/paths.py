"""Per-user locations, following the XDG base-directory convention."""

from __future__ import annotations

import os
from pathlib import Path


def _xdg(variable: str, fallback: str) -> Path:
    value = os.environ.get(variable)
    return Path(value) if value else Path.home() / fallback


def default_home() -> Path:
    """Where the embedded MLflow store (SQLite + artifacts) lives."""
    return _xdg("XDG_DATA_HOME", ".local/share") / "labclient"


def default_cache_dir() -> Path:
    return _xdg("XDG_CACHE_HOME", ".cache") / "labclient"


def default_config_file() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / "labclient" / "config.toml"
