"""MLflow's and the database's exceptions as the lab's errors: one line that says what happened and what to do."""

from __future__ import annotations

import re

from labclient.errors import TrackingError
from labclient.store.target import Target


def store_unavailable(target: Target, err: Exception) -> TrackingError | None:
    """A database that is down, restarting or full is an outage to wait out in the journal (ServerUnreachable),
    not a wrong URI: None for the errors that a retry will not mend."""
    import sqlalchemy.exc as sa_errors
    from labclient.errors import ServerUnreachable, StoreFull

    text = brief_sql_error(str(err))
    if "disk is full" in text or "No space left" in text:
        return StoreFull(f"the tracking store's disk is full ({text})",
                         "free some disk space where the store keeps its data; nothing is lost, "
                         "`labclient sync` sends it")
    outage = (sa_errors.OperationalError, sa_errors.InterfaceError, sa_errors.TimeoutError,
              sa_errors.DisconnectionError)
    if not isinstance(err, outage) or any(reason in text for reason in _NOT_AN_OUTAGE):
        return None
    if target.uri.startswith("sqlite") and "locked" not in text:
        return None  # a file that cannot be opened: a wrong path, not an outage
    return ServerUnreachable(f"the tracking store is unavailable: {type(err).__name__}: {text}",
                             "the run is journalled and sent when the store is back, or by `labclient sync`")


_NOT_AN_OUTAGE = ("password authentication failed", "does not exist", "no password supplied")


def brief_sql_error(text: str) -> str:
    """SQLAlchemy's message without the statement, its parameters and the link it appends: one short line."""
    text = re.sub(r"\[(?:SQL|parameters): .*?\](?=\s*(?:\[|\(Background|$))|\(Background on this error at: [^)]*\)"
                  r"|\(raised as a result of Query-invoked autoflush[^)]*\)", "", text, flags=re.S)
    return " ".join(text.split())[:400]
