"""The chunked upload routes on a real labserver: who may upload, which paths, resuming, and the checks at
completion that keep a damaged or partial file out of a run."""

from __future__ import annotations

import hashlib
import os

import pytest
import requests
from mlflow.tracking import MlflowClient

from labserver.routes import UPLOAD_CHUNK, UPLOAD_COMPLETE, UPLOAD_CREATE

pytestmark = pytest.mark.slow


def _api(server, team, method, path, **kwargs):
    return requests.request(method, server.url + path, auth=server.auth(team), timeout=60, **kwargs)


@pytest.fixture(scope="module")
def blue_run(lab_server):
    experiment = _api(
        lab_server, "blue", "GET", "/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": "blue"}
    )
    created = _api(
        lab_server,
        "blue",
        "POST",
        "/api/2.0/mlflow/runs/create",
        json={"experiment_id": experiment.json()["experiment"]["experiment_id"], "run_name": "blue/uploads"},
    )
    assert created.status_code == 200, created.text
    return created.json()["run"]["info"]["run_id"]


def _create(server, team, run_id, path, data):
    return _api(
        server,
        team,
        "POST",
        UPLOAD_CREATE,
        json={"run_id": run_id, "path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()},
    )


def _chunk(server, team, upload_id, offset, data):
    return _api(server, team, "PUT", UPLOAD_CHUNK, params={"upload_id": upload_id, "offset": offset}, data=data)


def test_a_file_goes_up_in_chunks_resumes_and_lands_in_the_run(lab_server, blue_run, tmp_path):
    data = os.urandom(300_000)
    created = _create(lab_server, "blue", blue_run, "model/model.safetensors", data)
    assert created.status_code == 200, created.text
    upload = created.json()
    assert upload["received"] == 0 and upload["complete"] is False
    assert _chunk(lab_server, "blue", upload["upload_id"], 0, data[:100_000]).json() == {"received": 100_000}
    again = _chunk(lab_server, "blue", upload["upload_id"], 0, data[:100_000])
    assert again.json() == {"received": 100_000}  # the same chunk twice changes nothing
    resumed = _create(lab_server, "blue", blue_run, "model/model.safetensors", data).json()
    assert resumed == {**upload, "received": 100_000}  # the same upload, resumed where it stopped
    early = _api(lab_server, "blue", "POST", UPLOAD_COMPLETE, json={"upload_id": upload["upload_id"]})
    assert early.status_code == 409 and early.json()["error_code"] == "ABORTED"  # not all of it yet
    assert _chunk(lab_server, "blue", upload["upload_id"], 100_000, data[100_000:]).json() == {"received": 300_000}
    done = _api(lab_server, "blue", "POST", UPLOAD_COMPLETE, json={"upload_id": upload["upload_id"]})
    assert done.status_code == 200, done.text
    back = MlflowClient(lab_server.url)
    os.environ.update(MLFLOW_TRACKING_USERNAME="blue", MLFLOW_TRACKING_PASSWORD=lab_server.tokens["blue"])
    try:
        path = back.download_artifacts(blue_run, "model/model.safetensors", str(tmp_path))
    finally:
        del os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]
    assert open(path, "rb").read() == data
    lost_answer = _create(lab_server, "blue", blue_run, "model/model.safetensors", data)
    assert lost_answer.json()["complete"] is True  # what a client whose complete went unanswered asks next


def test_a_chunk_past_what_arrived_and_a_file_that_does_not_match_are_refused(lab_server, blue_run):
    data = os.urandom(50_000)
    upload = _create(lab_server, "blue", blue_run, "damaged.bin", data).json()
    gap = _chunk(lab_server, "blue", upload["upload_id"], 10, data[10:])
    assert gap.status_code == 409 and gap.json()["error_code"] == "ABORTED"
    damaged = data[:49_999] + b"X"  # changed on the way
    assert _chunk(lab_server, "blue", upload["upload_id"], 0, damaged).status_code == 200
    mismatch = _api(lab_server, "blue", "POST", UPLOAD_COMPLETE, json={"upload_id": upload["upload_id"]})
    assert mismatch.status_code == 409 and "does not match" in mismatch.json()["message"]
    assert _create(lab_server, "blue", blue_run, "damaged.bin", data).json()["received"] == 0  # discarded: start over
    too_much = _chunk(lab_server, "blue", upload["upload_id"], 0, data + b"more")
    assert too_much.status_code == 409


@pytest.mark.parametrize("path", ["../escape.bin", "model/../../x", "/etc/passwd", "a//b", "a/./b", "dir\\..\\x"])
def test_paths_outside_the_run_are_refused_for_good(lab_server, blue_run, path):
    refused = _create(lab_server, "blue", blue_run, path, b"x")
    assert refused.status_code == 400 and refused.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_only_a_team_that_may_update_the_run_can_upload_to_it(lab_server, blue_run):
    data = b"red was here"
    refused = _create(lab_server, "red", blue_run, "notes.txt", data)
    assert refused.status_code == 403 and refused.json()["error_code"] == "PERMISSION_DENIED"
    upload = _create(lab_server, "blue", blue_run, "notes.txt", data).json()
    assert _chunk(lab_server, "red", upload["upload_id"], 0, data).status_code == 403
    assert _api(lab_server, "red", "POST", UPLOAD_COMPLETE, json={"upload_id": upload["upload_id"]}).status_code == 403
    assert requests.post(lab_server.url + UPLOAD_CREATE, json={}, timeout=30).status_code == 401  # no login at all
    assert _create(lab_server, "admin", blue_run, "by-admin.txt", data).status_code == 200


def test_a_logged_models_folder_takes_chunked_uploads_from_its_team_only(lab_server, blue_run):
    experiment_id = _api(lab_server, "blue", "GET", "/api/2.0/mlflow/runs/get", params={"run_id": blue_run}).json()[
        "run"
    ]["info"]["experiment_id"]
    created = _api(
        lab_server,
        "blue",
        "POST",
        "/api/2.0/mlflow/logged-models",
        json={"experiment_id": experiment_id, "source_run_id": blue_run, "name": "chunked"},
    )
    assert created.status_code == 200, created.text
    model_id = created.json()["model"]["info"]["model_id"]
    data = os.urandom(70_000)
    body = {
        "model_id": model_id,
        "path": "data/weights.bin",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    assert _api(lab_server, "red", "POST", UPLOAD_CREATE, json=body).status_code == 403
    upload = _api(lab_server, "blue", "POST", UPLOAD_CREATE, json=body).json()
    assert _chunk(lab_server, "blue", upload["upload_id"], 0, data).json() == {"received": len(data)}
    done = _api(lab_server, "blue", "POST", UPLOAD_COMPLETE, json={"upload_id": upload["upload_id"]})
    assert done.status_code == 200, done.text
    stored = lab_server.home / "artifacts" / experiment_id / "models" / model_id / "artifacts" / "data" / "weights.bin"
    assert stored.read_bytes() == data
    for wrong in ({**body, "model_id": "m-not-an-id"}, {**body, "run_id": blue_run}, {**body, "path": "../x"}):
        refused = _api(lab_server, "blue", "POST", UPLOAD_CREATE, json=wrong)
        assert refused.status_code == 400, refused.text
