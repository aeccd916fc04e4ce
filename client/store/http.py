"""HTTP answers of a labserver (MLflow's REST API and the lab's routes) as typed errors: the one place a status
code becomes an error, for the sender, `sync`, `login` and every other request (like huggingface_hub's
`hf_raise_for_status`).

Only a refusal the store itself explains is permanent: an MLflow JSON error whose code says the request can never
succeed. Anything else that is not an answer (a proxy's page, a 404 from something that is not a labserver, a 5xx,
the server's 503 while its database is down) is an outage to wait out, which a run does in its journal.
"""

from __future__ import annotations

from labclient.errors import PermissionDenied, Refused, ServerUnreachable, TooManyRequests, TrackingError

# MLflow error codes that mean "this request can never be accepted"; any other failure may pass on a retry
PERMANENT_CODES = frozenset({"INVALID_PARAMETER_VALUE", "INVALID_STATE", "RESOURCE_ALREADY_EXISTS"})
RETRIED = "it is retried; nothing is lost"


def answer(response, *, base: str, path: str, team: str | None) -> dict:
    """The JSON body of a successful answer ({} when empty), else the error that says what happened and what to do."""
    status = response.status_code
    code, message = mlflow_error(response)
    name = path.rsplit("/", 1)[-1]
    if status == 401:
        raise TrackingError(
            f"the server at {base} did not accept the token of team {team!r}",
            "run `labclient login` again (or set LAB_TOKEN); a run keeps its data for `labclient sync`",
        )
    if status == 403:
        raise PermissionDenied(f"the server at {base} refused {name}: {message}", "log in as the run's team")
    if status == 429:
        raise TooManyRequests(
            "the server is turning this machine away after too many failed logins",
            "wait a minute, then try again; a run keeps its data meanwhile",
        )
    if response.ok:
        try:
            return response.json() if response.content else {}
        except ValueError:  # a proxy's or captive portal's page with a 200
            raise ServerUnreachable(
                f"{base} answered {name} with something that is not JSON ({describe(response)}): "
                "not the tracking server's answer",
                f"check the URL and any proxy in front of the server; {RETRIED}",
            ) from None
    if 400 <= status < 500 and code in PERMANENT_CODES:
        raise Refused(f"the server refused {name}: {message}")
    said = f"{code}: {message}" if code else f"{describe(response)}, not the tracking server's own answer"
    remedy = (
        "try again shortly"
        if status >= 500
        else "check the URL if it persists: is it a labserver, and does a proxy in front of it pass this route?"
    )
    raise ServerUnreachable(f"the server at {base} answered {status} to {name} ({said})", f"{remedy}; {RETRIED}")


def is_missing(response) -> bool:
    """MLflow's own 404 for a resource that does not exist (not a proxy's 404 for a route it does not pass)."""
    return response.status_code == 404 and mlflow_error(response)[0] == "RESOURCE_DOES_NOT_EXIST"


def mlflow_error(response) -> tuple[str | None, str]:
    """(error_code, message) of an MLflow JSON error; (None, the start of the body) for anything else."""
    try:
        body = response.json()
    except ValueError:
        return None, " ".join(response.text.split())[:300]
    if isinstance(body, dict) and isinstance(body.get("error_code"), str):
        return body["error_code"], " ".join(str(body.get("message", "")).split())[:300]
    return None, " ".join(response.text.split())[:300]


def describe(response) -> str:
    kind = (response.headers.get("Content-Type") or "no content type").split(";")[0]
    return f"{kind}, {len(response.content):,} bytes"
