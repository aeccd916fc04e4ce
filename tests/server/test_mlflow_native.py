"""Plain MLflow 3 against labserver, without labclient: a team logs a PyTorch model as an MLflow logged model,
registers it under its own name, sets an alias and loads it back; another team reads and loads it too, and every
write it tries on the first team's model is refused. Each refused attack is replayed as raw HTTP requests against
the running server, and the first team's model still loads unchanged afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import requests

pytestmark = pytest.mark.slow  # real server, MLflow and torch in subprocesses

LOG_AND_REGISTER = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    import torch
    import mlflow
    import mlflow.pytorch
    from mlflow import MlflowClient

    team = os.environ["MLFLOW_TRACKING_USERNAME"]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2)).eval()
    example = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    experiment = mlflow.set_experiment(team)
    with mlflow.start_run() as run:
        logged = mlflow.pytorch.log_model(model, name="model", input_example=example, serialization_format="pt2")
        exported = mlflow.pytorch.log_model(model, name="exported", input_example=example, export_model=True)
    client = MlflowClient()

    def files(model_id):
        listed = client.list_logged_model_artifacts(model_id) + client.list_logged_model_artifacts(model_id, "data")
        return sorted(entry.path for entry in listed)

    version = mlflow.register_model(logged.model_uri, f"{team}-mnist")
    client.set_registered_model_alias(f"{team}-mnist", "champion", version.version)
    loaded = mlflow.pytorch.load_model(f"models:/{team}-mnist@champion")
    with torch.no_grad():
        same = np.allclose(loaded(torch.from_numpy(example)).numpy(), model(torch.from_numpy(example)).numpy())
    print(json.dumps({
        "experiment_id": experiment.experiment_id,
        "run_id": run.info.run_id,
        "model_id": logged.model_id,
        "model_uri": logged.model_uri,
        "version": version.version,
        "same_output": bool(same),
        "files": files(logged.model_id),
        "exported_files": files(exported.model_id),
        "example": example.tolist(),
        "output": model(torch.from_numpy(example)).detach().numpy().tolist(),
        "labclient_imported": any(name.startswith("labclient") for name in sys.modules),
    }))
    """
)

READ_AND_LOAD = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    import torch
    import mlflow
    import mlflow.pytorch
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    owner, model_id = sys.argv[1], sys.argv[2]
    example = np.array(json.loads(sys.argv[3]), dtype=np.float32)
    client = MlflowClient()
    loaded = mlflow.pytorch.load_model(f"models:/{owner}-mnist@champion")
    with torch.no_grad():
        output = loaded(torch.from_numpy(example)).numpy().tolist()
    try:
        mlflow.register_model(f"models:/{model_id}", f"{owner}-stolen")
        refused = None
    except MlflowException as err:
        refused = err.message
    print(json.dumps({
        "output": output,
        "alias_version": client.get_model_version_by_alias(f"{owner}-mnist", "champion").version,
        "register_refused": refused,
        "labclient_imported": any(name.startswith("labclient") for name in sys.modules),
    }))
    """
)


def _mlflow_script(server, team, tmp_path, script, *args) -> dict:
    """A plain MLflow script as `team`: only MLflow's own environment variables, no labclient."""
    path = tmp_path / f"{team}-script.py"
    path.write_text(script, encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("LAB_", "MLFLOW_"))}
    env.update(
        MLFLOW_TRACKING_URI=server.url,
        MLFLOW_TRACKING_USERNAME=team,
        MLFLOW_TRACKING_PASSWORD=server.tokens[team],
        HOME=str(tmp_path / f"{team}-home"),
    )
    result = subprocess.run(
        [sys.executable, str(path), *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _api(server, team, method, path, **kwargs):
    return requests.request(method, server.url + path, auth=server.auth(team), timeout=30, **kwargs)


def _raw(server, team, method, path, body=b"", headers=None):
    """http.client sends the path and body exactly as given."""
    import base64
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    credentials = base64.b64encode(":".join(server.auth(team)).encode()).decode()
    connection.request(method, path, body=body, headers={"Authorization": f"Basic {credentials}", **(headers or {})})
    response = connection.getresponse()
    status, text = response.status, response.read()
    connection.close()
    return status, text


@pytest.fixture(scope="module")
def red_model(lab_server, tmp_path_factory):
    """Team red's logged, registered and aliased PyTorch model, made by a plain MLflow script."""
    return _mlflow_script(lab_server, "red", tmp_path_factory.mktemp("red-mlflow"), LOG_AND_REGISTER)


def test_plain_mlflow_logs_registers_aliases_and_loads_a_model(red_model):
    assert red_model["same_output"] is True and red_model["labclient_imported"] is False
    assert red_model["model_uri"] == f"models:/{red_model['model_id']}" and red_model["version"] == "1"
    assert "MLmodel" in red_model["files"] and any(path.endswith("model.pt2") for path in red_model["files"])
    # export_model=True (deprecated) chooses the same pt2 format
    assert any(path.endswith("model.pt2") for path in red_model["exported_files"])


def _model_folder(model, experiment_id=None):
    experiment_id = experiment_id or model["experiment_id"]
    return f"/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/models/{model['model_id']}/artifacts"


def test_other_teams_cannot_write_into_a_logged_models_folder(lab_server, red_model):
    folder = _model_folder(red_model)
    refused = _api(lab_server, "blue", "PUT", f"{folder}/MLmodel", data=b"blue was here")
    assert refused.status_code == 403, refused.text
    message = refused.json()["message"]
    assert "team blue may add files only to its own experiment's runs and logged models" in message
    assert "team red's" in message
    assert _api(lab_server, "blue", "DELETE", f"{folder}/MLmodel").status_code == 403
    multipart = _api(lab_server, "blue", "POST", f"/api/2.0/mlflow-artifacts/mpu/create/{folder.split('/', 5)[5]}/x")
    assert multipart.status_code == 403
    # the folder of red's model under blue's own experiment is no folder at all: the model is not blue's
    blue_experiment = _api(
        lab_server, "blue", "GET", "/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": "blue"}
    ).json()["experiment"]["experiment_id"]
    elsewhere = _api(lab_server, "blue", "PUT", f"{_model_folder(red_model, blue_experiment)}/x.txt", data=b"x")
    assert elsewhere.status_code == 400 and "has no logged model" in elsewhere.json()["message"]
    assert _api(lab_server, "red", "GET", f"{folder}/MLmodel").content != b"blue was here"


@pytest.mark.parametrize("escape", ["../../escaped.txt", "%2E%2E/%2E%2E/escaped.txt", "a//b.txt", "..", "%252E%252E/x"])
def test_a_logged_models_folder_follows_the_path_rules(lab_server, red_model, escape):
    status, text = _raw(lab_server, "red", "PUT", f"{_model_folder(red_model)}/{escape}", b"x")
    assert status in (400, 404), text
    assert not list(lab_server.home.rglob("escaped.txt"))


def test_the_owner_writes_its_models_folder_but_only_for_its_real_models(lab_server, red_model):
    folder = _model_folder(red_model)
    assert _api(lab_server, "red", "PUT", f"{folder}/notes/extra.txt", data=b"red's note").status_code == 200
    assert _api(lab_server, "red", "GET", f"{folder}/notes/extra.txt").content == b"red's note"
    ghost = folder.replace(red_model["model_id"], "m-" + "0" * 32)
    refused = _api(lab_server, "red", "PUT", f"{ghost}/x.txt", data=b"x")
    assert refused.status_code == 400 and "has no logged model" in refused.json()["message"]
    admin = _api(lab_server, "admin", "PUT", f"{folder}/notes/by-admin.txt", data=b"admin's note")
    assert admin.status_code == 200, admin.text


def test_logged_model_routes_owner_writes_everyone_reads(lab_server, red_model):
    model_id = red_model["model_id"]
    base = f"/api/2.0/mlflow/logged-models/{model_id}"
    assert _api(lab_server, "blue", "GET", base).json()["model"]["info"]["model_id"] == model_id
    found = _api(
        lab_server,
        "blue",
        "POST",
        "/api/2.0/mlflow/logged-models/search",
        json={"experiment_ids": [red_model["experiment_id"]]},
    )
    assert found.status_code == 200 and model_id in [m["info"]["model_id"] for m in found.json()["models"]]
    for method, path, body in (
        ("POST", f"{base}/params", {"model_id": model_id, "params": [{"key": "lr", "value": "9"}]}),
        ("PATCH", f"{base}/tags", {"model_id": model_id, "tags": [{"key": "owner", "value": "blue"}]}),
        ("PATCH", base, {"model_id": model_id, "status": "LOGGED_MODEL_UPLOAD_FAILED"}),
        ("DELETE", base, None),
    ):
        refused = _api(lab_server, "blue", method, path, json=body)
        assert refused.status_code == 403, f"{method} {path}: {refused.text}"
    assert _api(
        lab_server,
        "red",
        "POST",
        f"{base}/params",
        json={"model_id": model_id, "params": [{"key": "lr", "value": "0.1"}]},
    ).ok
    info = _api(lab_server, "red", "GET", base).json()["model"]["info"]
    assert info["status"] == "LOGGED_MODEL_READY" and "owner" not in {t["key"] for t in info.get("tags", [])}


def test_every_team_reads_the_registry(lab_server, red_model):
    get = lambda path, **params: _api(lab_server, "blue", "GET", f"/api/2.0/mlflow/{path}", params=params)  # noqa: E731
    assert get("registered-models/get", name="red-mnist").json()["registered_model"]["name"] == "red-mnist"
    assert get("registered-models/alias", name="red-mnist", alias="champion").json()["model_version"]["version"] == "1"
    assert get("model-versions/get", name="red-mnist", version="1").status_code == 200
    assert get("model-versions/get-download-uri", name="red-mnist", version="1").status_code == 200
    assert "red-mnist" in [m["name"] for m in get("registered-models/search").json()["registered_models"]]
    versions = get("model-versions/search", filter="name='red-mnist'").json()["model_versions"]
    assert [v["version"] for v in versions] == ["1"]
    latest = _api(
        lab_server, "blue", "POST", "/api/2.0/mlflow/registered-models/get-latest-versions", json={"name": "red-mnist"}
    )
    assert latest.status_code == 200, latest.text


def _registry_attacks(red_model, blue_model_id):
    red_model_id, red_run, red_experiment = red_model["model_id"], red_model["run_id"], red_model["experiment_id"]
    rm, mv = "/api/2.0/mlflow/registered-models", "/api/2.0/mlflow/model-versions"
    return [
        ("POST", f"{rm}/create", {"name": "red-x"}, "may create registered models named blue-..."),
        ("POST", f"{rm}/create", {"name": "mnist"}, "may create registered models named blue-..."),
        ("POST", f"{rm}/alias", {"name": "red-mnist", "alias": "champion", "version": "1"}, "blue-..."),
        ("DELETE", f"{rm}/alias", {"name": "red-mnist", "alias": "champion"}, "blue-..."),
        ("PATCH", f"{rm}/update", {"name": "red-mnist", "description": "blue was here"}, "blue-..."),
        ("POST", f"{rm}/set-tag", {"name": "red-mnist", "key": "k", "value": "v"}, "blue-..."),
        ("POST", f"{rm}/rename", {"name": "red-mnist", "new_name": "blue-mnist"}, "blue-..."),
        ("DELETE", f"{rm}/delete", {"name": "red-mnist"}, "blue-..."),
        ("POST", f"{mv}/create", {"name": "red-mnist", "source": f"models:/{blue_model_id}"}, "blue-..."),
        ("PATCH", f"{mv}/update", {"name": "red-mnist", "version": "1", "description": "x"}, "blue-..."),
        ("DELETE", f"{mv}/delete", {"name": "red-mnist", "version": "1"}, "blue-..."),
        ("POST", f"{rm}/rename", {"name": "blue-net", "new_name": "red-net"}, "'red-net' is not one"),
        (
            "POST",
            f"{mv}/create",
            {"name": "blue-net", "source": f"models:/{red_model_id}", "model_id": red_model_id},
            "may register only its own work",
        ),
        (
            "POST",
            f"{mv}/create",
            {"name": "blue-net", "source": f"runs:/{red_run}/model", "run_id": red_run},
            "may register only its own work",
        ),
        (
            "POST",
            f"{mv}/create",
            {"name": "blue-net", "source": f"mlflow-artifacts:/{red_experiment}/models/{red_model_id}/artifacts"},
            "may register only its own work",
        ),
        ("POST", f"{mv}/create", {"name": "blue-net", "source": "models:/red-mnist/1"}, "may register only its own"),
        (
            "POST",
            f"{rm}/create",
            {"name": "blue-prompt", "tags": [{"key": "mlflow.prompt.is_prompt", "value": "true"}]},
            "prompts are the admin's",
        ),
    ]


@pytest.fixture(scope="module")
def blue_model(lab_server):
    """Team blue's own logged model, made through the REST API, and its registered model blue-net."""
    experiment_id = _api(
        lab_server, "blue", "GET", "/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": "blue"}
    ).json()["experiment"]["experiment_id"]
    run_id = _api(lab_server, "blue", "POST", "/api/2.0/mlflow/runs/create", json={"experiment_id": experiment_id})
    run_id = run_id.json()["run"]["info"]["run_id"]
    created = _api(
        lab_server,
        "blue",
        "POST",
        "/api/2.0/mlflow/logged-models",
        json={"experiment_id": experiment_id, "source_run_id": run_id, "name": "net"},
    )
    assert created.status_code == 200, created.text
    model_id = created.json()["model"]["info"]["model_id"]
    registered = _api(lab_server, "blue", "POST", "/api/2.0/mlflow/registered-models/create", json={"name": "blue-net"})
    assert registered.status_code == 200, registered.text
    version = _api(
        lab_server,
        "blue",
        "POST",
        "/api/2.0/mlflow/model-versions/create",
        json={"name": "blue-net", "source": f"models:/{model_id}", "model_id": model_id},
    )
    assert version.status_code == 200, version.text
    alias = {"name": "blue-net", "alias": "best", "version": version.json()["model_version"]["version"]}
    assert _api(lab_server, "blue", "POST", "/api/2.0/mlflow/registered-models/alias", json=alias).status_code == 200
    return model_id


def test_teams_change_only_their_own_registered_models(lab_server, red_model, blue_model):
    for method, path, body, fragment in _registry_attacks(red_model, blue_model):
        refused = _api(lab_server, "blue", method, path, json=body)
        assert refused.status_code == 403, f"{method} {path} {body}: {refused.status_code} {refused.text}"
        assert fragment in refused.json()["message"], f"{method} {path}: {refused.json()['message']}"
        assert len(refused.json()["message"].splitlines()) == 1
    # one request, two names: the query string names blue's model, the body (which the handler reads) red's
    status, text = _raw(
        lab_server,
        "blue",
        "DELETE",
        "/api/2.0/mlflow/registered-models/delete?name=blue-net",
        json.dumps({"name": "red-mnist"}).encode(),
    )
    assert status == 403 and b"'red-mnist' is not one" in text, text
    # a JSON string holding the JSON, which MLflow's handlers decode once more
    status, text = _raw(
        lab_server,
        "blue",
        "POST",
        "/api/2.0/mlflow/registered-models/create",
        json.dumps(json.dumps({"name": "red-sneaky"})).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 403 and b"'red-sneaky' is not one" in text, text
    red = _api(lab_server, "red", "GET", "/api/2.0/mlflow/registered-models/get", params={"name": "red-mnist"})
    model = red.json()["registered_model"]
    assert [a["alias"] for a in model["aliases"]] == ["champion"] and not model.get("description")
    assert not model.get("tags")
    for name in ("red-x", "red-sneaky", "red-net", "blue-prompt", "mnist"):
        missing = _api(lab_server, "red", "GET", "/api/2.0/mlflow/registered-models/get", params={"name": name})
        assert missing.status_code == 404, name


def test_a_logged_models_source_run_stays_in_its_experiment(lab_server, red_model):
    blue_experiment = _api(
        lab_server, "blue", "GET", "/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": "blue"}
    ).json()["experiment"]["experiment_id"]
    body = {"experiment_id": blue_experiment, "source_run_id": red_model["run_id"], "name": "borrowed"}
    status, text = _raw(
        lab_server,
        "blue",
        "POST",
        "/api/2.0/mlflow/logged-models",
        json.dumps(json.dumps(body)).encode(),  # double-encoded: MLflow's handler decodes it
        {"Content-Type": "application/json"},
    )
    assert status == 403 and b"source run is team red's" in text, text


def test_the_owner_and_the_admin_manage_the_registry(lab_server, red_model):
    rm = "/api/2.0/mlflow/registered-models"
    red = lambda method, path, body: _api(lab_server, "red", method, f"{rm}/{path}", json=body)  # noqa: E731
    assert red("POST", "create", {"name": "red-scratch"}).status_code == 200
    assert red("PATCH", "update", {"name": "red-scratch", "description": "tries"}).status_code == 200
    assert red("POST", "set-tag", {"name": "red-scratch", "key": "stage", "value": "dev"}).status_code == 200
    assert red("POST", "rename", {"name": "red-scratch", "new_name": "red-scratch-2"}).status_code == 200
    assert red("DELETE", "delete", {"name": "red-scratch-2"}).status_code == 200
    admin = lambda method, path, body: _api(lab_server, "admin", method, f"{rm}/{path}", json=body)  # noqa: E731
    assert admin("POST", "create", {"name": "class-baseline"}).status_code == 200
    assert admin("POST", "set-tag", {"name": "red-mnist", "key": "checked", "value": "yes"}).status_code == 200
    assert admin("DELETE", "delete-tag", {"name": "red-mnist", "key": "checked"}).status_code == 200


def test_another_team_reads_and_loads_the_model_but_cannot_register_it(lab_server, red_model, tmp_path):
    read = _mlflow_script(
        lab_server, "blue", tmp_path, READ_AND_LOAD, "red", red_model["model_id"], json.dumps(red_model["example"])
    )
    assert read["labclient_imported"] is False
    assert np.allclose(read["output"], red_model["output"]) and read["alias_version"] == "1"
    assert (
        read["register_refused"] and "team blue may create registered models named blue-..." in read["register_refused"]
    )
