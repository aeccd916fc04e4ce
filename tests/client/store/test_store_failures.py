"""store/failures.py: a database store's exceptions become the sender's two kinds, a refusal or an outage."""

from __future__ import annotations

import errno

import pytest
import sqlalchemy.exc as sa_errors
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from labclient.errors import Refused, ServerUnreachable, StoreFull
from labclient.store.failures import brief_sql_error, store_errors


def test_mlflows_never_is_a_refusal():
    with pytest.raises(Refused, match="refused log_batch: bad value"):
        with store_errors("log_batch"):
            raise MlflowException("bad value", error_code=INVALID_PARAMETER_VALUE)


@pytest.mark.parametrize(
    "error",
    [
        MlflowException("(psycopg.OperationalError) server closed the connection", error_code="INTERNAL_ERROR"),
        sa_errors.OperationalError("SELECT 1", {}, Exception("connection refused")),
        sa_errors.TimeoutError("QueuePool limit of size 5 overflow 10 reached"),
    ],
)
def test_a_database_that_fell_over_is_an_outage(error):
    with pytest.raises(ServerUnreachable) as caught:
        with store_errors("log_batch"):
            raise error
    assert not isinstance(caught.value, Refused)


def test_a_full_disk_is_said_as_such():
    with pytest.raises(StoreFull, match="disk is full"):
        with store_errors("log_artifact"):
            raise OSError(errno.ENOSPC, "No space left on device", "/store/artifacts/x")


def test_sql_messages_lose_the_statement_and_the_link():
    text = (
        "(psycopg.OperationalError) connection failed\n[SQL: INSERT INTO metrics VALUES (%(a)s)]\n"
        "[parameters: {'a': 'secret'}]\n(Background on this error at: https://sqlalche.me/e/20/e3q8)"
    )
    brief = brief_sql_error(text)
    assert brief == "(psycopg.OperationalError) connection failed"
