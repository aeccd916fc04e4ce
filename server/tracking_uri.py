"""The backend store the running MLflow server was started with (its own environment variable)."""

from __future__ import annotations

import os


def tracking_store_uri() -> str:
    from mlflow.server import BACKEND_STORE_URI_ENV_VAR

    uri = os.environ.get(BACKEND_STORE_URI_ENV_VAR)
    if not uri:
        raise RuntimeError("the lab plugin runs only inside `mlflow server` (started by `labserver`)")
    return uri
