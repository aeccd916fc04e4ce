"""Authentication for MLflow's basic-auth, registered as its `authorization_function`.

Teams are basic-auth users and their tokens are the passwords. basic-auth stores scrypt hashes, which
cost tens of milliseconds per check, and MLflow authenticates several times per request. This function
remembers a verified token only for as long as the user's stored hash is unchanged, so a rotated or
removed token stops working on the very next request. Repeated failures from one client are throttled.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections import OrderedDict, defaultdict, deque

from flask import Response, g, request
from werkzeug.security import check_password_hash, generate_password_hash

FAILURES_ALLOWED = 10  # per client address, within FAILURE_WINDOW_S
FAILURE_WINDOW_S = 60.0
_CACHE_SIZE = 4096
_KEY = secrets.token_bytes(32)  # per process: cache keys never hold a token in the clear
_verified: OrderedDict[tuple[str, bytes], str] = OrderedDict()
_failures: dict[str, deque] = defaultdict(deque)
_lock = threading.Lock()


def _unauthorized(message: str, status: int = 401) -> Response:
    response = Response(message, status=status, mimetype="text/plain")
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="lab"'
    return response


def _throttled(client: str) -> bool:
    now = time.monotonic()
    with _lock:
        window = _failures[client]
        while window and now - window[0] > FAILURE_WINDOW_S:
            window.popleft()
        return len(window) >= FAILURES_ALLOWED


def _record_failure(client: str) -> None:
    with _lock:
        _failures[client].append(time.monotonic())


class StoreUnavailable(Exception):
    """The users' database did not answer: nobody can be checked, so nobody is turned away as a bad login."""


def _unavailable(err: Exception) -> StoreUnavailable:
    # the details go to the server's log only: the caller is not authenticated yet
    logging.getLogger(__name__).warning("cannot check a login, the database failed: %s",
                                        " ".join(str(err).split())[:500])
    cause = err.__cause__ if err.__cause__ is not None else err
    return StoreUnavailable(type(cause).__name__)


def verify_token(username: str, token: str) -> bool:
    """Constant-time check against the stored hash, skipped when this exact hash was verified before.
    Raises StoreUnavailable when the database cannot say: that is an outage, not a wrong token."""
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth import store

    from sqlalchemy.exc import SQLAlchemyError

    try:
        stored_hash = store.get_user(username).password_hash
    except (MlflowException, SQLAlchemyError, OSError) as err:
        if getattr(err, "error_code", None) != "RESOURCE_DOES_NOT_EXIST":  # the database failed, not the name
            raise _unavailable(err) from None
        check_password_hash(_DUMMY_HASH, token)  # same work for unknown users: no user enumeration by timing
        return False
    except Exception:  # any other way of saying "no such user"
        check_password_hash(_DUMMY_HASH, token)
        return False
    key = (username, hmac.new(_KEY, token.encode(), hashlib.sha256).digest())
    with _lock:
        cached = _verified.get(key)
    if cached is not None and hmac.compare_digest(cached, stored_hash):
        return True
    if not check_password_hash(stored_hash, token):
        return False
    with _lock:
        _verified[key] = stored_hash
        _verified.move_to_end(key)
        while len(_verified) > _CACHE_SIZE:
            _verified.popitem(last=False)
    return True


def authenticate_request():
    """basic-auth's authorization_function: an `Authorization` on success, else a 401/429 response, or 503
    when the database cannot check the token."""
    cached = g.get("lab_authorization")
    if cached is not None:
        return cached
    client = request.remote_addr or "unknown"
    if _throttled(client):
        return _unauthorized("too many failed logins from this address; wait a minute and try again", 429)
    credentials = request.authorization
    if credentials is None or not credentials.username or not credentials.password:
        return _unauthorized("log in with your team name and token (HTTP basic auth)")
    try:
        verified = verify_token(credentials.username, credentials.password)
    except StoreUnavailable as err:  # not counted as a failed login: the token may well be right
        message = f"the server's database is unavailable ({err}), so no login can be checked now; try again shortly"
        response = Response(json.dumps({"error_code": "TEMPORARILY_UNAVAILABLE", "message": message}), status=503,
                            mimetype="application/json")
        response.headers["Retry-After"] = "5"
        return response
    if not verified:
        _record_failure(client)
        return _unauthorized("unknown team or wrong token")
    g.lab_authorization = credentials
    return credentials


_DUMMY_HASH = generate_password_hash(secrets.token_hex(16))
