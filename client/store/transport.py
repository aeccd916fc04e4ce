"""How a journal reaches its tracking store: MLflow's client on a database, or a labserver's REST API.

Both raise Refused only for one request the store itself explains it will never accept: an MLflow
error whose code says the entry is invalid (a changed param, a value too long), so the sender skips
it and says so. Everything else that fails is ServerUnreachable, retried and never dropped: no answer,
a timeout, a 5xx, a store whose database connection broke (SQLAlchemy's errors, on every transport),
and any answer that is not the tracking server's own (an HTML page, a 404, 413 or 502 from a proxy,
a body that is not JSON). Other TrackingErrors (a token refused) stop the sending of the whole run.
The HTTP transport sends each request once, with a timeout: retrying is the sender's job, with its own
backoff, not MLflow's minutes-long retry loop. Files larger than one chunk go up in chunks through the
lab's upload routes (labserver/uploads.py), each request under common proxy body limits (nginx: 1 MB).
"""

from __future__ import annotations

import json
import math
import mimetypes
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlparse

from labclient.errors import Refused, ServerUnreachable, TrackingError
from labclient.files import sha256_file
from labclient.store.failures import store_errors
from labclient.store.http import RETRIED, answer, is_missing
from labserver import routes
from labserver.names import run_number
from labserver.tags import LOCAL_ID_TAG, RUN_NUMBER_TAG

REQUEST_TIMEOUT_S = 15.0
UPLOAD_CHUNK_BYTES = 512 * 1024  # half of nginx's default client_max_body_size; LAB_UPLOAD_CHUNK_BYTES overrides


def upload_chunk_bytes() -> int:
    value = os.environ.get("LAB_UPLOAD_CHUNK_BYTES", "")
    return max(int(value), 4096) if value.isdigit() else UPLOAD_CHUNK_BYTES


@dataclass
class FoundRun:
    run_id: str
    number: int | None
    artifact_uri: str


def open_transport(target):
    return HttpTransport(target) if target.is_server else StoreTransport(target)


class LazyTransport:
    """A target's transport, opened on first use: a database that is down when sending starts (its schema
    check fails) is then an outage retried like any other, not a reason to give up on the run."""

    def __init__(self, target):
        self.target = target
        self._transport = None

    def __getattr__(self, name: str):
        if self._transport is None:
            self._transport = open_transport(self.target)
        return getattr(self._transport, name)


def _local_id_filter(local_id: str) -> str:
    return f"tags.`{LOCAL_ID_TAG}` = '{local_id}'"


def _number(tags: dict[str, str]) -> int | None:
    return run_number(tags.get(RUN_NUMBER_TAG))


# --- a database: SQLite (the embedded store) or PostgreSQL, through MlflowClient -------------------
class StoreTransport:
    def __init__(self, target):
        from labclient.store.client import open_client

        self.target = target
        with store_errors("opening the store"):  # MLflow's store writes its Default experiment when it opens
            self.client = open_client(target)

    def _call(self, method, *args, **kwargs):
        with store_errors(method):
            return getattr(self.client, method)(*args, **kwargs)

    def experiment_id(self, team: str) -> str:
        from labclient.store.client import ensure_team_experiment

        with store_errors("the team's experiment"):
            return ensure_team_experiment(self.client, self.target, team)

    def register(self, run_id: str) -> int:
        """The run's number, allocated by the lab's table in this database (once), with its identity tags."""
        from labserver.identity import register
        from labserver.store import LabStore

        with store_errors("a run number"):
            return register(self.client, LabStore(self.target.uri), run_id).number

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
            "log_batch",
            run_id,
            metrics=[Metric(key, value, timestamp, step) for key, value, timestamp, step in metrics],
            params=[Param(key, value) for key, value in params],
            tags=[RunTag(key, value) for key, value in tags],
        )

    def log_artifact(
        self, run_id: str, artifact_uri: str, path: Path, artifact_path: str | None, sha256: str | None = None
    ) -> None:
        self._call("log_artifact", run_id, str(path), artifact_path)

    def log_inputs(self, run_id: str, datasets: list[dict]) -> None:
        """Datasets as MLflow run inputs (the run page's Datasets, the runs table's Dataset column); a dataset
        the store already has for this run is not added twice."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        inputs = []
        for item in datasets:
            as_json = _dataset_input(item)
            tags = [InputTag(tag["key"], tag["value"]) for tag in as_json["tags"]]
            inputs.append(DatasetInput(Dataset(**as_json["dataset"]), tags=tags))
        self._call("log_inputs", run_id, inputs)

    def set_terminated(self, run_id: str, status: str, end_time: int) -> None:
        self._call("set_terminated", run_id, status=status, end_time=end_time)

    def get_run(self, run_id: str):
        return self._call("get_run", run_id)


# --- a labserver, over HTTP ----------------------------------------------------------------------------
class HttpTransport:
    def __init__(self, target, timeout: float | None = None):
        import requests

        if not (target.team and target.token):
            raise TrackingError(
                f"no team token for {target.uri}",
                "run `labclient login --server URL --team NAME` or set LAB_TEAM and LAB_TOKEN",
            )
        self.target = target
        self.base = target.uri.rstrip("/")
        self.timeout = timeout or REQUEST_TIMEOUT_S
        self.session = requests.Session()
        self.session.auth = (target.team, target.token)
        from labclient.store.client import use_credentials

        use_credentials(target)  # as open_client does: MLflow's client in this process reads as the team

    def _request(
        self, method: str, path: str, *, json=None, params=None, data=None, headers=None, missing_ok: bool = False
    ) -> dict | None:
        """The JSON answer; Refused only for an MLflow error that says the request can never succeed;
        None for a missing resource when `missing_ok`; ServerUnreachable for everything else."""
        import requests

        try:
            response = self.session.request(
                method, self.base + path, json=json, params=params, data=data, headers=headers, timeout=self.timeout
            )
        except requests.RequestException as err:
            # the type only: an exception's text may quote the request, and a token must never be shown
            raise ServerUnreachable(f"cannot reach the server at {self.base} ({type(err).__name__})", RETRIED) from None
        if missing_ok and is_missing(response):
            return None
        return answer(response, base=self.base, path=path, team=self.target.team)

    def experiment_id(self, team: str) -> str:
        from labclient.store.server_api import ServerApi

        identity = ServerApi(self.target, timeout=self.timeout).whoami()
        if identity.get("team") == team and identity.get("experiment_id"):
            return identity["experiment_id"]
        if identity.get("team") != team and not identity.get("is_admin"):
            raise TrackingError(
                f"the token is team {identity.get('team')!r}'s, the run is team {team!r}'s",
                f"set LAB_TEAM={team} and that team's LAB_TOKEN",
            )
        try:
            found = (
                self._request(
                    "GET", "/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": team}, missing_ok=True
                )
                or {}
            )
        except Refused:
            found = {}
        if "experiment" not in found:
            raise TrackingError(
                f"team {team!r} does not exist on {self.base}", "ask the server admin to run `labserver team add`"
            )
        return found["experiment"]["experiment_id"]

    def register(self, run_id: str) -> int:
        """The run's number, given by the server (once: asking again returns the same number)."""
        return int(self._request("POST", routes.REGISTER_RUN, json={"run_id": run_id})["number"])

    def find_run(self, experiment_id: str, local_id: str) -> FoundRun | None:
        body = {"experiment_ids": [experiment_id], "filter": _local_id_filter(local_id), "max_results": 1}
        runs = self._request("POST", "/api/2.0/mlflow/runs/search", json=body).get("runs", [])
        if not runs:
            return None
        info, tags = (
            runs[0]["info"],
            {tag["key"]: tag.get("value", "") for tag in runs[0].get("data", {}).get("tags", [])},
        )
        return FoundRun(info["run_id"], _number(tags), info.get("artifact_uri", ""))

    def create_run(self, experiment_id: str, name: str, tags: dict[str, str], start_time: int) -> FoundRun:
        body = {
            "experiment_id": experiment_id,
            "run_name": name,
            "start_time": start_time,
            "tags": [{"key": key, "value": value} for key, value in tags.items()],
        }
        info = self._request("POST", "/api/2.0/mlflow/runs/create", json=body)["run"]["info"]
        return FoundRun(info["run_id"], _number(tags), info.get("artifact_uri", ""))

    def log_batch(self, run_id: str, metrics: list, params: list, tags: list) -> None:
        body = {
            "run_id": run_id,
            "metrics": [
                {"key": key, "value": _json_double(value), "timestamp": timestamp, "step": step}
                for key, value, timestamp, step in metrics
            ],
            "params": [{"key": key, "value": value} for key, value in params],
            "tags": [{"key": key, "value": value} for key, value in tags],
        }
        self._request("POST", "/api/2.0/mlflow/runs/log-batch", json=body)

    def log_artifact(
        self, run_id: str, artifact_uri: str, path: Path, artifact_path: str | None, sha256: str | None = None
    ) -> None:
        parsed = urlparse(artifact_uri)
        if parsed.scheme != "mlflow-artifacts":  # a server that does not proxy artifacts: MLflow's own client
            StoreLessArtifacts(self.target).log_artifact(run_id, path, artifact_path)
            return
        inside_run = "/".join(([artifact_path.strip("/")] if artifact_path else []) + [path.name])
        size = path.stat().st_size
        if size > upload_chunk_bytes():
            self._upload_in_chunks(run_id, path, inside_run, size, sha256 or sha256_file(path))
            return
        url_path = "/api/2.0/mlflow-artifacts/artifacts/" + quote(f"{parsed.path.strip('/')}/{inside_run}")
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        with open(path, "rb") as handle:
            self._request("PUT", url_path, data=handle, headers={"Content-Type": content_type})

    def _upload_in_chunks(self, run_id: str, path: Path, inside_run: str, size: int, sha256: str) -> None:
        """create (idempotent: the same run, path, size and sha256 resume the same upload) -> chunks at
        offsets -> complete, where the server checks size and sha256 before the file joins the run."""
        from labserver.routes import UPLOAD_CHUNK, UPLOAD_COMPLETE, UPLOAD_CREATE

        upload = self._request(
            "POST", UPLOAD_CREATE, json={"run_id": run_id, "path": inside_run, "size": size, "sha256": sha256}
        )
        if upload.get("complete"):  # the answer to an earlier complete was lost
            return
        received, chunk = int(upload["received"]), upload_chunk_bytes()
        with open(path, "rb") as handle:
            while received < size:
                handle.seek(received)
                answer = self._request(
                    "PUT",
                    UPLOAD_CHUNK,
                    params={"upload_id": upload["upload_id"], "offset": received},
                    data=handle.read(chunk),
                    headers={"Content-Type": "application/octet-stream"},
                )
                received = int(answer["received"])
        self._request("POST", UPLOAD_COMPLETE, json={"upload_id": upload["upload_id"]})

    def log_inputs(self, run_id: str, datasets: list[dict]) -> None:
        body = {"run_id": run_id, "datasets": [_dataset_input(item) for item in datasets]}
        self._request("POST", "/api/2.0/mlflow/runs/log-inputs", json=body)

    def set_terminated(self, run_id: str, status: str, end_time: int) -> None:
        self._request(
            "POST", "/api/2.0/mlflow/runs/update", json={"run_id": run_id, "status": status, "end_time": end_time}
        )

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

        from labclient.store.client import open_client

        try:
            open_client(self.target).log_artifact(run_id, str(path), artifact_path)
        except MlflowException as err:
            raise ServerUnreachable(
                f"uploading {path.name} failed: {' '.join(str(err.message).split())[:300]}"
            ) from None


def _json_double(value: float):
    """Protobuf's JSON form of a double: NaN and infinities as strings, as MLflow's own client sends them."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _dataset_input(item: dict) -> dict:
    """A dataset as MLflow's DatasetInput in its JSON (REST) form; `context` becomes the input's tag."""
    dataset = {key: str(item[key]) for key in ("name", "digest", "source_type", "source")}
    if item.get("profile"):
        dataset["profile"] = json.dumps(item["profile"], sort_keys=True)
    return {"tags": [{"key": "mlflow.data.context", "value": str(item["context"])}], "dataset": dataset}
