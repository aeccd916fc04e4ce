"""What every lab view needs of its request: the calling team, whether it is the admin, its JSON body, and its
errors as MLflow-style JSON."""

from __future__ import annotations

import functools
import json

from flask import g, jsonify, request

from labserver.errors import BadRequest, LabServerError


def handle_errors(view):
    """A view's LabError (and MLflow's own, e.g. a run that does not exist) as an MLflow-style JSON error."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        from mlflow.exceptions import MlflowException

        try:
            return view(*args, **kwargs)
        except LabServerError as err:
            return jsonify(err.as_json()), err.status
        except MlflowException as err:
            return json.loads(err.serialize_as_json()), err.get_http_status_code()

    return wrapper


def current_team() -> str:
    return g.get("mlflow_authenticated_user") or request.authorization.username


def is_admin(username: str) -> bool:
    from mlflow.server.auth import store

    return bool(store.get_user(username).is_admin)


def mlflow_request_json() -> dict:
    """The request's JSON body as MLflow's handlers read it (`_get_normalized_request_json`): whatever the
    Content-Type, and a JSON string holding JSON decoded once more; {} for anything that is not an object."""
    body = request.get_json(force=True, silent=True)
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            body = None
    return body if isinstance(body, dict) else {}


def json_body() -> dict:
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise BadRequest("the request body is not a JSON object", "send a JSON object")
    return body
