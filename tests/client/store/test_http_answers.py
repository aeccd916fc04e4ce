"""store/http.py: the one place an HTTP answer becomes a typed error, with real `requests.Response` objects."""

from __future__ import annotations

import json

import pytest
import requests

from labclient.errors import PermissionDenied, Refused, ServerUnreachable, TooManyRequests, TrackingError
from labclient.store.http import answer, is_missing, mlflow_error


def _response(status: int, body: bytes | dict = b"", content_type: str = "application/json") -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode() if isinstance(body, dict) else body
    response.headers["Content-Type"] = content_type
    return response


def _answer(response):
    return answer(response, base="http://lab", path="/api/2.0/mlflow/runs/log-batch", team="blue")


def test_a_json_answer_is_returned_and_an_empty_one_is_empty():
    assert _answer(_response(200, {"run": {"info": {}}})) == {"run": {"info": {}}}
    assert _answer(_response(200, b"")) == {}


@pytest.mark.parametrize("code", ["INVALID_PARAMETER_VALUE", "INVALID_STATE", "RESOURCE_ALREADY_EXISTS"])
def test_only_a_refusal_the_store_explains_is_permanent(code):
    with pytest.raises(Refused, match="log-batch: NaN step"):
        _answer(_response(400, {"error_code": code, "message": "NaN step"}))


@pytest.mark.parametrize(
    "response",
    [
        _response(404, b"<html>Not Found</html>", "text/html"),  # a proxy's page
        _response(413, b"<html>413 Request Entity Too Large</html>", "text/html"),  # nginx's body limit
        _response(400, {"error_code": "SOMETHING_NEW", "message": "?"}),  # a code we do not know: not "never"
        _response(500, {"error_code": "INTERNAL_ERROR", "message": "boom"}),
        _response(503, {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "database down"}),
        _response(200, b"<html>captive portal</html>", "text/html"),  # a 200 that is not the store's answer
    ],
)
def test_everything_else_is_an_outage_to_retry(response):
    with pytest.raises(ServerUnreachable) as caught:
        _answer(response)
    assert not isinstance(caught.value, Refused)
    assert "\n" not in caught.value.one_line() and "nothing is lost" in caught.value.one_line()


def test_tokens_and_permissions_are_said_plainly():
    with pytest.raises(TrackingError, match="did not accept the token of team 'blue'") as caught:
        _answer(_response(401, {"error_code": "UNAUTHENTICATED", "message": "no"}))
    assert not isinstance(caught.value, ServerUnreachable)  # a wrong token is not retried for ever
    with pytest.raises(PermissionDenied, match="refused log-batch: not your run"):
        _answer(_response(403, {"error_code": "PERMISSION_DENIED", "message": "not your run"}))
    with pytest.raises(TooManyRequests, match="too many failed logins"):
        _answer(_response(429, b"slow down", "text/plain"))


def test_missing_means_mlflows_own_404_only():
    assert is_missing(_response(404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no run"}))
    assert not is_missing(_response(404, b"<html>Not Found</html>", "text/html"))
    assert mlflow_error(_response(502, b"  bad\n gateway  ", "text/plain")) == (None, "bad gateway")
