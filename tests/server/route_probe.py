"""Builds the server app exactly as `mlflow server --app-name lab` does under uvicorn, then prints every
route of both layers (Flask and FastAPI) with the lab's authorization decision, as JSON lines.
Run in its own process by test_route_coverage.py, because building the app changes MLflow's globals."""

from __future__ import annotations

import json
import os
import sys
import tempfile

folder = tempfile.mkdtemp()
os.environ.update(
    _MLFLOW_SGI_NAME="uvicorn",
    _MLFLOW_SERVER_FILE_STORE=f"sqlite:///{folder}/mlflow.db",
    MLFLOW_AUTH_ADMIN_PASSWORD="probe-admin-password-0123",
    LAB_SERVER_HOME=folder,
)
from labserver.config import auth_environment  # noqa: E402

# basic-auth reads its config when first imported: the environment must be in place before that
os.environ.update(auth_environment(os.environ["_MLFLOW_SERVER_FILE_STORE"]))
from labserver.db.migrate import upgrade_all  # noqa: E402

upgrade_all(os.environ["_MLFLOW_SERVER_FILE_STORE"], with_auth=True)

from flask import request  # noqa: E402

from labserver.app import create_app, flask_route_decision, native_route_decision  # noqa: E402
from labserver.routelist import example_path, fastapi_routes, flask_routes  # noqa: E402

served = create_app()
from mlflow.server import app as flask_app  # noqa: E402

for template, method in flask_routes(flask_app):
    path = example_path(template)
    with flask_app.test_request_context(path, method=method):
        decision = flask_route_decision(request)
    print(json.dumps({"layer": "flask", "method": method, "route": template, "decision": decision and decision.value}))
for template, method in fastapi_routes(getattr(served, "app", served)):  # inside the front door
    decision = native_route_decision(example_path(template), method)
    print(
        json.dumps({"layer": "fastapi", "method": method, "route": template, "decision": decision and decision.value})
    )
sys.stdout.flush()
