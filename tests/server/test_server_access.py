"""labserver as a real process on SQLite: training through it, and the access rules on both route layers."""

from __future__ import annotations

import pytest
import requests
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow


def _api(server, team, method, path, **kwargs):
    auth = server.auth(team) if team else None
    return requests.request(method, server.url + path, auth=auth, timeout=30, **kwargs)


@pytest.fixture(scope="module")
def red_run(lab_server):
    """A run of team red, made through MLflow's REST API with red's token."""
    experiment = _api(
        lab_server, "red", "GET", "/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": "red"}
    ).json()
    experiment_id = experiment["experiment"]["experiment_id"]
    created = _api(
        lab_server,
        "red",
        "POST",
        "/api/2.0/mlflow/runs/create",
        json={"experiment_id": experiment_id, "run_name": "red/manual"},
    )
    assert created.status_code == 200, created.text
    run_id = created.json()["run"]["info"]["run_id"]
    logged = _api(
        lab_server,
        "red",
        "POST",
        "/api/2.0/mlflow/runs/log-metric",
        json={"run_id": run_id, "key": "cost", "value": 0.5, "timestamp": 1, "step": 0},
    )
    assert logged.status_code == 200
    upload = _api(
        lab_server,
        "red",
        "PUT",
        f"/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts/notes.txt",
        data=b"red's notes",
    )
    assert upload.status_code == 200, upload.text
    return experiment_id, run_id


def test_training_through_the_server(cli, lab_server, as_team, tmp_path):
    as_team(lab_server, "red")
    result = cli("train", "--trainer", "logreg", "--dataset", "digits", "--epochs", "1")
    assert result.exit_code == 0, result.output
    assert "red/run-" in result.output and "workflowType=machine_learning" in result.output
    client = MlflowClient(lab_server.url)
    experiment = client.get_experiment_by_name("red")
    run = client.search_runs([experiment.experiment_id], "tags.`lab.kind` = 'train'", max_results=1)[0]
    assert run.info.run_name.startswith("red/run-") and run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied: the client never saw a store
    assert {a.path for a in client.list_artifacts(run.info.run_id, "model")} >= {
        "model/model.safetensors",
        "model/spec.json",
    }
    stored = list((lab_server.home / "artifacts").rglob("model.safetensors"))
    assert any(run.info.run_id in str(path) for path in stored)


FORBIDDEN_FOR_BLUE = [
    ("POST", "/api/2.0/mlflow/runs/create", lambda e, r: {"experiment_id": e}),
    (
        "POST",
        "/api/2.0/mlflow/runs/log-metric",
        lambda e, r: {"run_id": r, "key": "cost", "value": 9, "timestamp": 1, "step": 1},
    ),
    (
        "POST",
        "/api/2.0/mlflow/runs/log-batch",
        lambda e, r: {"run_id": r, "metrics": [{"key": "cost", "value": 9, "timestamp": 1, "step": 2}]},
    ),
    (
        "POST",
        "/api/2.0/mlflow/runs/set-tag",
        lambda e, r: {"run_id": r, "key": "mlflow.note.content", "value": "blue was here"},
    ),
    ("POST", "/api/2.0/mlflow/runs/update", lambda e, r: {"run_id": r, "status": "KILLED"}),
    ("POST", "/api/2.0/mlflow/runs/delete", lambda e, r: {"run_id": r}),
    ("POST", "/api/2.0/mlflow/experiments/create", lambda e, r: {"name": "blue2"}),
    ("POST", "/api/2.0/mlflow/experiments/create", lambda e, r: {"name": "red-copy"}),
    ("POST", "/api/2.0/mlflow/experiments/update", lambda e, r: {"experiment_id": e, "new_name": "blue-owns-this"}),
    ("POST", "/api/2.0/mlflow/experiments/delete", lambda e, r: {"experiment_id": e}),
    (
        "POST",
        "/api/2.0/mlflow/experiments/set-experiment-tag",
        lambda e, r: {"experiment_id": e, "key": "k", "value": "v"},
    ),
    ("POST", "/api/2.0/lab/runs/register", lambda e, r: {"run_id": r}),
]


@pytest.mark.parametrize("method, path, body", FORBIDDEN_FOR_BLUE, ids=[f"{m} {p}" for m, p, _ in FORBIDDEN_FOR_BLUE])
def test_other_teams_cannot_write(lab_server, red_run, method, path, body):
    experiment_id, run_id = red_run
    response = _api(lab_server, "blue", method, path, json=body(experiment_id, run_id))
    assert response.status_code == 403, response.text
    run = _api(lab_server, "red", "GET", "/api/2.0/mlflow/runs/get", params={"run_id": run_id}).json()["run"]
    assert run["info"]["lifecycle_stage"] == "active" and run["info"]["status"] == "RUNNING"
    assert [m["value"] for m in run["data"]["metrics"]] == [0.5]


def test_other_teams_cannot_touch_artifacts(lab_server, red_run):
    experiment_id, run_id = red_run
    base = f"/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts"
    assert _api(lab_server, "blue", "PUT", f"{base}/notes.txt", data=b"overwritten").status_code == 403
    assert _api(lab_server, "blue", "DELETE", f"{base}/notes.txt").status_code == 403
    assert _api(lab_server, "red", "GET", f"{base}/notes.txt").content == b"red's notes"


def test_every_team_reads_everything(lab_server, red_run):
    experiment_id, run_id = red_run
    assert _api(lab_server, "blue", "GET", "/api/2.0/mlflow/runs/get", params={"run_id": run_id}).status_code == 200
    found = _api(
        lab_server, "blue", "POST", "/api/2.0/mlflow/runs/search", json={"experiment_ids": [experiment_id]}
    ).json()
    assert run_id in [run["info"]["run_id"] for run in found["runs"]]
    history = _api(
        lab_server,
        "blue",
        "GET",
        "/api/2.0/mlflow/metrics/get-history",
        params={"run_id": run_id, "metric_key": "cost"},
    )
    assert [m["value"] for m in history.json()["metrics"]] == [0.5]
    listing = _api(lab_server, "blue", "GET", "/api/2.0/mlflow/artifacts/list", params={"run_id": run_id})
    assert [f["path"] for f in listing.json()["files"]] == ["notes.txt"]
    download = _api(
        lab_server, "blue", "GET", f"/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts/notes.txt"
    )
    assert download.content == b"red's notes"
    assert _api(lab_server, "blue", "GET", "/").status_code == 200  # the web UI


@pytest.mark.parametrize("path", ["/api/2.0/mlflow/experiments/search?max_results=5", "/api/2.0/lab/whoami", "/"])
def test_no_token_or_a_bad_one_is_401(lab_server, path):
    assert requests.get(lab_server.url + path, timeout=10).status_code == 401
    assert requests.get(lab_server.url + path, auth=("red", "lab_not-the-token"), timeout=10).status_code == 401
    assert requests.get(lab_server.url + path, auth=("nobody", "lab_not-the-token"), timeout=10).status_code == 401


def test_admin_may_do_everything(lab_server, red_run):
    admin = ("admin", lab_server.tokens["admin"])
    created = requests.post(
        lab_server.url + "/api/2.0/mlflow/experiments/create", json={"name": "admin-scratch"}, auth=admin, timeout=10
    )
    assert created.status_code == 200, created.text
    experiment_id = created.json()["experiment_id"]
    assert (
        requests.post(
            lab_server.url + "/api/2.0/mlflow/experiments/delete",
            json={"experiment_id": experiment_id},
            auth=admin,
            timeout=10,
        ).status_code
        == 200
    )


def test_unparsable_bodies_are_rejected_and_change_nothing(lab_server, red_run):
    from labserver.store import LabStore

    before = LabStore(lab_server.db_uri).last_run_number("red")
    response = _api(
        lab_server,
        "red",
        "POST",
        "/api/2.0/lab/runs/register",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400 and "not a JSON object" in response.json()["message"]
    assert _api(lab_server, "red", "POST", "/api/2.0/lab/runs/register", json={"run_id": "../../x"}).status_code == 400
    assert _api(lab_server, "red", "POST", "/api/2.0/lab/runs/register", json={"run_id": "0" * 32}).status_code == 404
    mlflow_route = _api(
        lab_server,
        "red",
        "POST",
        "/api/2.0/mlflow/runs/log-batch",
        data=b"\x00\x01garbage",
        headers={"Content-Type": "application/json"},
    )
    assert mlflow_route.status_code == 400
    assert LabStore(lab_server.db_uri).last_run_number("red") == before


def _raw(server, team, method, path, body=b""):
    """http.client sends the path exactly as given: no client-side `..` normalisation."""
    import base64
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    credentials = base64.b64encode(":".join(server.auth(team)).encode()).decode()
    connection.request(method, path, body=body, headers={"Authorization": f"Basic {credentials}"})
    response = connection.getresponse()
    status, text = response.status, response.read()
    connection.close()
    return status, text


@pytest.mark.parametrize(
    "escape",
    [
        "../../escaped.txt",
        "..%2F..%2Fescaped.txt",
        "%2E%2E/%2E%2E/escaped.txt",
        "sub/../../../escaped.txt",
        "..",
        "/etc/escaped.txt",
    ],
)
def test_artifact_paths_cannot_escape_their_run(lab_server, red_run, escape):
    experiment_id, run_id = red_run
    status, text = _raw(
        lab_server,
        "red",
        "PUT",
        f"/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts/{escape}",
        b"x",
    )
    assert status in (400, 403, 404), text
    assert not list(lab_server.home.rglob("escaped.txt"))
    status, _ = _raw(lab_server, "red", "GET", f"/api/2.0/mlflow/artifacts/list?run_id={run_id}&path=../../")
    assert status in (400, 403, 404)


def test_uploads_outside_a_run_folder_are_refused(lab_server, red_run):
    experiment_id, _ = red_run
    status, _ = _raw(lab_server, "red", "PUT", f"/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/loose.txt", b"x")
    assert status == 400
    assert not list(lab_server.home.rglob("loose.txt"))


def test_rotated_and_removed_tokens_stop_working_at_once(lab_server):
    from tests.servers import run_labserver

    token = lab_server.add_team("short-lived")
    whoami = lambda t: requests.get(lab_server.url + "/api/2.0/lab/whoami", auth=("short-lived", t), timeout=10)  # noqa: E731
    assert whoami(token).json()["team"] == "short-lived"
    import re

    new_token = re.search(r"lab_[\w-]+", run_labserver(lab_server, "team", "rotate-token", "short-lived")).group(0)
    assert whoami(token).status_code == 401
    assert whoami(new_token).status_code == 200
    run_labserver(lab_server, "team", "remove", "short-lived")
    assert whoami(new_token).status_code == 401
    # the team's experiment stays readable
    experiment = _api(
        lab_server, "blue", "GET", "/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": "short-lived"}
    )
    assert experiment.status_code == 200


def test_team_admin_errors_are_one_line(lab_server):
    import subprocess

    from bench.servers import BIN
    from tests.servers import run_labserver

    # once as a real process: what an instructor sees in a terminal
    real = subprocess.run(
        [str(BIN / "labserver"), "team", "add", "red", "--backend-store-uri", lab_server.db_uri],
        env={**lab_server.process_env(), **lab_server.env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert real.returncode == 1 and real.stderr.strip().splitlines() == [
        "error: team 'red' already exists (use `labserver team rotate-token red` for a new token)"
    ]

    for args, fragment in (
        (("team", "add", "red"), "already exists"),
        (("team", "add", "Bad_Name"), "invalid team name"),
        (("team", "add", "admin"), "reserved"),
        (("team", "remove", "ghost"), "no team named"),
    ):
        output = run_labserver(lab_server, *args, check=False)
        errors = [line for line in output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and fragment in errors[0], output
        assert "Traceback" not in output
    listing = run_labserver(lab_server, "team", "list")
    assert "red" in listing and "blue" in listing and "lab_" not in listing  # tokens are never listed


def test_login_saves_a_private_config(cli, lab_server, isolated_lab):
    import os
    import stat

    result = cli("login", "--server", lab_server.url, "--team", "blue", "--token", lab_server.tokens["blue"])
    assert result.exit_code == 0, result.output
    config = isolated_lab / "config.toml"
    assert stat.S_IMODE(os.stat(config).st_mode) == 0o600
    assert lab_server.tokens["blue"] in config.read_text()
    assert lab_server.tokens["blue"] not in result.output


@pytest.mark.parametrize(
    "server, token, fragment",
    [
        ("{url}", "lab_wrong-token", "did not accept the token"),
        ("http://127.0.0.1:9", "x", "cannot reach"),
        ("not-a-url", "x", "not an http(s) URL"),
    ],
)
def test_login_failures_leave_no_config(cli, lab_server, isolated_lab, server, token, fragment):
    result = cli("login", "--server", server.format(url=lab_server.url), "--team", "blue", "--token", token)
    assert result.exit_code != 0 and fragment in result.output and "Traceback" not in result.output
    assert token not in result.output or token == "x"
    assert not (isolated_lab / "config.toml").exists()
