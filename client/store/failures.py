"""MLflow's and the database's exceptions as the lab's errors: one line that says what happened and what to do."""

from __future__ import annotations

import errno
import re
from contextlib import contextmanager

from labclient.errors import (
    EditRefused,
    LabError,
    Refused,
    RunNotFound,
    ServerUnreachable,
    StoreFull,
    TrackingError,
)
from labclient.store.http import PERMANENT_CODES, RETRIED
from labclient.store.target import Target


def store_unavailable(target: Target, err: Exception) -> TrackingError | None:
    """A database that is down, restarting or full is an outage to wait out in the journal (ServerUnreachable),
    not a wrong URI: None for the errors that a retry will not mend."""
    import sqlalchemy.exc as sa_errors

    text = brief_sql_error(str(err))
    if "disk is full" in text or "No space left" in text:
        return StoreFull(
            f"the tracking store's disk is full ({text})",
            "free some disk space where the store keeps its data; nothing is lost, `labclient sync` sends it",
        )
    outage = (
        sa_errors.OperationalError,
        sa_errors.InterfaceError,
        sa_errors.TimeoutError,
        sa_errors.DisconnectionError,
    )
    if not isinstance(err, outage) or any(reason in text for reason in _NOT_AN_OUTAGE):
        return None
    if target.uri.startswith("sqlite") and "locked" not in text:
        return None  # a file that cannot be opened: a wrong path, not an outage
    return ServerUnreachable(
        f"the tracking store is unavailable: {type(err).__name__}: {text}",
        "the run is journalled and sent when the store is back, or by `labclient sync`",
    )


_NOT_AN_OUTAGE = ("password authentication failed", "does not exist", "no password supplied")


def brief_sql_error(text: str) -> str:
    """SQLAlchemy's message without the statement, its parameters and the link it appends: one short line."""
    text = re.sub(
        r"\[(?:SQL|parameters): .*?\](?=\s*(?:\[|\(Background|$))|\(Background on this error at: [^)]*\)"
        r"|\(raised as a result of Query-invoked autoflush[^)]*\)",
        "",
        text,
        flags=re.S,
    )
    return " ".join(text.split())[:400]


def mlflow_failure(err, *, editing: bool, owner: str, reader: str | None, what: str) -> LabError:
    """MLflow's errors (RestException included) as one line that says what happened and what to do."""
    code = getattr(err, "error_code", "")
    if hasattr(err, "get_http_status_code"):
        status = err.get_http_status_code()
    else:  # requests' HTTPError: artifact uploads and downloads report refusals this way
        status = getattr(getattr(err, "response", None), "status_code", None)
    reader_name = f"team {reader}" if reader else "your token"
    if code == "PERMISSION_DENIED" or status == 403:
        if editing:
            thing = "diary" if what == owner else "runs"
            return EditRefused(
                f"{reader_name} can read but not edit team {owner}'s {thing}",
                f"ask team {owner} to change it, or write in your own: labclient diary {reader or 'TEAM'} --append "
                "TEXT",
            )
        return EditRefused(f"the server does not let {reader_name} read {what}", "check LAB_TEAM and LAB_TOKEN")
    if code in ("UNAUTHENTICATED", "CUSTOMER_UNAUTHORIZED") or status == 401:
        return TrackingError("the server did not accept your team's token (HTTP 401)", "run `labclient login` again")
    if code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
        return RunNotFound(f"{what} does not exist on this server", "check the name with `labclient diary list`")
    message = " ".join(str(getattr(err, "message", err)).split())[:300]
    return TrackingError(f"the tracking store refused the request for {what}: {message}", "check the tracking server")


@contextmanager
def mlflow_failures(target: Target, what: str, *, editing: bool, owner: str | None = None):
    """MLflow's errors inside the block (RestException, and requests' HTTPError from artifact transfers) as one
    line that names `what` and who may change it."""
    from mlflow.exceptions import MlflowException
    from requests import HTTPError

    try:
        yield
    except (MlflowException, HTTPError) as err:
        raise mlflow_failure(
            err, editing=editing, owner=owner or what.split("/")[0], reader=target.team, what=what
        ) from None


# --- a database store, for the sender --------------------------------------------------------------
def _disk_full(text: str) -> bool:
    text = text.lower()
    return "disk is full" in text or "no space left" in text or "disk quota exceeded" in text


@contextmanager
def store_errors(what: str):
    """MLflow's and SQLAlchemy's failures of a database store as the sender's two kinds: a refusal the
    store explains, or an outage (a dropped connection, a pool timeout, a full disk) that is retried."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except MlflowException as err:
        message = brief_sql_error(str(err.message))
        if err.error_code in PERMANENT_CODES:
            raise Refused(f"the tracking store refused {what}: {message}") from None
        raise _outage(message) from None
    except SQLAlchemyError as err:  # raised past MLflow's own handling (seen in log_batch when PostgreSQL stops)
        raise _outage(f"{type(err).__name__}: {brief_sql_error(str(err))}") from None
    except OSError as err:  # the artifact copy of a local store
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _outage(f"no space left on the device ({err.filename or 'artifacts'})") from None
        raise ServerUnreachable(
            f"the tracking store cannot write {err.filename or 'a file'}: {err.strerror}", RETRIED
        ) from None


def _outage(message: str) -> ServerUnreachable:
    if _disk_full(message):
        return StoreFull(
            f"the tracking store's disk is full: {message}",
            "free some disk space where the store keeps its data; nothing is lost, `labclient sync` sends the rest",
        )
    return ServerUnreachable(f"the tracking store is unavailable: {message}", RETRIED)
