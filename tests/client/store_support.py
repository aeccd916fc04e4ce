"""A migrated, empty embedded store copied into each test's LAB_HOME, instead of migrating one per test.

Creating an MLflow SQLite store runs well over a hundred alembic migrations (1-2 s); a file copy takes
milliseconds. Test modules opt in with `pytestmark = pytest.mark.usefixtures("migrated_store")` after
`from store_support import migrated_store, store_template`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


_TEMPLATE: dict[str, Path] = {}  # one per test session, shared by every module that imports these fixtures


@pytest.fixture(scope="module")
def store_template(tmp_path_factory) -> Path:
    if "path" not in _TEMPLATE:
        from labclient.store.client import prepare_database
        from labclient.store.target import Target

        folder = tmp_path_factory.mktemp("store-template")
        prepare_database(Target(uri=f"sqlite:///{folder / 'mlflow.db'}", kind="database", artifact_root=folder / "artifacts"))
        _TEMPLATE["path"] = folder / "mlflow.db"
    return _TEMPLATE["path"]


@pytest.fixture
def migrated_store(store_template, isolated_lab):
    """The empty store at the embedded location: LAB_HOME/mlflow.db, artifacts under LAB_HOME/artifacts."""
    target = isolated_lab / "data" / "mlflow.db"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(store_template, target)
    return target
