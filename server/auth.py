"""Authentication for MLflow's basic-auth, registered as its `authorization_function`.

Teams are basic-auth users and their tokens are the passwords. basic-auth stores scrypt hashes, which
cost tens of milliseconds per check, and MLflow authenticates several times per request. This function
remembers a verified token only for as long as the user's stored hash is unchanged, so a rotated or
removed token stops working on the very next request. Repeated failures from one client are throttled.
"""

from __future__ import annotations

import hashlib
import hmac
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


def verify_token(username: str, token: str) -> bool:
    """Constant-time check against the stored hash, skipped when this exact hash was verified before."""
    from mlflow.server.auth import store

    try:
        stored_hash = store.get_user(username).password_hash
    except Exception:
        check_password_hash(_DUMMY_HASH, token)  # same work for unknown users: no user enumeration by timing
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
    """basic-auth's authorization_function: an `Authorization` on success, else a 401/429 response."""
    cached = g.get("lab_authorization")
    if cached is not None:
        return cached
    client = request.remote_addr or "unknown"
    if _throttled(client):
        return _unauthorized("too many failed logins from this address; wait a minute and try again", 429)
    credentials = request.authorization
    if credentials is None or not credentials.username or not credentials.password:
        return _unauthorized("log in with your team name and token (HTTP basic auth)")
    if not verify_token(credentials.username, credentials.password):
        _record_failure(client)
        return _unauthorized("unknown team or wrong token")
    g.lab_authorization = credentials
    return credentials


_DUMMY_HASH = generate_password_hash(secrets.token_hex(16))
