"""Authentication: teams are basic-auth users, and their tokens are the passwords.

basic-auth stores scrypt hashes, which cost tens of milliseconds per check, and MLflow authenticates several
times per request. `verify_token` remembers a verified token only for as long as the user's stored hash is
unchanged, so a rotated or removed token stops working on the very next request.

The front door (labserver/frontdoor.py) checks every request's credentials once, off the event loop, counts
failures per real peer address, and then adds a header that only this process can write, naming the verified
team. `authenticate_request`, which basic-auth calls from its Flask hook and from its FastAPI middleware (where
the request it sees is a synthetic one without the peer's address), trusts that header. Without it, as when the
Flask app is served on its own, it checks the credentials itself, throttled by the address Flask reports.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
from collections import OrderedDict

from flask import Response, g, request
from werkzeug.datastructures import Authorization
from werkzeug.security import check_password_hash, generate_password_hash

from labserver.throttle import LoginThrottle

VERIFIED_HEADER = "x-lab-verified-team"  # written by the front door only; any copy a client sends is dropped
_CACHE_SIZE = 4096
_KEY = secrets.token_bytes(32)  # per process: cache keys never hold a token in the clear, and headers are signed
_verified: OrderedDict[tuple[str, bytes], str] = OrderedDict()
_lock = threading.Lock()
flask_throttle = LoginThrottle()  # only for requests that did not come through the front door
_MISSING_USER_CODES = ("RESOURCE_DOES_NOT_EXIST",)


class StoreUnavailable(Exception):
    """The database behind the logins did not answer: the request cannot be judged, which is not a failed login."""


def _unauthorized(message: str, status: int = 401) -> Response:
    response = Response(message, status=status, mimetype="text/plain")
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="lab"'
    return response


def _stored_hash(username: str) -> str | None:
    """The user's password hash; None for a user that does not exist; StoreUnavailable when the database failed
    (MLflow's, SQLAlchemy's or the OS's error): that is an outage, never a wrong token."""
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth import store
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return store.get_user(username).password_hash
    except (MlflowException, SQLAlchemyError, OSError) as err:
        if getattr(err, "error_code", None) in _MISSING_USER_CODES:
            return None
        raise _unavailable(err) from None
    except Exception:  # any other way of saying "no such user"
        return None


def _unavailable(err: Exception) -> StoreUnavailable:
    # the details go to the server's log only: the caller is not authenticated yet
    logging.getLogger(__name__).warning(
        "cannot check a login, the database failed: %s", " ".join(str(err).split())[:500]
    )
    cause = err.__cause__ if err.__cause__ is not None else err
    return StoreUnavailable(type(cause).__name__)


def unavailable_answer(err: StoreUnavailable) -> tuple[str, dict[str, str]]:
    """The 503's JSON body and headers, for the front door and the Flask hook alike."""
    message = f"the server's database is unavailable ({err}), so no login can be checked now; try again shortly"
    return json.dumps({"error_code": "TEMPORARILY_UNAVAILABLE", "message": message}), {"Retry-After": "5"}


def verify_token(username: str, token: str) -> bool:
    """Constant-time check against the stored hash, skipped when this exact hash was verified before.

    Raises StoreUnavailable when the database cannot say, so that an outage is never taken for a wrong token."""
    stored_hash = _stored_hash(username)
    if stored_hash is None:
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


def verified_header_value(team: str) -> str:
    return f"{team}:{hmac.new(_KEY, team.encode(), hashlib.sha256).hexdigest()}"


def team_from_verified_header(value: str | None) -> str | None:
    """The team the front door verified, if the header is this process's own; None otherwise."""
    if not value or ":" not in value:
        return None
    team = value.rsplit(":", 1)[0]
    return team if hmac.compare_digest(verified_header_value(team), value) else None


def authenticate_request():
    """basic-auth's authorization_function: an `Authorization` on success, else a 401/429 response, or 503
    when the database cannot check the token."""
    cached = g.get("lab_authorization")
    if cached is not None:
        return cached
    team = team_from_verified_header(request.headers.get(VERIFIED_HEADER))
    if team is not None:
        g.lab_authorization = Authorization("basic", {"username": team, "password": ""})
        return g.lab_authorization
    return _authenticate_without_front_door()


def _authenticate_without_front_door():
    client = request.remote_addr or "unknown"
    if flask_throttle.blocked(client):
        return _unauthorized("too many failed logins from this address; wait a minute and try again", 429)
    credentials = request.authorization
    if credentials is None or not credentials.username or not credentials.password:
        return _unauthorized("log in with your team name and token (HTTP basic auth)")
    try:
        accepted = verify_token(credentials.username, credentials.password)
    except StoreUnavailable as err:  # not counted as a failed login: the token may well be right
        body, headers = unavailable_answer(err)
        response = Response(body, status=503, mimetype="application/json")
        response.headers.update(headers)
        return response
    if not accepted:
        flask_throttle.record_failure(client)
        return _unauthorized("unknown team or wrong token")
    g.lab_authorization = credentials
    return credentials


_DUMMY_HASH = generate_password_hash(secrets.token_hex(16))
