"""The lab's own HTTP views, served by MLflow's Flask app (so basic-auth authenticates them) under the paths of
labserver/routes.py."""

from __future__ import annotations

import json
import re

from flask import Flask, Response, g, jsonify, request

from labserver.caller import current_team, handle_errors, is_admin, json_body
from labserver.errors import BadRequest, LabServerError, NotFound, PermissionDenied
from labserver.permissions import LAB_ROUTES, Decision, api_suffix
from labserver.routes import (
    LEADERBOARD_API,
    LEADERBOARD_PAGE,
    REGISTER_RUN,
    UPLOAD_CHUNK,
    UPLOAD_COMPLETE,
    UPLOAD_CREATE,
    WHOAMI,
)

RUN_ID = re.compile(r"[0-9a-f]{32}")


@handle_errors
def register_run():
    """Number a run of the caller's team (idempotent): the server writes its team, number and name."""
    from mlflow.exceptions import MlflowException
    from mlflow.server.handlers import _get_tracking_store

    from labserver.identity import NotATeamExperiment, register
    from labserver.store import LabStore
    from labserver.tracking_uri import tracking_store_uri

    run_id = json_body().get("run_id")
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise BadRequest(f"invalid run id {run_id!r}", 'send {"run_id": "<32 hexadecimal characters>"}')
    store = _get_tracking_store()
    try:
        team = store.get_experiment(store.get_run(run_id).info.experiment_id).name
    except MlflowException:
        raise NotFound(f"no run with id {run_id}", "create the run first") from None
    caller = current_team()
    if caller != team and not is_admin(caller):
        raise PermissionDenied(f"team {caller!r} cannot register runs of {team!r}", "use your own team's token")
    try:
        registered = register(store, LabStore(tracking_store_uri()), run_id)
    except NotATeamExperiment as err:
        raise BadRequest(str(err), "log runs to your team's experiment") from None
    return jsonify(
        {"run_id": run_id, "team": registered.team, "number": registered.number, "run_name": registered.name}
    )


@handle_errors
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
    from labserver.leaderboard import metric_key

    limit = request.args.get("limit")
    if limit is not None and not (limit.isdigit() and int(limit) > 0):
        raise BadRequest(f"limit must be a positive whole number, not {limit!r}", "for example ?limit=10")
    by = request.args.get("by", "team")
    if by not in ("team", "run"):
        raise BadRequest(f"cannot rank by {by!r}", "use ?by=team or ?by=run")
    metric = metric_key(request.args.get("metric"))  # BadRequest for a name that is not a metric's
    return metric, by, int(limit) if limit else None


def _leaderboard_rows(metric: str, by: str, limit: int | None) -> list[dict]:
    """The leaderboard's rows, read by an MlflowClient on the server's own store (every team reads every run)."""
    from mlflow.tracking import MlflowClient

    from labserver.leaderboard import leaderboard_rows
    from labserver.tracking_uri import tracking_store_uri

    return leaderboard_rows(MlflowClient(tracking_store_uri()), metric=metric, by=by, limit=limit)


@handle_errors
def leaderboard_json():
    from labserver.leaderboard_page import run_path

    metric, by, limit = _leaderboard_query()
    rows = _leaderboard_rows(metric, by, limit)
    answer = {"metric": metric, "by": by, "rows": rows}
    if by == "team":
        answer["left_out"] = _left_out(metric, rows if not limit else None)
    for row in rows:
        row["url"] = request.url_root + run_path(row["experiment_id"], row["run_id"])
    return jsonify(answer)


def _left_out(metric: str, rows: list[dict] | None) -> list[dict]:
    from mlflow.tracking import MlflowClient

    from labserver.leaderboard import left_out
    from labserver.tracking_uri import tracking_store_uri

    return left_out(MlflowClient(tracking_store_uri()), metric=metric, ranked=rows)


def leaderboard_page():
    from labserver import leaderboard_page as page

    metric, by, status, rows, error = request.args.get("metric") or "test_accuracy", "team", 200, [], None
    unranked: list[dict] = []
    try:
        metric, by, limit = _leaderboard_query()
        rows = _leaderboard_rows(metric, by, limit)
        if by == "team":
            unranked = _left_out(metric, rows if not limit else None)
    except LabServerError as err:
        status, error = err.status, err.one_line()
    html = page.render(rows, metric=metric, by=by, error=error, left_out=unranked)
    response = Response(html, status=status, mimetype="text/html")
    response.headers["Content-Security-Policy"] = page.CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response


def explain_refusal(response: Response) -> Response:
    """basic-auth refuses with a bare "Permission denied", which MLflow's web UI shows as INTERNAL_ERROR:
    give API callers MLflow's JSON error with a message that says who was refused and what they may do."""
    if response.status_code != 403 or response.get_data() != b"Permission denied" or api_suffix(request.path) is None:
        return response
    from labserver.registry import REGISTRY_WRITES, rule

    caller = g.get("mlflow_authenticated_user") or "your team"
    if request.method in ("GET", "HEAD"):
        message = f"team {caller} may not read {request.path}"
    elif (api_suffix(request.path), request.method) in REGISTRY_WRITES:
        message = f"{rule(caller)} (a registered model another team created is theirs to change)"
    else:
        message = (
            f"team {caller} can read every team's runs but change only its own "
            "(ask the team that owns it, or the admin)"
        )
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
        (REGISTER_RUN, "POST", register_run, Decision.TEAM_OWNER),
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
