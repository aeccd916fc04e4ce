"""The lab's own HTTP routes, served by MLflow's Flask app (so basic-auth authenticates them)."""

from __future__ import annotations

import functools

from flask import Flask, g, jsonify, request

from labserver import names
from labserver.errors import BadRequest, LabServerError, PermissionDenied
from labserver.permissions import LAB_ROUTES, Decision

RUN_NUMBERS = "/api/2.0/lab/run-numbers"
WHOAMI = "/api/2.0/lab/whoami"


def _handle_errors(view):
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        try:
            return view(*args, **kwargs)
        except LabServerError as err:
            return jsonify(err.as_json()), err.status

    return wrapper


def current_team() -> str:
    return g.get("mlflow_authenticated_user") or request.authorization.username


def is_admin(username: str) -> bool:
    from mlflow.server.auth import store

    return bool(store.get_user(username).is_admin)


def _json_body() -> dict:
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise BadRequest("the request body is not a JSON object", 'send {"team": "<name>"}')
    return body


@_handle_errors
def allocate_run_number():
    from labserver.store import LabStore
    from labserver.tracking_uri import tracking_store_uri

    team = _json_body().get("team")
    if not isinstance(team, str) or not names.is_valid_team(team):
        raise BadRequest(f"invalid team name {team!r}", f"use {names.TEAM_RULE}")
    caller = current_team()
    if caller != team and not is_admin(caller):
        raise PermissionDenied(f"team {caller!r} cannot start runs for team {team!r}", "use your own team's token")
    number = LabStore(tracking_store_uri()).allocate_run_number(team)
    return jsonify({"team": team, "number": number, "run_name": f"{team}/run-{number}"})


@_handle_errors
def whoami():
    from mlflow.server.handlers import _get_tracking_store

    caller = current_team()
    experiment = _get_tracking_store().get_experiment_by_name(caller)
    return jsonify(
        {
            "team": caller,
            "is_admin": is_admin(caller),
            "experiment_id": experiment.experiment_id if experiment else None,
        }
    )


def _lab_route_validator() -> bool:
    # basic-auth has authenticated the caller by now; each lab view checks its own rule
    return True


def register(app: Flask) -> None:
    """Adds the lab's routes, with their decision for the lab's rules and a validator for basic-auth's
    registry, which refuses any route it has no validator for."""
    from mlflow.server.auth import BEFORE_REQUEST_VALIDATORS

    for path, method, view, decision in (
        (RUN_NUMBERS, "POST", allocate_run_number, Decision.TEAM_OWNER),
        (WHOAMI, "GET", whoami, Decision.AUTHENTICATED),
    ):
        app.add_url_rule(path, endpoint=f"lab_{view.__name__}", view_func=view, methods=[method])
        LAB_ROUTES[(path, method)] = decision
        BEFORE_REQUEST_VALIDATORS[(path, method)] = _lab_route_validator
