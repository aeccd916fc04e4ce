"""How a journal reaches its tracking store: MLflow's client on a database, or a labserver's REST API.

Both raise ServerUnreachable for what is worth retrying (no answer, a timeout, 5xx, 429) and Refused
for one request the store will never accept (a changed param, a value too long), so the sender can
retry the first kind and skip the second. Other TrackingErrors (a token refused) stop the sending
of the whole run. The HTTP transport sends each request once, with a timeout: retrying is the
recorder's job, with its own backoff, not MLflow's minutes-long retry loop.
"""

from __future__ import annotations

import math
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlparse

from labclient.errors import ServerUnreachable, TrackingError
from labserver import routes
from labserver.names import RUN_NUMBER_TAG, run_number

REQUEST_TIMEOUT_S = 15.0
LOCAL_ID_TAG = "lab.local_id"
LOCAL_NAME_TAG = "lab.local_name"
_RETRY_CODES = {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED", "ABORTED"}


class Refused(TrackingError):
    """The store refused this one request for good; the sender skips it and says so."""


@dataclass
class FoundRun:
    run_id: str
    number: int | None
    artifact_uri: str


def open_transport(target):
    return HttpTransport(target) if target.is_server else StoreTransport(target)


def _local_id_filter(local_id: str) -> str:
    return f"tags.`{LOCAL_ID_TAG}` = '{local_id}'"


def _number(tags: dict[str, str]) -> int | None:
    return run_number(tags.get(RUN_NUMBER_TAG))


# --- a database: SQLite (the embedded store) or PostgreSQL, through MlflowClient -------------------
class StoreTransport:
    def __init__(self, target):
        from labclient import tracking

        self.target = target
        self.client = tracking.open_client(target)

    def _call(self, method, *args, **kwargs):
        from mlflow.exceptions import MlflowException

        try:
            return getattr(self.client, method)(*args, **kwargs)
        except MlflowException as err:
            message = " ".join(str(err.message).split())[:500]
            if err.error_code in _RETRY_CODES:
                raise ServerUnreachable(f"the tracking store is unavailable: {message}", "it is retried") from None
            raise Refused(f"the tracking store refused {method}: {message}") from None

    def experiment_id(self, team: str) -> str:
        from labclient import tracking

        return tracking.ensure_team_experiment(self.client, self.target, team)

    def register(self, run_id: str) -> int:
        """The run's number, allocated by the lab's table in this database (once), with its identity tags."""
        from labserver.identity import register
        from labserver.store import LabStore

        try:
            return register(self.client, LabStore(self.target.uri), run_id).number
        except Exception as err:  # MLflow's own errors, and the lab table's database errors alike
            message = " ".join(str(getattr(err, "message", err)).split())[:300]
            raise ServerUnreachable(f"the tracking store could not number the run: {message}", "it is retried") from None

    def find_run(self, experiment_id: str, local_id: str) -> FoundRun | None:
        runs = self._call("search_runs", [experiment_id], _local_id_filter(local_id), max_results=1)
        if not runs:
            return None
        return FoundRun(runs[0].info.run_id, _number(runs[0].data.tags), runs[0].info.artifact_uri)

    def create_run(self, experiment_id: str, name: str, tags: dict[str, str], start_time: int) -> FoundRun:
        run = self._call("create_run", experiment_id, run_name=name, tags=tags, start_time=start_time)
        return FoundRun(run.info.run_id, _number(tags), run.info.artifact_uri)

    def log_batch(self, run_id: str, metrics: list, params: list, tags: list) -> None:
        from mlflow.entities import Metric, Param, RunTag

        self._call(
            "log_batch", run_id,
            metrics=[Metric(key, value, timestamp, step) for key, value, timestamp, step in metrics],
            params=[Param(key, value) for key, value in params],
            tags=[RunTag(key, value) for key, value in tags],
        )

    def log_artifact(self, run_id: str, artifact_uri: str, path: Path, artifact_path: str | None) -> None:
        self._call("log_artifact", run_id, str(path), artifact_path)

    def set_terminated(self, run_id: str, status: str, end_time: int) -> None:
        self._call("set_terminated", run_id, status=status, end_time=end_time)

    def get_run(self, run_id: str):
        return self._call("get_run", run_id)


# --- a labserver, over HTTP ----------------------------------------------------------------------------
class HttpTransport:
    def __init__(self, target, timeout: float | None = None):
        import requests

        if not (target.team and target.token):
            raise TrackingError(f"no team token for {target.uri}",
                                "run `labclient login --server URL --team NAME` or set LAB_TEAM and LAB_TOKEN")
        self.target = target
        self.base = target.uri.rstrip("/")
        self.timeout = timeout or REQUEST_TIMEOUT_S
        self.session = requests.Session()
        self.session.auth = (target.team, target.token)
        from labclient import tracking

        tracking.use_credentials(target)  # as open_client does: MLflow's client in this process reads as the team

    def _request(self, method: str, path: str, *, json=None, params=None, data=None, headers=None) -> dict:
        import requests

        try:
            response = self.session.request(method, self.base + path, json=json, params=params, data=data, headers=headers,
                                            timeout=self.timeout)
        except requests.RequestException as err:
            # the type only: an exception's text may quote the request, and a token must never be shown
            raise ServerUnreachable(f"cannot reach the server at {self.base} ({type(err).__name__})", "it is retried") from None
        status = response.status_code
        if status in (408, 429) or status >= 500:
            raise ServerUnreachable(f"the server at {self.base} answered {status}", "it is retried")
        if status == 401:
            raise TrackingError(f"the server at {self.base} did not accept the token of team {self.target.team!r}",
                                "run `labclient login` again (or set LAB_TOKEN), then `labclient sync`")
        if status == 403:
            raise TrackingError(f"the server at {self.base} refused: {_message(response)}", "log in as the run's team")
        if not response.ok:
            raise Refused(f"the server refused {path.rsplit('/', 1)[-1]}: {_message(response)}")
        try:
            return response.json() if response.content else {}
        except ValueError:
            raise Refused(f"{self.base} answered {path} with something that is not JSON") from None

    def experiment_id(self, team: str) -> str:
        from labclient.server_api import ServerApi

        identity = ServerApi(self.target, timeout=self.timeout).whoami()
        if identity.get("team") == team and identity.get("experiment_id"):
            return identity["experiment_id"]
        if identity.get("team") != team and not identity.get("is_admin"):
            raise TrackingError(f"the token is team {identity.get('team')!r}'s, the run is team {team!r}'s",
                                f"set LAB_TEAM={team} and that team's LAB_TOKEN")
        try:
            found = self._request("GET", "/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": team})
        except Refused:
            found = {}
        if "experiment" not in found:
            raise TrackingError(f"team {team!r} does not exist on {self.base}", "ask the server admin to run `labserver team add`")
        return found["experiment"]["experiment_id"]

    def register(self, run_id: str) -> int:
        """The run's number, given by the server (once: asking again returns the same number)."""
        return int(self._request("POST", routes.REGISTER_RUN, json={"run_id": run_id})["number"])

    def find_run(self, experiment_id: str, local_id: str) -> FoundRun | None:
        body = {"experiment_ids": [experiment_id], "filter": _local_id_filter(local_id), "max_results": 1}
        runs = self._request("POST", "/api/2.0/mlflow/runs/search", json=body).get("runs", [])
        if not runs:
            return None
        info, tags = runs[0]["info"], {tag["key"]: tag.get("value", "") for tag in runs[0].get("data", {}).get("tags", [])}
        return FoundRun(info["run_id"], _number(tags), info.get("artifact_uri", ""))

    def create_run(self, experiment_id: str, name: str, tags: dict[str, str], start_time: int) -> FoundRun:
        body = {"experiment_id": experiment_id, "run_name": name, "start_time": start_time,
                "tags": [{"key": key, "value": value} for key, value in tags.items()]}
        info = self._request("POST", "/api/2.0/mlflow/runs/create", json=body)["run"]["info"]
        return FoundRun(info["run_id"], _number(tags), info.get("artifact_uri", ""))

    def log_batch(self, run_id: str, metrics: list, params: list, tags: list) -> None:
        body = {
            "run_id": run_id,
            "metrics": [{"key": key, "value": _json_double(value), "timestamp": timestamp, "step": step}
                        for key, value, timestamp, step in metrics],
            "params": [{"key": key, "value": value} for key, value in params],
            "tags": [{"key": key, "value": value} for key, value in tags],
        }
        self._request("POST", "/api/2.0/mlflow/runs/log-batch", json=body)

    def log_artifact(self, run_id: str, artifact_uri: str, path: Path, artifact_path: str | None) -> None:
        parsed = urlparse(artifact_uri)
        if parsed.scheme != "mlflow-artifacts":  # a server that does not proxy artifacts: MLflow's own client
            StoreLessArtifacts(self.target).log_artifact(run_id, path, artifact_path)
            return
        parts = [parsed.path.strip("/")] + ([artifact_path.strip("/")] if artifact_path else []) + [path.name]
        url_path = "/api/2.0/mlflow-artifacts/artifacts/" + quote("/".join(parts))
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        with open(path, "rb") as handle:
            self._request("PUT", url_path, data=handle, headers={"Content-Type": content_type})

    def set_terminated(self, run_id: str, status: str, end_time: int) -> None:
        self._request("POST", "/api/2.0/mlflow/runs/update", json={"run_id": run_id, "status": status, "end_time": end_time})

    def get_run(self, run_id: str):
        from mlflow.entities import Run
        from mlflow.protos.service_pb2 import GetRun
        from mlflow.utils.proto_json_utils import parse_dict

        message = GetRun.Response()
        parse_dict(self._request("GET", "/api/2.0/mlflow/runs/get", params={"run_id": run_id}), message)
        return Run.from_proto(message.run)


class StoreLessArtifacts:
    """Artifacts of a server that hands out direct store URIs (s3://...): MLflow's client uploads them."""

    def __init__(self, target):
        self.target = target

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None) -> None:
        from mlflow.exceptions import MlflowException

        from labclient import tracking

        try:
            tracking.open_client(self.target).log_artifact(run_id, str(path), artifact_path)
        except MlflowException as err:
            raise ServerUnreachable(f"uploading {path.name} failed: {' '.join(str(err.message).split())[:300]}") from None


def _json_double(value: float):
    """Protobuf's JSON form of a double: NaN and infinities as strings, as MLflow's own client sends them."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _message(response) -> str:
    try:
        return " ".join(str(response.json().get("message", response.text)).split())[:300]
    except ValueError:
        return " ".join(response.text.split())[:300]
