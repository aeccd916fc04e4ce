"""The `mlflow.app` plugin: MLflow's server with basic-auth, the lab's routes, and the lab's rules.

`labserver serve` (labserver/serving.py) and `mlflow server --app-name lab` both call `create_app()`. Under
uvicorn it returns the ASGI app: basic-auth's FastAPI app inside the lab's front door (labserver/frontdoor.py);
under gunicorn or waitress, the Flask app.
"""

from __future__ import annotations

import asyncio

from flask import Flask, g, jsonify, request

from labserver import views
from labserver.auth import VERIFIED_HEADER, team_from_verified_header
from labserver.caller import is_admin, mlflow_request_json
from labserver.frontdoor import FrontDoor
from labserver.permissions import ArtifactPathRefused, Decision, artifact_write_target, decide

_ERROR_CODES = {400: "INVALID_PARAMETER_VALUE", 403: "PERMISSION_DENIED"}
_PASS_THROUGH = (
    Decision.PUBLIC,
    Decision.AUTHENTICATED,
    Decision.MLFLOW,
    Decision.SELF_AUTHORIZING,
    Decision.TEAM_OWNER,
)


def create_app(app: Flask | None = None):
    from mlflow.server import app as mlflow_flask_app
    from mlflow.server.auth import create_app as create_basic_auth_app

    flask_app = app or mlflow_flask_app
    views.register(flask_app)
    served = create_basic_auth_app(flask_app)
    # registered after basic-auth's hook, so it runs once the caller is authenticated
    flask_app.before_request(enforce_lab_rules)
    if served is flask_app:
        return served
    guard_native_routes(served)
    return FrontDoor(served, store_slots=store_request_limit())  # `.app` is MLflow's FastAPI app


def store_request_limit() -> int:
    """How many requests may use MLflow's SQL store at once without exhausting its connection pool (the front
    door's store slots).

    MLflow's `log_batch` holds one pooled connection and opens a second inside it (`_log_metrics`), so
    as many concurrent batches as the pool has connections each wait for a second one until the pool's
    30 s timeout: 30 teams' senders logging at once froze the server that way (bench/FINDINGS.md).
    With one request fewer than the pool holds, one of them always gets its second connection.
    """
    from mlflow.environment_variables import (
        MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW,
        MLFLOW_SQLALCHEMYSTORE_POOL_SIZE,
    )

    pool = (MLFLOW_SQLALCHEMYSTORE_POOL_SIZE.get() or 5) + (
        MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW.get() or 10
    )  # SQLAlchemy's defaults
    return max(pool - 1, 1)


def flask_route_decision(flask_request) -> Decision | None:
    from mlflow.server import auth as basic_auth

    # read-only use of basic-auth's route tables: the decision stays in step with MLflow's own validators
    guarded = basic_auth._find_validator(flask_request) is not None or basic_auth._is_proxy_artifact_path(
        flask_request.path
    )
    rule = flask_request.url_rule
    return decide(
        flask_request.path,
        flask_request.method,
        guarded,
        self_authorizing=basic_auth._authorized_outside_before_request(flask_request),
        not_implemented=rule is not None and rule.endpoint == "_not_implemented",
    )


def _denied(message: str, status: int = 403):
    code = "PERMISSION_DENIED" if status == 403 else "UNAUTHENTICATED"
    return jsonify({"error_code": code, "message": message}), status


def enforce_lab_rules():
    decision = flask_route_decision(request)
    if decision is Decision.PUBLIC:
        return None
    user = g.get("mlflow_authenticated_user")
    if user is None:
        from labserver.auth import authenticate_request

        result = authenticate_request()
        if not hasattr(result, "username"):
            return result
        user = result.username
    refused = _artifact_write_refusal(user)
    if refused is not None:
        return refused
    if is_admin(user):
        return None
    if decision is None:
        return _denied(f"{request.method} {request.path} has no authorization rule, so it is refused")
    if decision is Decision.ADMIN_ONLY:
        return _denied(
            f"only the admin can {request.method} {request.path}; teams are set up with `labserver team add`"
        )
    if decision is Decision.TEAM_REGISTRY:
        return _registry_refusal(user)
    return _identity_refusal(user)


def _identity_refusal(user: str):
    """Requests that would write a run's identity, or tie one team's work to another's (labserver/identity.py)."""
    from mlflow.server.handlers import _get_tracking_store

    from labserver.identity import refusal
    from labserver.permissions import api_suffix

    suffix = api_suffix(request.path)
    if suffix is None or request.method not in ("POST", "PATCH"):
        return None
    # the body as MLflow's handlers read it (a JSON string holding JSON included), not as it first looks
    reason = refusal(suffix, request.method, mlflow_request_json(), user, _get_tracking_store())
    return _denied(reason) if reason else None


def _artifact_write_refusal(user: str):
    """The artifact guard again, for artifact writes that Flask serves: under uvicorn the native guard below has
    checked them already; under gunicorn or waitress this is the only check."""
    try:
        target = artifact_write_target(request.path, request.method)
    except ArtifactPathRefused as err:
        return jsonify({"error_code": "INVALID_PARAMETER_VALUE", "message": str(err)}), 400
    refused = _model_folder_refusal(target, user) if target is not None and target.model_id else None
    if refused is None:
        return None
    status, message = refused
    return jsonify({"error_code": _ERROR_CODES[status], "message": message}), status


def _registry_refusal(user: str):
    """A team's registry writes: its own names and its own work only (labserver/registry.py)."""
    from mlflow.server.handlers import _get_tracking_store

    from labserver.ownership import team_names
    from labserver.permissions import api_suffix
    from labserver.registry import refusal

    params = [mlflow_request_json(), request.args.to_dict()]
    suffix = api_suffix(request.path) or ""
    reason = refusal(suffix, request.method, params, user, team_names(), _get_tracking_store())
    return _denied(reason) if reason else None


def native_route_decision(path: str, method: str) -> Decision | None:
    from mlflow.server import auth as basic_auth

    return decide(path, method, basic_auth._find_fastapi_validator(path, method) is not None)


def guard_native_routes(fastapi_app) -> None:
    """FastAPI's own routes (artifact streaming, gateway, traces) never pass Flask's hooks."""
    from starlette.responses import JSONResponse

    from labserver.routelist import native_route_matches

    @fastapi_app.middleware("http")
    async def lab_native_route_guard(http_request, call_next):
        # artifact writes (native PUT, and DELETE and multipart uploads served by Flask) all pass here first
        try:
            target = artifact_write_target(http_request.url.path, http_request.method)
        except ArtifactPathRefused as err:
            return JSONResponse({"error_code": "INVALID_PARAMETER_VALUE", "message": str(err)}, status_code=400)
        if target is not None and target.model_id is not None:
            team = team_from_verified_header(http_request.headers.get(VERIFIED_HEADER))
            refused = await asyncio.to_thread(_model_folder_refusal, target, team)
            if refused:
                status, message = refused
                return JSONResponse({"error_code": _ERROR_CODES[status], "message": message}, status_code=status)
        if not native_route_matches(fastapi_app, http_request.scope):
            return await call_next(http_request)  # served by Flask: enforce_lab_rules decides
        decision = native_route_decision(http_request.url.path, http_request.method)
        if decision in _PASS_THROUGH:
            return await call_next(http_request)
        team = team_from_verified_header(http_request.headers.get(VERIFIED_HEADER))
        if decision is Decision.ADMIN_ONLY and team is not None and await asyncio.to_thread(is_admin, team):
            return await call_next(http_request)
        return JSONResponse(
            {"error_code": "PERMISSION_DENIED", "message": f"{http_request.method} {http_request.url.path} is refused"},
            status_code=403,
        )


def _model_folder_refusal(target, team: str | None) -> tuple[int, str] | None:
    from mlflow.server.handlers import _get_tracking_store

    from labserver.ownership import model_folder_refusal

    admin = team is not None and is_admin(team)
    return model_folder_refusal(_get_tracking_store(), target.experiment_id, target.model_id, team, admin)
