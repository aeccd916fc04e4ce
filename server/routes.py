"""The lab's own HTTP routes, served by MLflow's Flask app (so basic-auth authenticates them)."""

from __future__ import annotations

import functools
import json

from flask import Flask, Response, g, jsonify, request

from labserver import names
from labserver.errors import BadRequest, LabServerError, PermissionDenied
from labserver.permissions import LAB_ROUTES, Decision, api_suffix

RUN_NUMBERS = "/api/2.0/lab/run-numbers"
WHOAMI = "/api/2.0/lab/whoami"
LEADERBOARD_API = "/api/2.0/lab/leaderboard"
LEADERBOARD_PAGE = "/lab/leaderboard"
# chunked artifact uploads, under any proxy's body limit (labserver/uploads.py); labclient imports these
UPLOAD_CREATE = "/api/2.0/lab/uploads/create"
UPLOAD_CHUNK = "/api/2.0/lab/uploads/chunk"
UPLOAD_COMPLETE = "/api/2.0/lab/uploads/complete"


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


def _leaderboard_query() -> tuple[str, str, int | None]:
    from labclient.errors import LabError
    from labclient.leaderboard import metric_key

    limit = request.args.get("limit")
    if limit is not None and not (limit.isdigit() and int(limit) > 0):
        raise BadRequest(f"limit must be a positive whole number, not {limit!r}", "for example ?limit=10")
    by = request.args.get("by", "team")
    if by not in ("team", "run"):
        raise BadRequest(f"cannot rank by {by!r}", "use ?by=team or ?by=run")
    try:
        metric = metric_key(request.args.get("metric"))
    except LabError as err:
        raise BadRequest(str(err), err.remedy) from None
    return metric, by, int(limit) if limit else None


def _leaderboard_rows(metric: str, by: str, limit: int | None) -> list[dict]:
    """labclient's leaderboard, read by an MlflowClient on the server's own store (every team reads every run)."""
    from mlflow.tracking import MlflowClient

    from labclient.errors import LabError
    from labclient.leaderboard import leaderboard_rows
    from labserver.tracking_uri import tracking_store_uri

    try:
        return leaderboard_rows(MlflowClient(tracking_store_uri()), metric=metric, by=by, limit=limit)
    except LabError as err:
        raise BadRequest(str(err), err.remedy) from None


@_handle_errors
def leaderboard_json():
    from labserver.leaderboard_page import run_path

    metric, by, limit = _leaderboard_query()
    rows = _leaderboard_rows(metric, by, limit)
    for row in rows:
        row["url"] = request.url_root + run_path(row["experiment_id"], row["run_id"])
    return jsonify({"metric": metric, "by": by, "rows": rows})


def leaderboard_page():
    from labserver import leaderboard_page as page

    metric, by, status, rows, error = request.args.get("metric") or "test_accuracy", "team", 200, [], None
    try:
        metric, by, limit = _leaderboard_query()
        rows = _leaderboard_rows(metric, by, limit)
    except LabServerError as err:
        status, error = err.status, err.one_line()
    response = Response(page.render(rows, metric=metric, by=by, error=error), status=status, mimetype="text/html")
    response.headers["Content-Security-Policy"] = page.CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response


def explain_refusal(response: Response) -> Response:
    """basic-auth refuses with a bare "Permission denied", which MLflow's web UI shows as INTERNAL_ERROR:
    give API callers MLflow's JSON error with a message that says who was refused and what they may do."""
    if response.status_code != 403 or response.get_data() != b"Permission denied" or api_suffix(request.path) is None:
        return response
    caller = g.get("mlflow_authenticated_user") or "your team"
    if request.method in ("GET", "HEAD"):
        message = f"team {caller} may not read {request.path}"
    else:
        message = f"team {caller} can read every team's runs but change only its own (ask the team that owns it, or the admin)"
    response.set_data(json.dumps({"error_code": "PERMISSION_DENIED", "message": message}))
    response.mimetype = "application/json"
    return response


def _lab_route_validator() -> bool:
    # basic-auth has authenticated the caller by now; each lab view checks its own rule
    return True


def register(app: Flask) -> None:
    """Adds the lab's routes, with their decision for the lab's rules and a validator for basic-auth's
    registry, which refuses any route it has no validator for."""
    from mlflow.server.auth import BEFORE_REQUEST_VALIDATORS

    from labserver import uploads

    for path, method, view, decision in (
        (RUN_NUMBERS, "POST", allocate_run_number, Decision.TEAM_OWNER),
        (WHOAMI, "GET", whoami, Decision.AUTHENTICATED),
        (LEADERBOARD_API, "GET", leaderboard_json, Decision.AUTHENTICATED),
        (LEADERBOARD_PAGE, "GET", leaderboard_page, Decision.AUTHENTICATED),
        # the team that may update the run (each view asks basic-auth), or the admin
        (UPLOAD_CREATE, "POST", uploads.create_upload, Decision.TEAM_OWNER),
        (UPLOAD_CHUNK, "PUT", uploads.upload_chunk, Decision.TEAM_OWNER),
        (UPLOAD_COMPLETE, "POST", uploads.complete_upload, Decision.TEAM_OWNER),
    ):
        app.add_url_rule(path, endpoint=f"lab_{view.__name__}", view_func=view, methods=[method])
        LAB_ROUTES[(path, method)] = decision
        BEFORE_REQUEST_VALIDATORS[(path, method)] = _lab_route_validator
    app.after_request(explain_refusal)
